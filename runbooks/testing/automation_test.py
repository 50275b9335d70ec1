"""The interpreter itself: the semantics the runbook tests rely on, on small
documents of its own, and the command line a Rust test fake will use."""

import json
import subprocess
import sys

from testing.automation import Automation
from testing.harness import ROOT, SEOUL, TOKYO

ROLE = {"type": "String", "default": "", "description": "r", "allowedPattern": "^.*$"}


def doc(*steps, params=None, outputs=None):
    return {"schemaVersion": "0.3", "assumeRole": "{{ AutomationAssumeRole }}",
            "parameters": {"AutomationAssumeRole": ROLE, **(params or {})},
            "outputs": outputs or [], "mainSteps": list(steps)}


def get_parameter(name, step="Read", **extra):
    return {"name": step, "action": "aws:executeAwsApi", "onFailure": "Abort",
            "inputs": {"Service": "ssm", "Api": "GetParameter", "Name": name},
            "outputs": [{"Name": "Value", "Selector": "$.Parameter.Value", "Type": "String"}], **extra}


def test_outputs_flow_into_later_steps_and_branches(aws):
    aws("ssm").put_parameter(Name="/a", Value="/b", Type="String")
    aws("ssm").put_parameter(Name="/b", Value="yes", Type="String")
    d = doc(get_parameter("{{ Start }}"),
            get_parameter("{{ Read.Value }}", step="Second"),
            {"name": "Choose", "action": "aws:branch", "onFailure": "Abort", "inputs": {
                "Choices": [{"NextStep": "Yes", "Variable": "{{ Second.Value }}", "StringEquals": "yes"}],
                "Default": "No"}},
            {**get_parameter("/missing", step="No"), "isEnd": True},
            {**get_parameter("/a", step="Yes"), "isEnd": True},
            params={"Start": {"type": "String", "description": "s", "allowedPattern": "^/"}},
            outputs=["Second.Value"])
    r = Automation(d, SEOUL, aws.endpoint).run({"Start": "/a"})
    assert r["status"] == "Success", r
    assert [s["name"] for s in r["steps"]] == ["Read", "Second", "Choose", "Yes"]
    assert r["outputs"] == {"Second.Value": ["yes"]}


def test_on_failure_continue_goes_on_but_the_execution_fails(aws):
    aws("ssm").put_parameter(Name="/a", Value="x", Type="String")
    d = doc({**get_parameter("/missing"), "onFailure": "Continue"}, get_parameter("/a", step="After"))
    r = Automation(d, SEOUL, aws.endpoint).run({})
    assert r["status"] == "Failed" and [s["status"] for s in r["steps"]] == ["Failed", "Success"]
    assert "ParameterNotFound" in r["failure_message"]


def test_on_failure_step_runs_the_named_step(aws):
    aws("ssm").put_parameter(Name="/a", Value="x", Type="String")
    d = doc({**get_parameter("/missing"), "onFailure": "step:Cleanup"}, get_parameter("/never", step="Skipped"),
            {**get_parameter("/a", step="Cleanup"), "isCritical": False})
    r = Automation(d, SEOUL, aws.endpoint).run({})
    assert [s["name"] for s in r["steps"]] == ["Read", "Cleanup"]


def test_a_wait_times_out_and_an_assert_fails(aws):
    aws("ssm").put_parameter(Name="/a", Value="no", Type="String")
    wait = {"name": "Wait", "action": "aws:waitForAwsResourceProperty", "onFailure": "Abort", "timeoutSeconds": 1,
            "inputs": {"Service": "ssm", "Api": "GetParameter", "Name": "/a",
                       "PropertySelector": "$.Parameter.Value", "DesiredValues": ["yes"]}, "outputs": []}
    r = Automation(doc(wait), SEOUL, aws.endpoint, poll_interval=0.1).run({})
    assert r["status"] == "TimedOut" and "still 'no' after 1s" in r["failure_message"]
    check = {**wait, "name": "Check", "action": "aws:assertAwsResourceProperty"}
    r = Automation(doc(check), SEOUL, aws.endpoint).run({})
    assert r["status"] == "Failed" and "not one of ['yes']" in r["failure_message"]


def test_parameters_are_checked_as_start_automation_execution_does(aws):
    d = doc(get_parameter("{{ Name }}"),
            params={"Name": {"type": "String", "description": "n", "allowedPattern": "^/[a-z]+$"},
                    "List": {"type": "StringList", "description": "l", "allowedPattern": "^[a-z]+$", "default": []}})
    a = Automation(d, SEOUL, aws.endpoint)
    assert a.run({})["status"] == "InvalidParameters", "a required parameter is missing"
    assert "allowedPattern" in a.run({"Name": "bad"})["failure_message"]
    assert "not declared" in a.run({"Name": "/a", "Other": "x"})["failure_message"]
    assert "allowedPattern" in a.run({"Name": "/a", "List": ["ok", "NO"]})["failure_message"]


def test_an_ssm_default_is_read_from_parameter_store(aws):
    aws("ssm").put_parameter(Name="/default/name", Value="/target", Type="String")
    aws("ssm").put_parameter(Name="/target", Value="found", Type="String")
    d = doc(get_parameter("{{ Name }}"), outputs=["Read.Value"],
            params={"Name": {"type": "String", "description": "n", "allowedPattern": "^/",
                             "default": "{{ssm:/default/name}}"}})
    assert Automation(d, SEOUL, aws.endpoint).run({})["outputs"] == {"Read.Value": ["found"]}


def test_the_command_line_runs_the_region_document_against_moto(aws):
    """What the Rust fake will do: start a shipped document through the CLI
    and read its JSON result."""
    aws("ssm", TOKYO).put_parameter(Name="/dr-reactor/route53/failover", Type="String", Value=json.dumps(
        {"hosted_zone_id": "Z0", "records": ["api.example.com."]}))
    p = subprocess.run([sys.executable, str(ROOT / "testing" / "automation.py"),
                        str(ROOT / "region" / "DR-Route53Failover.yaml"), "--endpoint", aws.endpoint,
                        "--region", TOKYO, "--param", f"FailedRegion={SEOUL}", "--param", f"TargetRegion={TOKYO}",
                        "--param", "IncidentId=inc-1", "--poll-interval", "0.05"],
                       capture_output=True, text=True, timeout=60)
    result = json.loads(p.stdout)
    # No hosted zone Z0 in moto: the document fails at its precondition, and says so.
    assert p.returncode == 1 and result["status"] == "Failed", p.stderr
    assert [s["name"] for s in result["steps"]] == ["ReadConfig", "CheckTarget"]
    bad = subprocess.run([sys.executable, str(ROOT / "testing" / "automation.py"),
                          str(ROOT / "region" / "DR-Route53Failover.yaml"), "--endpoint", aws.endpoint,
                          "--region", TOKYO, "--param", "FailedRegion=nowhere"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and json.loads(bad.stdout)["status"] == "InvalidParameters"
