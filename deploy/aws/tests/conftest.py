"""Shared by the checks of deploy/aws: where the runbooks are, the packaged
template, and moto's server on a loopback port.

The stack ships the runbooks of runbooks/manifest.yaml. Until that manifest
exists the checks package the fixture under tests/fixtures/runbooks, which
holds every runbook the shipped rules call in the manifest's shape; the
package tests always use the fixture, so their expectations stay fixed.
"""

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
AWS_DIR = os.path.dirname(HERE)
ROOT = os.path.dirname(os.path.dirname(AWS_DIR))
sys.path.insert(0, AWS_DIR)

import cfn  # noqa: E402
import package  # noqa: E402

TEMPLATE = os.path.join(AWS_DIR, "dr-reactor.yaml")
FIXTURE_RUNBOOKS = os.path.join(HERE, "fixtures", "runbooks")
SHIPPED_RUNBOOKS = os.path.join(ROOT, "runbooks")

PRIMARY = "ap-northeast-2"
DR = "ap-northeast-1"
# moto's account: the same in the policy checks, so one set of ARNs serves.
ACCOUNT = "123456789012"
IRSA = {"EksOidcProvider": "oidc.eks.ap-northeast-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"}


def shipped_runbooks_dir():
    if os.path.isfile(os.path.join(SHIPPED_RUNBOOKS, "manifest.yaml")):
        return SHIPPED_RUNBOOKS
    return FIXTURE_RUNBOOKS


@pytest.fixture(scope="session")
def fixture_packaged():
    return package.package(TEMPLATE, FIXTURE_RUNBOOKS)


@pytest.fixture(scope="session")
def shipped_packaged():
    return package.package(TEMPLATE, shipped_runbooks_dir())


@pytest.fixture(scope="session")
def shipped_manifest():
    return package.load_manifest(shipped_runbooks_dir())


def resolve(template, region=DR, **parameters):
    """The template as CloudFormation would create it in `region` of moto's
    account; IRSA (the default platform) gets an example OIDC provider."""
    if parameters.get("Platform", "eks-irsa") == "eks-irsa":
        parameters = {**IRSA, **parameters}
    return cfn.Resolved(template, parameters, region, account=ACCOUNT)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def moto_endpoint():
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).read()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto's server did not answer within 30 s")
                time.sleep(0.2)
        # Lambda as moto has it without Docker: functions are stored and
        # GetFunction answers (readiness needs no more). Not its
        # `use_docker: false` mode: that one serves the Lambda API from a
        # store moto's CloudFormation does not write to.
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)
