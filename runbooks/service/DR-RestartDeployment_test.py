"""DR-RestartDeployment through the interpreter against moto (Run Command is
recorded there), and its shell against a stand-in kubectl."""

from testing import shell, world
from testing.automation import Automation
from testing.harness import SEOUL, document

DOC = document("service/DR-RestartDeployment.yaml")
INCIDENT = "0193a5d2-7c1e-7000-8000-00000000c001"
PARAMS = {"Service": "order", "IncidentId": INCIDENT}


def run(aws, **extra):
    return Automation(DOC, SEOUL, aws.endpoint, poll_interval=0.05).run({**PARAMS, **extra})


def test_restarts_the_deployment_on_the_management_host(aws):
    host = world.management_host(aws)
    world.management_host(aws)  # a second host: the command still runs once
    result = run(aws)
    assert result["status"] == "Success", result["failure_message"]
    [cmd] = world.commands(aws, SEOUL, "restart order")
    assert cmd["Comment"] == f"dr-reactor {INCIDENT} restart order" and cmd["Status"] == "Success"
    assert len(cmd["InstanceIds"]) == 1 and cmd["DocumentName"] == "AWS-RunShellScript"
    assert cmd["InstanceIds"] == [host], "the first running management host"
    status, calls, _ = shell.run(cmd["Parameters"]["commands"])
    assert status == 0
    assert calls == ["kubectl -n order get deployment/order",
                     "kubectl -n order rollout restart deployment/order",
                     "kubectl -n order rollout status deployment/order --timeout=600s"]


def test_a_namespace_parameter_replaces_the_default(aws):
    world.management_host(aws)
    assert run(aws, Namespace="shop")["status"] == "Success"
    _, calls, _ = shell.run(shell.sent_commands(aws, SEOUL, "restart order"))
    assert calls[1] == "kubectl -n shop rollout restart deployment/order"


def test_a_second_run_follows_the_first_command(aws):
    world.management_host(aws)
    assert run(aws)["status"] == "Success"
    again = run(aws)
    assert again["status"] == "Success", again["failure_message"]
    assert [s["name"] for s in again["steps"]][-2:] == ["WaitForPriorCommand", "VerifyPriorCommand"]
    assert len(world.commands(aws, SEOUL, "restart order")) == 1


def test_no_management_host_sends_nothing(aws):
    result = run(aws)
    assert result["status"] == "Failed"
    assert world.commands(aws, SEOUL) == []


def test_a_missing_deployment_fails_the_command(aws):
    world.management_host(aws)
    run(aws)
    status, calls, _ = shell.run(shell.sent_commands(aws, SEOUL, "restart order"),
                                 {"kubectl": {"-n order get deployment/order": (1, "")}})
    assert status != 0 and not any("restart" in c for c in calls)
