"""The library as a whole: every runbook the shipped rules and catalogue call
has a file (and a test beside it), every document meets the house standard
and fits its callers, every API step is checked against botocore's service
models, and manifest.yaml grants every API a document step calls."""

import re
from pathlib import Path

import botocore.session
import pytest
import yaml

from testing import automation
from testing.harness import REPO, ROOT, iam_action, manifest

MODELS = botocore.session.get_session()
API_ACTIONS = {"aws:executeAwsApi", "aws:waitForAwsResourceProperty", "aws:assertAwsResourceProperty"}
CONTROL_INPUTS = {"Service", "Api", "PropertySelector", "DesiredValues"}
ROLE_PATTERN_OK = ["", "arn:aws:iam::123456789012:role/dr-runbooks-executor", "arn:aws-cn:iam::123456789012:role/a/b"]
SCENARIOS = {"az_failure": "zone", "region_outage": "region", "service_failure": "service", "data_loss": "data"}
# What a caller's templates stand for, when its values are checked against
# the documents' allowedPatterns: the shapes dr-reactor really renders.
SAMPLE = {
    "labels.region": "ap-northeast-2", "dr_region": "ap-northeast-1", "labels.zone": "ap-northeast-2a",
    "incident_id": "0193a5d2-7c1e-7000-8000-00000000c001", "service.name": "order",
    "service.datastore": "mysql", "service.rpo": "1m", "labels.service": "order",
    "latest.Deploy.labels.previous_version": "1.4.2", "latest.Deploy.labels.version": "1.5.0",
}


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)  # a real parser: the rules use anchors


def calls():
    """(kind, name, parameters or None, caller) for every runbook call the
    shipped rules and catalogue make, drill variants included."""
    out = []

    def step(s, caller):
        for variant in (s, s.get("drill") or {}):
            if "ssm" in variant:
                out.append(("ssm", variant["ssm"]["document"], variant["ssm"].get("parameters") or {}, caller))
            if "lambda" in variant:
                out.append(("lambda", variant["lambda"]["function"].split(":")[0], None, caller))

    for path in sorted((REPO / "rules").glob("*.yaml")):
        for rule in load_yaml(path)["rules"]:
            for s in (rule.get("plan") or {}).get("steps") or []:
                step(s, f"rule {rule['name']} step {s['name']}")
    catalogue = load_yaml(REPO / "config" / "services.yaml")
    for name, rb in catalogue["runbooks"].items():
        step(rb, f"catalogue runbook {name}")
    return out


def file_of(kind, name):
    found = list(ROOT.glob(f"*/{name}.{'yaml' if kind == 'ssm' else 'py'}"))
    return found[0] if found else None


def documents():
    return sorted(ROOT.glob("*/DR-*.yaml"))


def handlers():
    return sorted(p for p in ROOT.glob("*/*.py") if not p.name.endswith("_test.py") and p.parent.name != "testing")


def test_every_called_runbook_has_a_file_and_a_test_beside_it():
    seen = calls()
    assert len({n for _, n, _, _ in seen}) >= 14, "the shipped rules and catalogue call fourteen runbooks"
    for kind, name, _, caller in seen:
        path = file_of(kind, name)
        assert path is not None, f"{caller} calls {name}, which has no file under runbooks/"
        assert path.parent.name in SCENARIOS.values()
        assert (path.parent / f"{name}_test.py").exists(), f"{name} has no test file beside it"


def test_the_manifest_lists_every_runbook_file_once():
    m = manifest()
    files = {p.relative_to(ROOT).as_posix(): p for p in documents() + handlers()}
    assert sorted(r["file"] for r in m.values()) == sorted(files)
    for name, r in m.items():
        assert Path(r["file"]).stem == name
        assert r["kind"] == ("ssm" if r["file"].endswith(".yaml") else "lambda")
        assert SCENARIOS[r["scenario"]] == Path(r["file"]).parent.name
        if r["kind"] == "lambda":
            assert r["handler"] == "index.handler"
        if "failback" in r:
            assert r["failback"] in m, f"{name}: failback {r['failback']} is no runbook"
        for grant in r.get("iam") or []:
            assert grant["why"] and grant["actions"] and grant["resources"]
            for a in grant["actions"]:
                assert re.fullmatch(r"[a-z0-9-]+:[A-Za-z0-9]+", a), a


def test_the_manifest_failbacks_are_the_catalogues():
    catalogue = load_yaml(REPO / "config" / "services.yaml")["runbooks"]

    def target(rb):
        return rb["ssm"]["document"] if "ssm" in rb else rb["lambda"]["function"]

    m = manifest()
    for rb in catalogue.values():
        if "failback" in rb:
            back = target(catalogue[rb["failback"]])
            if back != target(rb):  # switching Kafka back is the same function
                assert m[target(rb)].get("failback") == back


@pytest.mark.parametrize("path", documents(), ids=lambda p: p.stem)
def test_document_meets_the_standard(path):
    doc = load_yaml(path)
    automation.check_structure(doc)
    assert doc["assumeRole"] == "{{ AutomationAssumeRole }}"
    assert doc.get("description", "").startswith(f"# {path.stem}")
    role = doc["parameters"]["AutomationAssumeRole"]
    assert role["type"] == "String" and role["default"] == ""
    for arn in ROLE_PATTERN_OK:
        assert re.search(role["allowedPattern"], arn), arn
    assert not re.search(role["allowedPattern"], "not-an-arn")
    for name, p in doc["parameters"].items():
        assert p.get("type") in automation.PARAM_TYPES, name
        assert p.get("description"), f"{name} has no description"
        assert p.get("allowedPattern"), f"{name} has no allowedPattern"
        re.compile(p["allowedPattern"])
        if "default" in p:
            assert re.search(p["allowedPattern"], str(p["default"])), f"{name}: its default fails its own pattern"
    for s in doc["mainSteps"]:
        assert "onFailure" in s, f"step {s['name']} names no onFailure"
        if s["action"] != "aws:branch":
            assert "outputs" in s, f"step {s['name']} names no outputs"
        if s["action"] == "aws:executeScript":
            assert s["inputs"]["Runtime"] == "python3.11"
            compile(s["inputs"]["Script"], s["name"], "exec")
            # Automation substitutes {{ }} in the script text too: inputs
            # reach a script through InputPayload only.
            assert "{{" not in s["inputs"]["Script"], f"step {s['name']}: {{{{ in the script"
            assert f"def {s['inputs']['Handler']}(" in s["inputs"]["Script"]
            assert "timeoutSeconds" in s, f"script step {s['name']} has no timeout"
    last = doc["mainSteps"][-1]
    assert last["name"].startswith("Verify") and last.get("isEnd") is True, "a verify step ends the document"
    for out in doc.get("outputs") or []:
        step, name = out.split(".")
        assert name in [o["Name"] for s in doc["mainSteps"] if s["name"] == step for o in s.get("outputs") or []], out


def _variables(value):
    if isinstance(value, str):
        return automation.VARIABLE.findall(value)
    if isinstance(value, list):
        return [v for x in value for v in _variables(x)]
    if isinstance(value, dict):
        return [v for x in value.values() for v in _variables(x)]
    return []


@pytest.mark.parametrize("path", documents(), ids=lambda p: p.stem)
def test_every_variable_is_a_parameter_or_an_earlier_output(path):
    doc = load_yaml(path)
    known = set(doc["parameters"]) | {"global:REGION", "global:ACCOUNT_ID", "global:AWS_PARTITION",
                                      "automation:EXECUTION_ID"}
    outputs = {f"{s['name']}.{o['Name']}" for s in doc["mainSteps"] for o in s.get("outputs") or []}
    for s in doc["mainSteps"]:
        for v in _variables(s.get("inputs") or {}):
            assert v in known | outputs, f"step {s['name']} uses {{{{ {v} }}}}, which is not defined"


def test_callers_pass_exactly_what_each_document_declares():
    """dr-reactor's readiness check flags a passed parameter the document
    does not declare and a declared one without default nobody passes; and
    the values callers render must pass the allowedPatterns."""
    for kind, name, params, caller in calls():
        if kind != "ssm":
            continue
        declared = load_yaml(file_of(kind, name))["parameters"]
        assert set(params) <= set(declared), f"{caller} passes {set(params) - set(declared)} to {name}"
        required = {n for n, p in declared.items() if "default" not in p}
        assert required <= set(params), f"{name} requires {required - set(params)}, not passed by {caller}"
        for k, template in params.items():
            value = re.sub(r"\{\{\s*([^}|]+?)\s*(\|[^}]*)?\}\}", lambda m: SAMPLE[m.group(1).strip()], str(template))
            assert re.search(declared[k]["allowedPattern"], value), f"{caller}: {k}={value!r} fails {name}'s pattern"
            if "default(" in str(template):  # the rule's fallback renders empty
                assert re.search(declared[k]["allowedPattern"], ""), f"{caller}: {k} may be empty"


# -- botocore's service models ------------------------------------------------

PARAM_SHAPES = {"String": {"string", "timestamp"}, "Integer": {"integer", "long"}, "Boolean": {"boolean"},
                "StringList": {"list"}, "MapList": {"list"}, "StringMap": {"map", "structure"}}


def _value_fits(value, shape, types, where):
    """A step input's value against its input shape; `types` maps each
    variable to its declared type."""
    if isinstance(value, str) and automation.VARIABLE.fullmatch(value.strip()):
        var = automation.VARIABLE.fullmatch(value.strip()).group(1)
        kind = types.get(var, "String")
        assert shape.type_name in PARAM_SHAPES[kind], f"{where}: {var} is {kind}, the API wants {shape.type_name}"
        if kind == "StringList":
            assert shape.member.type_name == "string", where
        return
    t = shape.type_name
    if t == "structure":
        assert isinstance(value, dict), f"{where}: wants a structure"
        for k, v in value.items():
            assert k in shape.members, f"{where}: {k} is not a member of {shape.name}"
            _value_fits(v, shape.members[k], types, f"{where}.{k}")
        missing = set(shape.required_members) - set(value)
        assert not missing, f"{where}: missing {missing}"
    elif t == "list":
        assert isinstance(value, list), f"{where}: wants a list"
        for i, v in enumerate(value):
            _value_fits(v, shape.member, types, f"{where}[{i}]")
    elif t == "map":
        assert isinstance(value, dict), where
    elif t in ("integer", "long"):
        assert isinstance(value, int) and not isinstance(value, bool), f"{where}: wants an integer"
    elif t == "boolean":
        assert isinstance(value, bool), f"{where}: wants a boolean"
    else:
        assert isinstance(value, str), f"{where}: wants a {t}"


def _selected_shape(shape, selector, where):
    for m in automation.SELECTOR_TOKEN.finditer(selector[1:]):
        name, index = m.group(1), m.group(2)
        if name is not None:
            assert shape.type_name == "structure" and name in shape.members, f"{where}: no {name} in {shape.name}"
            shape = shape.members[name]
        else:
            assert shape.type_name == "list", f"{where}: [{index}] on a {shape.type_name}"
            shape = shape.member
    return shape


@pytest.mark.parametrize("path", documents(), ids=lambda p: p.stem)
def test_api_steps_fit_botocore_service_models(path):
    doc = load_yaml(path)
    types = {n: p["type"] for n, p in doc["parameters"].items()}
    types |= {f"{s['name']}.{o['Name']}": o["Type"] for s in doc["mainSteps"] for o in s.get("outputs") or []}
    for s in doc["mainSteps"]:
        if s["action"] not in API_ACTIONS:
            continue
        where = f"{path.stem} step {s['name']}"
        inputs = s["inputs"]
        assert inputs["Service"] in MODELS.get_available_services(), f"{where}: no service {inputs['Service']}"
        model = MODELS.get_service_model(inputs["Service"])
        assert inputs["Api"] in model.operation_names, f"{where}: {inputs['Service']} has no {inputs['Api']}"
        op = model.operation_model(inputs["Api"])
        params = {k: v for k, v in inputs.items() if k not in CONTROL_INPUTS}
        if op.input_shape is not None:
            _value_fits(params, op.input_shape, types, where)
        else:
            assert not params, where
        if s["action"] != "aws:executeAwsApi":
            _selected_shape(op.output_shape, inputs["PropertySelector"], f"{where} PropertySelector")
            assert inputs["DesiredValues"], where
        for out in s.get("outputs") or []:
            shape = _selected_shape(op.output_shape, out["Selector"], f"{where} output {out['Name']}")
            assert shape.type_name in PARAM_SHAPES[out["Type"]] | ({"integer", "long", "boolean"} if out["Type"] == "String" else set()), \
                f"{where}: output {out['Name']} is {out['Type']}, the model says {shape.type_name}"


@pytest.mark.parametrize("path", documents(), ids=lambda p: p.stem)
def test_the_manifest_grants_every_api_step(path):
    doc = load_yaml(path)
    declared = {a for g in manifest()[path.stem].get("iam") or [] for a in g["actions"]}
    for s in doc["mainSteps"]:
        if s["action"] in API_ACTIONS:
            action = iam_action(s["inputs"]["Service"], s["inputs"]["Api"])
            assert action in declared, f"{path.stem} step {s['name']} calls {action}, not in manifest.yaml"
