"""A small SSM Automation interpreter: test tooling, not a product.

Nothing installable executes SSM Automation documents (moto stores them but
runs none), so the runbook tests run the shipped documents here, step by
step, against moto's server. It implements exactly the actions the shipped
documents use, with the semantics of AWS's "Systems Manager Automation
actions reference":

- parameters: String, StringList, Integer, Boolean, MapList, StringMap;
  defaults (including `{{ssm:/parameter/name}}`), allowedPattern and
  allowedValues are checked before the first step, as StartAutomationExecution
  does, and an undeclared parameter is refused;
- `{{ Param }}`, `{{ Step.Output }}`, `{{ global:REGION }}`,
  `{{ global:ACCOUNT_ID }}`, `{{ global:AWS_PARTITION }}`,
  `{{ automation:EXECUTION_ID }}`; a value that is exactly one variable keeps
  its type (a StringList stays a list), anything else is text;
- `$.`-selectors (`$.A.B[0].C`, `$.A[*].B`, `$.Payload.X` for scripts) with
  output types;
- aws:executeAwsApi, aws:waitForAwsResourceProperty (polls until the
  property is one of DesiredValues or timeoutSeconds pass),
  aws:assertAwsResourceProperty, aws:branch (Choices with And/Or/Not and the
  String/Numeric/Boolean operators, Default), aws:executeScript (Python
  handler called with the InputPayload as `events`; its return value is
  `Payload`), aws:sleep;
- onFailure (Abort, Continue, step:Name), nextStep, isEnd, isCritical,
  maxAttempts, timeoutSeconds; the execution ends Success, Failed or
  TimedOut.

AWS calls go through boto3's default session, so a test can record them or
put a stand-in in front of an API moto lacks (testing/standin.py). Scripts
run in this process with AWS_ENDPOINT_URL and AWS_REGION set for them, as
the Automation runtime sets the region and credentials for a real one.

Command line (a Rust test fake starts documents through it):

    python3 runbooks/testing/automation.py DOC.yaml --endpoint URL \
        --region R --param K=V [--param K=V ...] [--stand-ins]

prints one JSON object: status, outputs (as GetAutomationExecution's
Outputs: name -> list of strings), steps, failure_message. Exit status 0
for Success, 1 for a failed or timed-out execution, 2 for a document or
parameters StartAutomationExecution would refuse.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import os
import re
import sys
import time
import types
import uuid
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import boto3
import botocore
import yaml

ACTIONS = {
    "aws:executeAwsApi",
    "aws:waitForAwsResourceProperty",
    "aws:assertAwsResourceProperty",
    "aws:branch",
    "aws:executeScript",
    "aws:sleep",
}
PARAM_TYPES = {"String", "StringList", "Integer", "Boolean", "MapList", "StringMap"}
OUTPUT_TYPES = PARAM_TYPES
SCRIPT_RUNTIMES = {"python3.8", "python3.9", "python3.10", "python3.11"}
# AWS's default step timeout for waits (and any step without one).
DEFAULT_TIMEOUT = 3600

VARIABLE = re.compile(r"\{\{\s*([A-Za-z0-9_.:\-]+)\s*\}\}")
SSM_DEFAULT = re.compile(r"^\{\{\s*ssm:([A-Za-z0-9_./\-]+)\s*\}\}$")
SELECTOR_TOKEN = re.compile(r"\.([A-Za-z0-9_\-]+)|\[(\d+|\*)\]")


class InvalidDocument(Exception):
    """A document or parameters StartAutomationExecution would refuse."""


class StepFailed(Exception):
    pass


class StepTimedOut(StepFailed):
    pass


def load(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def jsonable(value: Any) -> Any:
    """An API response as JSON types (what Automation's selectors see)."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items() if k != "ResponseMetadata"}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (datetime.datetime, datetime.date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if hasattr(value, "read"):  # a streaming body
        return value.read().decode("utf-8", "replace")
    return value


def select(data: Any, selector: str) -> Any:
    """`$.A.B[0].C` / `$.A[*].B`; None when the path is absent."""
    if not selector.startswith("$"):
        raise InvalidDocument(f"selector {selector!r} does not start with $")
    rest = selector[1:]
    tokens = []
    pos = 0
    for m in SELECTOR_TOKEN.finditer(rest):
        if m.start() != pos:
            raise InvalidDocument(f"selector {selector!r} is not supported")
        tokens.append(m.group(1) if m.group(1) is not None else m.group(2))
        pos = m.end()
    if pos != len(rest):
        raise InvalidDocument(f"selector {selector!r} is not supported")
    return _walk(data, tokens, spread=False)


def _walk(node: Any, tokens: list, spread: bool) -> Any:
    if not tokens:
        return node
    tok, rest = tokens[0], tokens[1:]
    if tok == "*":
        if not isinstance(node, list):
            return None
        found = [_walk(item, rest, True) for item in node]
        flat = []
        for f in found:
            if isinstance(f, list) and rest:
                flat.extend(f)
            elif f is not None:
                flat.append(f)
        return flat
    if tok.isdigit():
        if isinstance(node, list) and int(tok) < len(node):
            return _walk(node[int(tok)], rest, spread)
        return None
    if isinstance(node, dict) and tok in node:
        return _walk(node[tok], rest, spread)
    return None


def as_type(value: Any, kind: str, what: str) -> Any:
    if value is None:
        return None
    try:
        if kind == "String":
            if isinstance(value, bool):
                return "true" if value else "false"
            if isinstance(value, (dict, list)):
                return json.dumps(value, sort_keys=True)
            return str(value)
        if kind == "Integer":
            if isinstance(value, bool):
                raise ValueError("a boolean")
            return int(value)
        if kind == "Boolean":
            if isinstance(value, str):
                if value.lower() not in ("true", "false"):
                    raise ValueError(value)
                return value.lower() == "true"
            return bool(value)
        if kind == "StringList":
            if isinstance(value, str):
                value = json.loads(value) if value.startswith("[") else [
                    v for v in value.split(",") if v != ""
                ]
            if not isinstance(value, list):
                value = [value]
            return [as_type(v, "String", what) for v in value]
        if kind == "MapList":
            value = json.loads(value) if isinstance(value, str) else value
            if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
                raise ValueError("not a list of maps")
            return value
        if kind == "StringMap":
            value = json.loads(value) if isinstance(value, str) else value
            if not isinstance(value, dict):
                raise ValueError("not a map")
            return value
    except (ValueError, TypeError) as e:
        raise StepFailed(f"{what}: cannot be read as {kind}: {e}") from e
    raise InvalidDocument(f"{what}: unknown type {kind}")


def outputs_as_strings(value: Any) -> list[str]:
    """One output as GetAutomationExecution shows it: a list of strings."""
    if value is None:
        return []
    if isinstance(value, list):
        return [v if isinstance(v, str) else json.dumps(v, sort_keys=True) for v in value]
    if isinstance(value, dict):
        return [json.dumps(value, sort_keys=True)]
    if isinstance(value, bool):
        return ["true" if value else "false"]
    return [str(value)]


class Automation:
    """One document, run once per `run` call, like one execution."""

    def __init__(
        self,
        document: dict | str,
        region: str,
        endpoint: str | None = None,
        service_endpoints: dict[str, str] | None = None,
        poll_interval: float = 5.0,
        max_wait: float | None = None,
        session: boto3.session.Session | None = None,
    ):
        self.doc = load(document) if isinstance(document, str) else document
        self.region = region
        self.endpoint = endpoint
        self.service_endpoints = dict(service_endpoints or {})
        self.poll_interval = poll_interval
        # Caps every step timeout: lets a test see a wait time out without
        # waiting the document's real timeout.
        self.max_wait = max_wait
        self.session = session
        self._clients: dict[str, Any] = {}
        check_structure(self.doc)

    # -- AWS ---------------------------------------------------------------

    def client(self, service: str):
        if service not in self._clients:
            url = self.service_endpoints.get(service, self.endpoint)
            make = self.session.client if self.session else boto3.client
            self._clients[service] = make(
                service,
                region_name=self.region,
                endpoint_url=url,
                config=botocore.config.Config(retries={"max_attempts": 2, "mode": "standard"}),
            )
        return self._clients[service]

    def call(self, service: str, api: str, params: dict) -> dict:
        client = self.client(service)
        method = botocore.xform_name(api)
        if not hasattr(client, method):
            raise StepFailed(f"{service} has no API {api}")
        try:
            return jsonable(getattr(client, method)(**params))
        except botocore.exceptions.ClientError as e:
            raise StepFailed(f"{service}:{api} failed: {e}") from e
        except botocore.exceptions.ParamValidationError as e:
            raise StepFailed(f"{service}:{api} parameters are invalid: {e}") from e

    @contextmanager
    def script_environment(self):
        """What a script's boto3 sees: the execution's region and endpoint."""
        saved = dict(os.environ)
        os.environ["AWS_REGION"] = self.region
        os.environ["AWS_DEFAULT_REGION"] = self.region
        if self.endpoint:
            os.environ["AWS_ENDPOINT_URL"] = self.endpoint
        for service, url in self.service_endpoints.items():
            os.environ["AWS_ENDPOINT_URL_" + service.upper().replace("-", "_")] = url
        try:
            yield
        finally:
            os.environ.clear()
            os.environ.update(saved)

    # -- parameters and variables ------------------------------------------

    def resolve_parameters(self, given: dict[str, Any]) -> dict[str, Any]:
        declared = self.doc.get("parameters") or {}
        unknown = sorted(set(given) - set(declared))
        if unknown:
            raise InvalidDocument(f"parameters not declared by the document: {', '.join(unknown)}")
        values = {}
        for name, spec in declared.items():
            kind = spec.get("type", "String")
            if name in given:
                raw = given[name]
            elif "default" in spec:
                raw = spec["default"]
                if isinstance(raw, str) and SSM_DEFAULT.match(raw):
                    raw = self.parameter_store(SSM_DEFAULT.match(raw).group(1))
            else:
                raise InvalidDocument(f"parameter {name} is required (it has no default)")
            try:
                value = as_type(raw, kind, f"parameter {name}")
            except StepFailed as e:
                raise InvalidDocument(str(e)) from e
            pattern = spec.get("allowedPattern")
            items = value if isinstance(value, list) else [value]
            if pattern and kind in ("String", "StringList"):
                for item in items:
                    if not re.search(pattern, item):
                        raise InvalidDocument(
                            f"parameter {name} value {item!r} fails allowedPattern {pattern}"
                        )
            allowed = spec.get("allowedValues")
            if allowed is not None:
                for item in items:
                    if item not in allowed:
                        raise InvalidDocument(f"parameter {name} value {item!r} is not one of {allowed}")
            values[name] = value
        return values

    def parameter_store(self, name: str) -> str:
        try:
            return self.client("ssm").get_parameter(Name=name)["Parameter"]["Value"]
        except botocore.exceptions.ClientError as e:
            raise InvalidDocument(f"default {{{{ssm:{name}}}}} cannot be read: {e}") from e

    def variable(self, name: str) -> Any:
        if name in self.params:
            return self.params[name]
        if name == "global:REGION":
            return self.region
        if name == "global:ACCOUNT_ID":
            return self.account_id()
        if name == "global:AWS_PARTITION":
            return "aws"
        if name == "global:DATE_TIME":
            return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d_%H.%M.%S")
        if name == "automation:EXECUTION_ID":
            return self.execution_id
        if name in self.outputs:
            value = self.outputs[name]
            if value is None:
                raise StepFailed(f"output {name} has no value (its selector found nothing)")
            return value
        raise StepFailed(f"variable {name} is not defined (not a parameter nor a step output yet)")

    def account_id(self) -> str:
        return self.client("sts").get_caller_identity()["Account"]

    def substitute(self, value: Any) -> Any:
        if isinstance(value, str):
            whole = VARIABLE.fullmatch(value.strip())
            if whole:
                return self.variable(whole.group(1))
            return VARIABLE.sub(lambda m: as_type(self.variable(m.group(1)), "String", m.group(1)), value)
        if isinstance(value, list):
            return [self.substitute(v) for v in value]
        if isinstance(value, dict):
            return {k: self.substitute(v) for k, v in value.items()}
        return value

    # -- the run -------------------------------------------------------------

    def run(self, parameters: dict[str, Any] | None = None) -> dict:
        self.execution_id = str(uuid.uuid4())
        self.outputs: dict[str, Any] = {}
        self.steps: list[dict] = []
        try:
            self.params = {}
            self.params = self.resolve_parameters(parameters or {})
        except InvalidDocument as e:
            return {"status": "InvalidParameters", "failure_message": str(e), "outputs": {}, "steps": []}
        steps = self.doc["mainSteps"]
        index = {s["name"]: i for i, s in enumerate(steps)}
        status, failure = "Success", None
        i = 0
        # Every step runs at most maxAttempts times per visit and a branch
        # can loop: bound the visits so a looping document fails instead of
        # hanging the test.
        for _visit in range(1000):
            if i >= len(steps):
                break
            step = steps[i]
            record = {"name": step["name"], "action": step["action"], "status": "Success",
                      "outputs": {}, "failure": None, "attempts": 0}
            self.steps.append(record)
            next_name = None
            try:
                next_name = self.run_step(step, record)
            except StepFailed as e:
                record["status"] = "TimedOut" if isinstance(e, StepTimedOut) else "Failed"
                record["failure"] = str(e)
                on_failure = step.get("onFailure", "Abort")
                if step.get("isCritical", True):
                    status = record["status"]
                    failure = f"Step {step['name']} failed: {e}"
                if on_failure == "Abort":
                    status = record["status"]
                    failure = f"Step {step['name']} failed: {e}"
                    break
                if on_failure.startswith("step:"):
                    i = index[on_failure[5:]]
                    continue
                # Continue: on to the next step as if it had succeeded.
            if step.get("isEnd"):
                break
            if next_name is None:
                next_name = step.get("nextStep")
            if next_name is not None:
                i = index[next_name]
            else:
                i += 1
        else:
            status, failure = "Failed", "the document visited 1000 steps: a loop"
        doc_outputs = {}
        for name in self.doc.get("outputs") or []:
            if name in self.outputs:
                doc_outputs[name] = outputs_as_strings(self.outputs[name])
        return {
            "execution_id": self.execution_id,
            "status": status,
            "failure_message": failure,
            "outputs": doc_outputs,
            "steps": self.steps,
        }

    def run_step(self, step: dict, record: dict) -> str | None:
        attempts = int(step.get("maxAttempts", 1))
        timeout = float(step.get("timeoutSeconds", DEFAULT_TIMEOUT))
        if self.max_wait is not None:
            timeout = min(timeout, self.max_wait)
        last: StepFailed | None = None
        for _ in range(attempts):
            record["attempts"] += 1
            try:
                return self.attempt(step, record, timeout)
            except StepTimedOut:
                raise
            except StepFailed as e:
                last = e
        assert last is not None
        raise last

    def attempt(self, step: dict, record: dict, timeout: float) -> str | None:
        action = step["action"]
        inputs = step.get("inputs") or {}
        if action == "aws:branch":
            return self.branch(step, inputs)
        if action == "aws:sleep":
            seconds = parse_iso_duration(self.substitute(inputs["Duration"]))
            time.sleep(min(seconds, timeout, 1.0))
            return None
        if action == "aws:executeScript":
            response = {"Payload": self.execute_script(step, self.substitute(inputs))}
        else:
            inputs = self.substitute(inputs)
            service, api = inputs["Service"], inputs["Api"]
            params = {k: v for k, v in inputs.items()
                      if k not in ("Service", "Api", "PropertySelector", "DesiredValues")}
            if action == "aws:executeAwsApi":
                response = self.call(service, api, params)
            elif action == "aws:assertAwsResourceProperty":
                response = self.call(service, api, params)
                value = select(response, inputs["PropertySelector"])
                if not matches(value, inputs["DesiredValues"]):
                    raise StepFailed(
                        f"{inputs['PropertySelector']} is {value!r}, not one of {inputs['DesiredValues']}"
                    )
            elif action == "aws:waitForAwsResourceProperty":
                response = self.wait(service, api, params, inputs, timeout)
            else:
                raise InvalidDocument(f"action {action} is not supported")
        for out in step.get("outputs") or []:
            value = as_type(select(response, out["Selector"]), out["Type"], f"output {out['Name']}")
            self.outputs[f"{step['name']}.{out['Name']}"] = value
            record["outputs"][out["Name"]] = value
        return None

    def wait(self, service, api, params, inputs, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            response = self.call(service, api, params)
            value = select(response, inputs["PropertySelector"])
            if matches(value, inputs["DesiredValues"]):
                return response
            if time.monotonic() >= deadline:
                raise StepTimedOut(
                    f"{inputs['PropertySelector']} was still {value!r} after {timeout:g}s, "
                    f"waiting for one of {inputs['DesiredValues']}"
                )
            time.sleep(min(self.poll_interval, max(0.0, deadline - time.monotonic())))

    def branch(self, step: dict, inputs: dict) -> str:
        for choice in inputs.get("Choices") or []:
            if self.choice_holds(choice):
                return choice["NextStep"]
        if "Default" in inputs:
            return inputs["Default"]
        raise StepFailed("no choice matched and the branch has no Default")

    def choice_holds(self, c: dict) -> bool:
        if "And" in c:
            return all(self.choice_holds(x) for x in c["And"])
        if "Or" in c:
            return any(self.choice_holds(x) for x in c["Or"])
        if "Not" in c:
            return not self.choice_holds(c["Not"])
        value = self.substitute(c["Variable"])
        for op, want in c.items():
            if op in ("Variable", "NextStep"):
                continue
            want = self.substitute(want)
            return compare(op, value, want)
        raise InvalidDocument(f"choice {c} has no operator")

    def execute_script(self, step: dict, inputs: dict) -> Any:
        if inputs.get("Runtime") not in SCRIPT_RUNTIMES:
            raise InvalidDocument(f"step {step['name']}: Runtime {inputs.get('Runtime')} is not supported")
        module = types.ModuleType(f"script_{step['name']}")
        exec(compile(inputs["Script"], f"<{step['name']}>", "exec"), module.__dict__)
        handler = getattr(module, inputs["Handler"], None)
        if handler is None:
            raise InvalidDocument(f"step {step['name']}: no function {inputs['Handler']}")
        with self.script_environment():
            try:
                return jsonable(handler(inputs.get("InputPayload") or {}, {}))
            except StepFailed:
                raise
            except Exception as e:  # the script's own failure fails the step
                raise StepFailed(f"{type(e).__name__}: {e}") from e


def matches(value: Any, desired: list) -> bool:
    desired = [as_type(d, "String", "DesiredValues") for d in desired]
    if isinstance(value, list):
        return bool(value) and all(as_type(v, "String", "value") in desired for v in value)
    if value is None:
        return False
    return as_type(value, "String", "value") in desired


def compare(op: str, value: Any, want: Any) -> bool:
    if op == "StringEquals":
        return str(value) == str(want)
    if op == "EqualsIgnoreCase":
        return str(value).lower() == str(want).lower()
    if op == "StartsWith":
        return str(value).startswith(str(want))
    if op == "EndsWith":
        return str(value).endswith(str(want))
    if op == "Contains":
        return str(want) in (value if isinstance(value, list) else str(value))
    if op == "BooleanEquals":
        return as_type(value, "Boolean", "Variable") == as_type(want, "Boolean", op)
    numeric = {
        "NumericEquals": lambda a, b: a == b,
        "NumericGreater": lambda a, b: a > b,
        "NumericLesser": lambda a, b: a < b,
        "NumericGreaterOrEquals": lambda a, b: a >= b,
        "NumericLesserOrEquals": lambda a, b: a <= b,
    }
    if op in numeric:
        return numeric[op](float(value), float(want))
    raise InvalidDocument(f"branch operator {op} is not supported")


def parse_iso_duration(text: str) -> float:
    m = re.fullmatch(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?", str(text))
    if not m:
        raise InvalidDocument(f"Duration {text!r} is not an ISO 8601 duration like PT30S")
    h, mi, s = (int(x or 0) for x in m.groups())
    return h * 3600 + mi * 60 + s


def check_structure(doc: dict) -> None:
    """What CreateDocument / StartAutomationExecution reject outright."""
    if str(doc.get("schemaVersion")) != "0.3":
        raise InvalidDocument("schemaVersion must be 0.3 for Automation")
    steps = doc.get("mainSteps") or []
    if not steps:
        raise InvalidDocument("mainSteps is empty")
    names = [s.get("name") for s in steps]
    if len(set(names)) != len(names):
        raise InvalidDocument("step names repeat")
    for s in steps:
        if s.get("action") not in ACTIONS:
            raise InvalidDocument(f"step {s.get('name')}: action {s.get('action')} is not supported")
        targets = [s.get("nextStep")]
        on_failure = s.get("onFailure", "Abort")
        if on_failure.startswith("step:"):
            targets.append(on_failure[5:])
        elif on_failure not in ("Abort", "Continue"):
            raise InvalidDocument(f"step {s['name']}: onFailure {on_failure} is not Abort, Continue or step:Name")
        if s["action"] == "aws:branch":
            inputs = s.get("inputs") or {}
            targets += [c.get("NextStep") for c in inputs.get("Choices") or []]
            targets.append(inputs.get("Default"))
        for t in targets:
            if t is not None and t not in names:
                raise InvalidDocument(f"step {s['name']} names step {t}, which does not exist")
        for out in s.get("outputs") or []:
            if out.get("Type") not in OUTPUT_TYPES:
                raise InvalidDocument(f"step {s['name']}: output {out.get('Name')} has type {out.get('Type')}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run an SSM Automation document (test tooling).")
    p.add_argument("document")
    p.add_argument("--endpoint", help="endpoint URL for every service (moto's server)")
    p.add_argument("--region", required=True)
    p.add_argument("--param", action="append", default=[], metavar="K=V",
                   help="a parameter; repeat a name for a StringList")
    p.add_argument("--service-endpoint", action="append", default=[], metavar="SERVICE=URL")
    p.add_argument("--poll-interval", type=float, default=1.0)
    p.add_argument("--max-wait", type=float, default=None)
    p.add_argument("--stand-ins", action="store_true",
                   help="serve the APIs moto lacks from testing/standin.py")
    a = p.parse_args(argv)
    params: dict[str, Any] = {}
    for kv in a.param:
        if "=" not in kv:
            p.error(f"--param {kv}: expected K=V")
        k, v = kv.split("=", 1)
        if k in params:
            params[k] = (params[k] if isinstance(params[k], list) else [params[k]]) + [v]
        else:
            params[k] = v
    if a.endpoint:
        # moto takes any key; a loopback endpoint needs none of the caller's.
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    if a.stand_ins:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import standin  # noqa: PLC0415 - only when asked

        standin.install(boto3.DEFAULT_SESSION or boto3.setup_default_session() or boto3.DEFAULT_SESSION)
    endpoints = dict(kv.split("=", 1) for kv in a.service_endpoint)
    try:
        result = Automation(a.document, a.region, a.endpoint, endpoints, a.poll_interval, a.max_wait).run(params)
    except InvalidDocument as e:
        result = {"status": "InvalidDocument", "failure_message": str(e), "outputs": {}, "steps": []}
    print(json.dumps(result, default=str))
    if result["status"] == "Success":
        return 0
    return 2 if result["status"] in ("InvalidParameters", "InvalidDocument") else 1


if __name__ == "__main__":
    sys.exit(main())
