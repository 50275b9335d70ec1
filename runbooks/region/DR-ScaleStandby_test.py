"""DR-ScaleStandby end to end through the interpreter against moto."""

import json

from testing import world
from testing.automation import Automation
from testing.harness import TOKYO, document

DOC = document("region/DR-ScaleStandby.yaml")
STANDBY = {"dr-reactor:service": "payment", "dr-reactor:standby": "true", "dr-reactor:active-desired": "6"}
PARAMS = {"Service": "payment", "IncidentId": "0193a5d2-7c1e-7000-8000-00000000b003"}


def standby(aws):
    world.management_host(aws, TOKYO)
    world.eks_cluster(aws, TOKYO)
    world.nodegroup(aws, "payment-standby", 1, TOKYO, tags=STANDBY)
    world.nodegroup(aws, "order-standby", 1, TOKYO, tags={**STANDBY, "dr-reactor:service": "order"})


def run(aws):
    return Automation(DOC, TOKYO, aws.endpoint, poll_interval=0.05).run(PARAMS)


def test_scales_the_standby_nodes_then_the_pods(aws):
    standby(aws)
    result = run(aws)
    assert result["status"] == "Success", result["failure_message"]
    assert world.nodegroup_size(aws, "payment-standby", TOKYO) == {"minSize": 1, "maxSize": 6, "desiredSize": 6}
    assert world.nodegroup_size(aws, "order-standby", TOKYO)["desiredSize"] == 1, "another service's standby is not touched"
    saved = json.loads(aws("ssm", TOKYO).get_parameter(Name="/dr-reactor/standby/payment")["Parameter"]["Value"])
    assert [(g["name"], g["desired"], g["max"]) for g in saved["groups"]] == [("payment-standby", 1, 1)]
    [cmd] = world.commands(aws, TOKYO, "scale-standby payment")
    assert cmd["Status"] == "Success"
    assert '  kubectl -n payment scale "$d" --replicas="$n"' in cmd["Parameters"]["commands"]
    assert result["outputs"]["VerifyStandby.Groups"] == ["payment-standby=6"]


def test_a_second_run_changes_no_capacity_and_keeps_the_saved_sizes(aws, calls):
    standby(aws)
    assert run(aws)["status"] == "Success"
    saved = aws("ssm", TOKYO).get_parameter(Name="/dr-reactor/standby/payment")["Parameter"]["Value"]
    calls.actions.clear()
    again = run(aws)
    assert again["status"] == "Success", again["failure_message"]
    assert again["outputs"]["ScaleNodes.Changed"] == []
    assert "eks:UpdateNodegroupConfig" not in calls.actions and "ssm:PutParameter" not in calls.actions
    assert aws("ssm", TOKYO).get_parameter(Name="/dr-reactor/standby/payment")["Parameter"]["Value"] == saved
    assert world.nodegroup_size(aws, "payment-standby", TOKYO)["desiredSize"] == 6


def test_no_management_host_stops_before_any_command(aws):
    world.eks_cluster(aws, TOKYO)
    world.nodegroup(aws, "payment-standby", 1, TOKYO, tags=STANDBY)
    result = run(aws)
    assert result["status"] == "Failed"
    assert world.commands(aws, TOKYO) == []


def test_a_group_without_its_active_size_is_refused(aws):
    world.management_host(aws, TOKYO)
    world.eks_cluster(aws, TOKYO)
    world.nodegroup(aws, "payment-standby", 1, TOKYO, tags={k: v for k, v in STANDBY.items() if "active" not in k})
    result = run(aws)
    assert result["status"] == "Failed" and "no dr-reactor:active-desired tag" in result["failure_message"]
    assert world.nodegroup_size(aws, "payment-standby", TOKYO)["desiredSize"] == 1
