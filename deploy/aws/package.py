#!/usr/bin/env python3
"""Packages dr-reactor's stack: the hand-written template (dr-reactor.yaml)
plus the runbooks of a manifest (runbooks/manifest.yaml), written as one
JSON template to deploy in every region, as `aws cloudformation package`
turns local code into a template CloudFormation can take.

For each runbook of the manifest it adds, in every region:
  ssm     an AWS::SSM::Document (Doc<Name>): the document, parsed (cfn-lint
          checks its steps),
          named as the rules call it, new versions on update;
  lambda  an AWS::Lambda::Function (Fn<Name>) with the handler's source
          inline (CloudFormation stores it as index.py) and a log group
          (Fn<Name>Logs) with a retention;
and, in the DR region, one executor managed policy per scenario
(Executor<Scenario>Policy) with one statement per `iam:` entry, exactly as
the manifest gives it, its `why:` kept in the policy's Metadata under the
statement's Sid; plus the functions' own log writes.

The manifest is checked first and every problem reported at once: unknown
keys, missing files, duplicate names, a document that does not run as
{{ AutomationAssumeRole }}, a handler that is not index.<function>.

usage: package.py [--template T] [--runbooks DIR] [--output FILE]
"""

import argparse
import hashlib
import json
import os
import re
import sys

import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cfn  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

RUNBOOK_KEYS = {"name", "kind", "file", "scenario", "failback", "handler", "iam", "description"}
IAM_KEYS = {"why", "actions", "resources", "condition"}
# CloudFormation's inline code limit (Code.ZipFile).
MAX_INLINE_BYTES = 4 * 1024 * 1024
EXECUTOR_ARN = "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${ExecutorRoleName}"


class ManifestError(Exception):
    def __init__(self, problems):
        super().__init__("\n".join(problems))
        self.problems = problems


def camel(name):
    """`DR-PromoteReplicaAndFailover` → `DRPromoteReplicaAndFailover`,
    `dr-verify-and-replay` → `DrVerifyAndReplay`: a logical id or a Sid."""
    return "".join(p[:1].upper() + p[1:] for p in re.split(r"[^A-Za-z0-9]+", name) if p)


def sub_strings(v):
    """Wraps every string holding `${...}` in Fn::Sub, so a manifest's ARN
    patterns name the stack's partition and account."""
    if isinstance(v, str):
        return {"Fn::Sub": v} if "${" in v else v
    if isinstance(v, list):
        return [sub_strings(x) for x in v]
    if isinstance(v, dict):
        return {k: sub_strings(x) for k, x in v.items()}
    return v


def load_manifest(runbooks_dir):
    """The manifest's runbooks, each with its file's text, or every problem."""
    path = os.path.join(runbooks_dir, "manifest.yaml")
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f) or {}
    problems = []
    if set(doc) != {"runbooks"} or not isinstance(doc.get("runbooks"), list):
        raise ManifestError([f"{path}: expected one key, runbooks: a list"])
    seen = set()
    out = []
    for i, rb in enumerate(doc["runbooks"]):
        where = f"{path}: runbooks[{i}]"
        if not isinstance(rb, dict):
            problems.append(f"{where}: expected a mapping")
            continue
        name = rb.get("name")
        if isinstance(name, str):
            where = f"{path}: runbook {name}"
        for key in sorted(set(rb) - RUNBOOK_KEYS):
            problems.append(f"{where}: unknown key {key}")
        for key in ("name", "kind", "file", "scenario"):
            if not isinstance(rb.get(key), str) or not rb[key]:
                problems.append(f"{where}: {key} is required (a string)")
        if not isinstance(name, str):
            continue
        if name in seen:
            problems.append(f"{where}: the name is used twice")
        seen.add(name)
        kind = rb.get("kind")
        if kind not in ("ssm", "lambda"):
            problems.append(f"{where}: kind must be ssm or lambda, not {kind!r}")
        file = os.path.join(runbooks_dir, rb.get("file") or "")
        text = None
        if not os.path.isfile(file):
            problems.append(f"{where}: file {rb.get('file')} does not exist")
        else:
            with open(file, encoding="utf-8") as f:
                text = f.read()
        if kind == "ssm" and text is not None:
            problems.extend(f"{where}: {p}" for p in document_problems(text))
        if kind == "lambda":
            handler = rb.get("handler")
            if not isinstance(handler, str) or not re.fullmatch(r"index\.[A-Za-z_][A-Za-z0-9_]*", handler):
                problems.append(
                    f"{where}: handler must be index.<function> (the inline code is stored as index.py), not {handler!r}"
                )
            if text is not None and len(text.encode()) > MAX_INLINE_BYTES:
                problems.append(f"{where}: {rb['file']} is over CloudFormation's 4 MiB of inline code")
        elif "handler" in rb:
            problems.append(f"{where}: handler is for lambda runbooks only")
        iam = rb.get("iam")
        if not isinstance(iam, list) or not iam:
            problems.append(f"{where}: iam must list what the runbook's steps call")
            iam = []
        for j, entry in enumerate(iam):
            problems.extend(f"{where}: iam[{j}]: {p}" for p in iam_problems(entry))
        out.append(dict(rb, text=text))
    failbacks = {rb.get("failback") for rb in out} - {None}
    for missing in sorted(failbacks - seen):
        problems.append(f"{path}: failback {missing} is not a runbook of the manifest")
    if problems:
        raise ManifestError(problems)
    return out


def document_problems(text):
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        return [f"not YAML: {e}"]
    if not isinstance(doc, dict):
        return ["not an SSM document (a mapping)"]
    problems = []
    if str(doc.get("schemaVersion")) != "0.3":
        problems.append("schemaVersion must be '0.3' (an Automation document)")
    if doc.get("assumeRole") != "{{ AutomationAssumeRole }}":
        problems.append("assumeRole must be '{{ AutomationAssumeRole }}': the document runs as the executor role")
    if "AutomationAssumeRole" not in (doc.get("parameters") or {}):
        problems.append("declares no AutomationAssumeRole parameter")
    if not doc.get("mainSteps"):
        problems.append("has no mainSteps")
    return problems


def iam_problems(entry):
    if not isinstance(entry, dict):
        return ["expected a mapping"]
    problems = [f"unknown key {k}" for k in sorted(set(entry) - IAM_KEYS)]
    if not isinstance(entry.get("why"), str) or not entry["why"].strip():
        problems.append("why is required: say what the step needs it for")
    for key in ("actions", "resources"):
        v = entry.get(key)
        if not isinstance(v, list) or not v or not all(isinstance(x, str) and x for x in v):
            problems.append(f"{key} must be a non-empty list of strings")
    for a in entry.get("actions") or []:
        if isinstance(a, str) and not re.fullmatch(r"[a-z0-9-]+:[A-Za-z0-9]+", a):
            problems.append(f"action {a!r} is not service:Action (no wildcards)")
    if "condition" in entry and not isinstance(entry["condition"], dict):
        problems.append("condition must be a mapping")
    return problems


def document_resource(rb):
    return {
        "Type": "AWS::SSM::Document",
        "Properties": {
            "Name": rb["name"],
            "DocumentType": "Automation",
            "DocumentFormat": "YAML",
            "Content": yaml.safe_load(rb["text"]),
            # In place: the name is what the rules call, so it must not
            # change on an update (replacement would need a new name).
            "UpdateMethod": "NewVersion",
            "Tags": [{"Key": "dr-reactor:scenario", "Value": rb["scenario"]}],
        },
    }


def function_resources(rb):
    logical = f"Fn{camel(rb['name'])}"
    logs = {
        "Type": "AWS::Logs::LogGroup",
        "DeletionPolicy": "Retain",
        "UpdateReplacePolicy": "Retain",
        "Properties": {
            "LogGroupName": f"/aws/lambda/{rb['name']}",
            "RetentionInDays": {"Ref": "LogRetentionDays"},
        },
    }
    function = {
        "Type": "AWS::Lambda::Function",
        "DependsOn": [f"{logical}Logs"],
        "Properties": {
            "FunctionName": rb["name"],
            "Description": rb.get("description") or f"dr-reactor runbook {rb['name']} ({rb['scenario']})",
            "Runtime": {"Ref": "LambdaRuntime"},
            "Handler": rb["handler"],
            "Code": {"ZipFile": rb["text"]},
            # In the DR region the role is created by this stack: GetAtt
            # orders the function after it. Elsewhere it already exists.
            "Role": {"Fn::If": ["IsDrRegion", {"Fn::GetAtt": ["ExecutorRole", "Arn"]}, {"Fn::Sub": EXECUTOR_ARN}]},
            "Timeout": {"Ref": "RunbookFunctionTimeout"},
            "MemorySize": 256,
            "Layers": {"Fn::If": ["HasLayers", {"Ref": "LambdaLayerArns"}, {"Ref": "AWS::NoValue"}]},
            "Environment": {"Variables": {"DR_RUNBOOK": rb["name"], "POWERTOOLS_SERVICE_NAME": rb["name"]}},
            "Tags": [{"Key": "dr-reactor:scenario", "Value": rb["scenario"]}],
        },
    }
    return {logical: function, f"{logical}Logs": logs}


def executor_policies(runbooks):
    """One managed policy per scenario: the manifest's iam entries, one
    statement each, Sid `<Runbook><n>`; and the functions' log writes."""
    by_scenario = {}
    for rb in runbooks:
        by_scenario.setdefault(rb["scenario"], []).append(rb)
    out = {}
    for scenario, rbs in sorted(by_scenario.items()):
        statements, why = [], {}
        for rb in rbs:
            for n, entry in enumerate(rb["iam"], start=1):
                sid = f"{camel(rb['name'])}{n}"
                statement = {
                    "Sid": sid,
                    "Effect": "Allow",
                    "Action": sorted(entry["actions"]),
                    "Resource": sub_strings(entry["resources"]),
                }
                if entry.get("condition"):
                    statement["Condition"] = sub_strings(entry["condition"])
                statements.append(statement)
                why[sid] = f"{rb['name']}: {entry['why']}"
        out[f"Executor{camel(scenario)}Policy"] = executor_policy(
            scenario.replace("_", "-"),
            f"What the {scenario} runbooks' steps call: {', '.join(rb['name'] for rb in rbs)}",
            statements,
            why,
        )
    functions = [rb["name"] for rb in runbooks if rb["kind"] == "lambda"]
    if functions:
        sid = "RunbookFunctionsWriteTheirLogs"
        out["ExecutorLogsPolicy"] = executor_policy(
            "logs",
            "The runbook functions write their own log streams, nothing else of CloudWatch Logs",
            [
                {
                    "Sid": sid,
                    "Effect": "Allow",
                    "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                    "Resource": [
                        {"Fn::Sub": f"arn:${{AWS::Partition}}:logs:${{{region}}}:${{AWS::AccountId}}:log-group:/aws/lambda/{name}:*"}
                        for name in functions
                        for region in ("PrimaryRegion", "DrRegion")
                    ],
                }
            ],
            {sid: "each runbook function logs to its own group (created by this stack, so no CreateLogGroup)"},
        )
    return out


def executor_policy(suffix, description, statements, why):
    return {
        "Type": "AWS::IAM::ManagedPolicy",
        "Condition": "IsDrRegion",
        "Metadata": {"Why": why},
        "Properties": {
            "ManagedPolicyName": {"Fn::Sub": f"${{ExecutorRoleName}}-{suffix}"},
            "Description": description[:1000],
            "Roles": [{"Ref": "ExecutorRole"}],
            "PolicyDocument": {"Version": "2012-10-17", "Statement": statements},
        },
    }


def package(template_path, runbooks_dir):
    template = cfn.load(template_path)
    runbooks = load_manifest(runbooks_dir)
    resources = template["Resources"]
    added = {}
    for rb in runbooks:
        if rb["kind"] == "ssm":
            added[f"Doc{camel(rb['name'])}"] = document_resource(rb)
        else:
            added.update(function_resources(rb))
    added.update(executor_policies(runbooks))
    clash = sorted(set(added) & set(resources))
    if clash:
        raise ManifestError([f"logical ids {clash} are already in {template_path}"])
    resources.update(added)
    with open(os.path.join(runbooks_dir, "manifest.yaml"), "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    template.setdefault("Metadata", {})["DrReactorPackage"] = {
        "manifest_sha256": digest,
        "runbooks": [rb["name"] for rb in runbooks],
    }
    return template


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--template", default=os.path.join(HERE, "dr-reactor.yaml"))
    p.add_argument("--runbooks", default=os.path.join(ROOT, "runbooks"))
    p.add_argument("--output", help="write here instead of standard output")
    args = p.parse_args(argv)
    try:
        template = package(args.template, args.runbooks)
    except ManifestError as e:
        for problem in e.problems:
            print(f"package.py: {problem}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"package.py: {e}", file=sys.stderr)
        return 2
    text = json.dumps(template, indent=1, sort_keys=False) + "\n"
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
