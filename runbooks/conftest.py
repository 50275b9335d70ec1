"""pytest fixtures for the runbook tests (see testing/harness.py).

- `moto_server` (session): one moto server on a free loopback port;
- `aws`: a client factory for setting the world up; moto is reset before
  each test, so every test starts from an empty account;
- `calls` (autouse): records what the runbook under test calls through
  boto3's default session, and fails the test if one of those operations is
  not among the IAM actions manifest.yaml declares for that runbook (the
  runbook is named by the test file: `<name>_test.py`);
- `standins`: the stand-ins for APIs moto lacks, on the default session.
"""

import os
import sys
from pathlib import Path

import boto3
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from testing import harness, standin  # noqa: E402


@pytest.fixture(scope="session")
def moto_server():
    for k in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        os.environ.pop(k, None)
    server = harness.MotoServer()
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_ENDPOINT_URL=server.endpoint,
        AWS_DEFAULT_REGION=harness.SEOUL,
    )
    boto3.setup_default_session()
    yield server
    server.stop()


@pytest.fixture
def aws(moto_server):
    moto_server.reset()
    return harness.Aws(moto_server.endpoint)


@pytest.fixture(autouse=True)
def calls(request):
    saved = dict(os.environ)
    recorder = harness.Recorder()
    session = boto3.DEFAULT_SESSION
    if session is not None:
        session.events.register("before-parameter-build", recorder, unique_id="dr-runbooks-recorder")
    yield recorder
    if session is not None:
        session.events.unregister("before-parameter-build", unique_id="dr-runbooks-recorder")
    os.environ.clear()
    os.environ.update(saved)
    name = Path(str(request.node.fspath)).name.removesuffix("_test.py")
    manifest = harness.manifest()
    if name in manifest and recorder.actions:
        undeclared = sorted(set(recorder.actions) - harness.declared_actions(name))
        assert not undeclared, f"{name} called {undeclared}, which manifest.yaml does not grant it"


@pytest.fixture
def standins(moto_server):
    s = standin.install(boto3.DEFAULT_SESSION)
    yield s
    standin.uninstall(boto3.DEFAULT_SESSION)
