"""What the runbook tests share: moto's server, AWS clients for setting up
the world (a session of their own, never recorded), the recorder of what a
runbook calls, and loaders for documents, their scripts and Lambda handlers.
Test tooling.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import boto3
import botocore.session
import yaml

ROOT = Path(__file__).resolve().parent.parent  # runbooks/
REPO = ROOT.parent
ACCOUNT = "123456789012"
SEOUL, TOKYO = "ap-northeast-2", "ap-northeast-1"

# IAM's service prefix where it differs from the API's signing name.
IAM_PREFIX = {"monitoring": "cloudwatch"}

_models = botocore.session.get_session()


def iam_action(service: str, api: str) -> str:
    """`rds`, `PromoteReadReplica` -> `rds:PromoteReadReplica`."""
    model = _models.get_service_model(service)
    prefix = IAM_PREFIX.get(model.signing_name, model.signing_name)
    return f"{prefix}:{api}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    """moto's server (testing/moto_server.py) on a free loopback port."""

    def __init__(self):
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, str(ROOT / "testing" / "moto_server.py"), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1).read()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("moto's server did not start within 30 s")
                time.sleep(0.1)

    def reset(self):
        req = urllib.request.Request(f"{self.endpoint}/moto-api/reset", method="POST", data=b"")
        urllib.request.urlopen(req, timeout=10).read()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class Aws:
    """Clients for setting the world up and reading it back."""

    def __init__(self, endpoint: str):
        self.endpoint = endpoint
        self.session = boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing"
        )

    def __call__(self, service: str, region: str = SEOUL):
        return self.session.client(service, region_name=region, endpoint_url=self.endpoint)


class Recorder:
    """Every operation boto3's default session (the runbooks' own calls)
    makes, as IAM actions."""

    def __init__(self):
        self.actions: list[str] = []
        self.paused = False

    def pause(self):
        """For a test's own setup through a runbook (another runbook's calls)."""
        recorder = self

        class Paused:
            def __enter__(self):
                recorder.paused = True

            def __exit__(self, *_):
                recorder.paused = False

        return Paused()

    def __call__(self, model, **_):
        if self.paused:
            return
        prefix = IAM_PREFIX.get(model.service_model.signing_name, model.service_model.signing_name)
        self.actions.append(f"{prefix}:{model.name}")


def manifest() -> dict:
    with open(ROOT / "manifest.yaml", encoding="utf-8") as f:
        return {r["name"]: r for r in yaml.safe_load(f)["runbooks"]}


def declared_actions(name: str) -> set[str]:
    return {a for grant in manifest()[name].get("iam") or [] for a in grant["actions"]}


def document(path: str | Path) -> dict:
    with open(ROOT / path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def script(doc: dict, step_name: str):
    """The handler of one aws:executeScript step, to call with events."""
    for step in doc["mainSteps"]:
        if step["name"] == step_name:
            inputs = step["inputs"]
            namespace: dict = {}
            exec(compile(inputs["Script"], f"<{step_name}>", "exec"), namespace)
            return namespace[inputs["Handler"]]
    raise KeyError(step_name)


class LambdaContext:
    """What Lambda passes as `context` (the fields Powertools reads)."""

    def __init__(self, name: str):
        self.function_name = name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = 256
        self.invoked_function_arn = f"arn:aws:lambda:{SEOUL}:{ACCOUNT}:function:{name}"
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = "test"

    def get_remaining_time_in_millis(self) -> int:
        return 60_000


IDEMPOTENCY_TABLE = "dr-runbooks-idempotency"


def load_lambda(path: str | Path, aws: Aws, region: str):
    """Imports a handler file fresh, as a new Lambda sandbox would, with its
    idempotency table made in moto (the shape Powertools documents: a
    string partition key `id`, TTL on `expiration`)."""
    os.environ["AWS_REGION"] = region
    os.environ["AWS_DEFAULT_REGION"] = region
    os.environ["IDEMPOTENCY_TABLE"] = IDEMPOTENCY_TABLE
    os.environ["POWERTOOLS_SERVICE_NAME"] = Path(path).stem
    ddb = aws("dynamodb", region)
    if IDEMPOTENCY_TABLE not in ddb.list_tables()["TableNames"]:
        ddb.create_table(
            TableName=IDEMPOTENCY_TABLE,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    name = f"runbook_{Path(path).stem.replace('-', '_')}_{uuid.uuid4().hex[:8]}"
    spec = importlib.util.spec_from_file_location(name, ROOT / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def invoke(module, event: dict, name: str):
    """As dr-reactor's Invoke does; returns (ok, value) where value is the
    return value or the error object Lambda would answer."""
    try:
        return True, json.loads(json.dumps(module.handler(event, LambdaContext(name)), default=str))
    except Exception as e:  # Lambda turns an exception into a FunctionError
        return False, {"errorType": type(e).__name__, "errorMessage": str(e)}
