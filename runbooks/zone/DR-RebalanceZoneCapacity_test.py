"""DR-RebalanceZoneCapacity after DR-ShiftZoneCapacity, against moto."""

import importlib.util
from pathlib import Path

from testing.automation import Automation
from testing.harness import SEOUL, document

SHIFT = document("zone/DR-ShiftZoneCapacity.yaml")
DOC = document("zone/DR-RebalanceZoneCapacity.yaml")
PARAMS = {"Service": "order", "RecoveredZone": "ap-northeast-2a", "IncidentId": "0193a5d2-7c1e-7000-8000-00000000a003"}

_spec = importlib.util.spec_from_file_location("shift_test", Path(__file__).with_name("DR-ShiftZoneCapacity_test.py"))
shift = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(shift)


def shifted(aws, calls):
    sn = shift.subnets(aws)
    shift.per_zone_groups(aws, sn)
    with calls.pause():
        r = Automation(SHIFT, SEOUL, aws.endpoint, poll_interval=0.05).run(shift.PARAMS)
    assert r["status"] == "Success", r["failure_message"]


def run(aws):
    return Automation(DOC, SEOUL, aws.endpoint, poll_interval=0.05).run(PARAMS)


def test_the_groups_get_their_sizes_back_and_the_saved_sizes_go(aws, calls):
    shifted(aws, calls)
    result = run(aws)
    assert result["status"] == "Success", result["failure_message"]
    sizes = {g["AutoScalingGroupName"]: (g["DesiredCapacity"], len(g["Instances"]))
             for g in aws("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]}
    assert sizes["order-a"] == (3, 3) and sizes["order-b"] == (3, 3) and sizes["order-c"] == (3, 3)
    assert shift.in_service_by_zone(aws) == {"ap-northeast-2a": 3, "ap-northeast-2b": 3, "ap-northeast-2c": 3}
    assert aws("ssm").describe_parameters()["Parameters"] == []


def test_a_second_run_changes_nothing(aws, calls):
    shifted(aws, calls)
    assert run(aws)["status"] == "Success"
    calls.actions.clear()
    again = run(aws)
    assert again["status"] == "Success", again["failure_message"]
    assert again["outputs"]["RestoreSizes.Restored"] == []
    assert "autoscaling:UpdateAutoScalingGroup" not in calls.actions
