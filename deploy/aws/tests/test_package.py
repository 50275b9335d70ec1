"""package.py: every runbook of a manifest becomes its resource, the
executor role gets exactly the manifest's permissions, and a bad manifest
is refused with every problem named."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from conftest import AWS_DIR, DR, FIXTURE_RUNBOOKS, PRIMARY, TEMPLATE, package, resolve

# The runbooks the shipped rules and catalogue call (rules/, config/services.yaml).
CALLED = {
    "ssm": {
        "DR-CordonAndDrainZone", "DR-ShiftZoneCapacity", "DR-RebalanceZoneCapacity",
        "DR-PromoteReplicaAndFailover", "DR-FailbackDatastore", "DR-ScaleStandby",
        "DR-ScalePrimary", "DR-Route53Failover", "DR-RestartDeployment",
        "DR-HelmRollback", "DR-PointInTimeRestore",
    },
    "lambda": {"dr-verify-multi-az-failover", "dr-switch-kafka-consumers", "dr-verify-and-replay"},
}


def manifest():
    with open(os.path.join(FIXTURE_RUNBOOKS, "manifest.yaml")) as f:
        return yaml.safe_load(f)["runbooks"]


def test_every_runbook_becomes_its_resource_in_every_region(fixture_packaged):
    for region in (PRIMARY, DR):
        r = resolve(fixture_packaged, region)
        docs = {d["Properties"]["Name"]: d["Properties"] for d in r.of_type("AWS::SSM::Document").values()}
        functions = {f["Properties"]["FunctionName"]: f["Properties"] for f in r.of_type("AWS::Lambda::Function").values()}
        assert set(docs) == CALLED["ssm"]
        assert set(functions) == CALLED["lambda"]
        for rb in manifest():
            with open(os.path.join(FIXTURE_RUNBOOKS, rb["file"])) as f:
                text = f.read()
            if rb["kind"] == "ssm":
                d = docs[rb["name"]]
                assert (d["DocumentType"], d["DocumentFormat"], d["UpdateMethod"]) == ("Automation", "YAML", "NewVersion")
                assert d["Content"] == yaml.safe_load(text)
            else:
                fn = functions[rb["name"]]
                assert fn["Code"] == {"ZipFile": text}
                assert fn["Handler"] == rb["handler"]
                assert fn["Role"] == f"arn:aws:iam::123456789012:role/dr-executor"
                assert fn["Runtime"] == "python3.12"
                assert "Layers" not in fn, "no layer unless LambdaLayerArns names one"
        logs = {g["Properties"]["LogGroupName"] for g in r.of_type("AWS::Logs::LogGroup").values()}
        assert logs == {f"/aws/lambda/{n}" for n in CALLED["lambda"]}


def test_layers_are_passed_when_given(fixture_packaged):
    r = resolve(fixture_packaged, DR, LambdaLayerArns="arn:aws:lambda:ap-northeast-1:017000801446:layer:AWSLambdaPowertoolsPythonV3-python312-x86_64:7")
    for fn in r.of_type("AWS::Lambda::Function").values():
        assert fn["Properties"]["Layers"] == ["arn:aws:lambda:ap-northeast-1:017000801446:layer:AWSLambdaPowertoolsPythonV3-python312-x86_64:7"]


def grants(statements):
    return {(a, r) for s in statements for a in s["Action"] for r in s["Resource"]}


def test_the_executor_role_gets_exactly_the_manifests_permissions(fixture_packaged):
    r = resolve(fixture_packaged, DR)
    policies = {k: p for k, p in r.of_type("AWS::IAM::ManagedPolicy").items() if k.startswith("Executor")}
    for p in policies.values():
        assert p["Properties"]["Roles"] == ["dr-executor"]
    statements = [s for k, p in policies.items() if k != "ExecutorLogsPolicy" for s in p["Properties"]["PolicyDocument"]["Statement"]]
    want = {
        (a, res.replace("${AWS::Partition}", "aws").replace("${AWS::AccountId}", "123456789012"))
        for rb in manifest() for e in rb["iam"] for a in e["actions"] for res in e["resources"]
    }
    assert grants(statements) == want
    # Every statement says why, in its policy's Metadata.
    for p in policies.values():
        why = fixture_packaged["Resources"][next(k for k, v in r.resources.items() if v is p)]["Metadata"]["Why"]
        sids = [s["Sid"] for s in p["Properties"]["PolicyDocument"]["Statement"]]
        assert sorted(why) == sorted(sids) and all(why.values())
    logs = policies["ExecutorLogsPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert grants(logs) == {
        (a, f"arn:aws:logs:{region}:123456789012:log-group:/aws/lambda/{n}:*")
        for a in ("logs:CreateLogStream", "logs:PutLogEvents")
        for n in CALLED["lambda"]
        for region in (PRIMARY, DR)
    }


def test_the_primary_region_gets_the_runbooks_and_the_key_replica_only(fixture_packaged):
    r = resolve(fixture_packaged, PRIMARY)
    assert {x["Type"] for x in r.resources.values()} == {"AWS::SSM::Document", "AWS::Lambda::Function", "AWS::Logs::LogGroup"}
    arn = "arn:aws:kms:ap-northeast-1:123456789012:key/mrk-1234abcd12ab34cd56ef1234567890ab"
    r = resolve(fixture_packaged, PRIMARY, AuditKeyArn=arn)
    replica = r.of_type("AWS::KMS::ReplicaKey")
    assert [x["Properties"]["PrimaryKeyArn"] for x in replica.values()] == [arn]


def write_manifest(tmp_path, runbooks, files=None):
    shutil.copytree(FIXTURE_RUNBOOKS, tmp_path, dirs_exist_ok=True)
    for name, text in (files or {}).items():
        (tmp_path / name).write_text(text)
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump({"runbooks": runbooks}))
    return str(tmp_path)


def problems(tmp_path, runbooks, files=None):
    with pytest.raises(package.ManifestError) as e:
        package.package(TEMPLATE, write_manifest(tmp_path, runbooks, files))
    return e.value.problems


GOOD_IAM = [{"why": "read", "actions": ["rds:DescribeDBInstances"], "resources": ["*"]}]


def test_a_bad_manifest_is_refused_with_every_problem(tmp_path):
    no_role = "schemaVersion: '0.3'\nparameters: {}\nmainSteps: [{name: a, action: aws:sleep, inputs: {Duration: PT1S}}]\n"
    got = problems(
        tmp_path,
        [
            {"name": "DR-A", "kind": "ssm", "file": "zone/DR-CordonAndDrainZone.yaml", "scenario": "s", "iam": GOOD_IAM, "owner": "x"},
            {"name": "DR-A", "kind": "ssm", "file": "zone/DR-CordonAndDrainZone.yaml", "scenario": "s", "iam": GOOD_IAM},
            {"name": "DR-B", "kind": "ssm", "file": "missing.yaml", "scenario": "s", "iam": GOOD_IAM},
            {"name": "DR-C", "kind": "ssm", "file": "norole.yaml", "scenario": "s", "iam": GOOD_IAM, "failback": "DR-Z"},
            {"name": "dr-d", "kind": "lambda", "file": "zone/dr_verify_multi_az_failover.py", "scenario": "s", "handler": "app.main", "iam": GOOD_IAM},
            {"name": "DR-E", "kind": "ssm", "file": "zone/DR-CordonAndDrainZone.yaml", "scenario": "s",
             "iam": [{"actions": ["rds:*"], "resources": []}]},
            {"name": "DR-F", "kind": "ecs", "file": "zone/DR-CordonAndDrainZone.yaml", "scenario": "s", "iam": GOOD_IAM},
        ],
        {"norole.yaml": no_role},
    )
    m = "manifest.yaml: runbook"
    expected = [
        f"{m} DR-A: unknown key owner",
        f"{m} DR-A: the name is used twice",
        f"{m} DR-B: file missing.yaml does not exist",
        f"{m} DR-C: assumeRole must be '{{{{ AutomationAssumeRole }}}}': the document runs as the executor role",
        f"{m} DR-C: declares no AutomationAssumeRole parameter",
        f"{m} dr-d: handler must be index.<function> (the inline code is stored as index.py), not 'app.main'",
        f"{m} DR-E: iam[0]: why is required: say what the step needs it for",
        f"{m} DR-E: iam[0]: resources must be a non-empty list of strings",
        f"{m} DR-E: iam[0]: action 'rds:*' is not service:Action (no wildcards)",
        f"{m} DR-F: kind must be ssm or lambda, not 'ecs'",
        "manifest.yaml: failback DR-Z is not a runbook of the manifest",
    ]
    assert [p.split("/")[-1] for p in got] == expected


def test_the_command_line_writes_json_or_says_what_is_wrong(tmp_path):
    out = tmp_path / "packaged.json"
    run = subprocess.run(
        [sys.executable, os.path.join(AWS_DIR, "package.py"), "--runbooks", FIXTURE_RUNBOOKS, "--output", str(out)],
        capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stderr
    packaged = json.loads(out.read_text())
    assert packaged["Metadata"]["DrReactorPackage"]["runbooks"] == [rb["name"] for rb in manifest()]
    bad = write_manifest(tmp_path / "bad", [{"name": "DR-A", "kind": "ssm", "file": "nope.yaml", "scenario": "s", "iam": GOOD_IAM}])
    run = subprocess.run([sys.executable, os.path.join(AWS_DIR, "package.py"), "--runbooks", bad], capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stdout == ""
    assert "runbook DR-A: file nope.yaml does not exist" in run.stderr
