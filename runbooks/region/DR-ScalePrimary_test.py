"""DR-ScalePrimary, after DR-ScaleStandby, end to end against moto: the
primary comes back to size first, then the standby goes back down."""

from testing import world
from testing.automation import Automation
from testing.harness import SEOUL, TOKYO, document

STANDBY_DOC = document("region/DR-ScaleStandby.yaml")
DOC = document("region/DR-ScalePrimary.yaml")
PARAMS = {"Service": "payment", "StandbyRegion": TOKYO, "IncidentId": "0193a5d2-7c1e-7000-8000-00000000b004"}
STANDBY = {"dr-reactor:service": "payment", "dr-reactor:standby": "true", "dr-reactor:active-desired": "6"}
PRIMARY = {"dr-reactor:service": "payment", "dr-reactor:active-desired": "6"}


def after_failover(aws, calls):
    for region in (SEOUL, TOKYO):
        world.management_host(aws, region)
        world.eks_cluster(aws, region)
    world.nodegroup(aws, "payment-standby", 1, TOKYO, tags=STANDBY)
    world.nodegroup(aws, "payment", 2, SEOUL, max_size=6, tags=PRIMARY)  # what survived the outage
    with calls.pause():
        r = Automation(STANDBY_DOC, TOKYO, aws.endpoint, poll_interval=0.05).run(
            {"Service": "payment", "IncidentId": "0193a5d2-7c1e-7000-8000-00000000b003"})
    assert r["status"] == "Success", r["failure_message"]


def run(aws):
    return Automation(DOC, SEOUL, aws.endpoint, poll_interval=0.05).run(PARAMS)


def test_primary_back_to_size_then_standby_back_down(aws, calls):
    after_failover(aws, calls)
    result = run(aws)
    assert result["status"] == "Success", result["failure_message"]
    assert world.nodegroup_size(aws, "payment", SEOUL)["desiredSize"] == 6
    assert world.nodegroup_size(aws, "payment-standby", TOKYO) == {"minSize": 1, "maxSize": 1, "desiredSize": 1}
    assert world.commands(aws, SEOUL, "scale-primary payment")[0]["Status"] == "Success"
    assert world.commands(aws, TOKYO, "scale-down-standby payment")[0]["Status"] == "Success"
    ssm = aws("ssm", TOKYO)
    assert ssm.describe_parameters()["Parameters"] == [], "the saved sizes are forgotten"
    assert result["outputs"]["ScaleDownStandby.Restored"] == ["payment-standby=1"]


def test_a_second_run_leaves_the_standby_alone(aws, calls):
    after_failover(aws, calls)
    assert run(aws)["status"] == "Success"
    calls.actions.clear()
    again = run(aws)
    assert again["status"] == "Success", again["failure_message"]
    assert again["outputs"]["ScaleDownStandby.Restored"] == []
    assert "eks:UpdateNodegroupConfig" not in calls.actions
    assert world.nodegroup_size(aws, "payment-standby", TOKYO)["desiredSize"] == 1


def test_no_primary_group_fails_before_any_change(aws):
    world.eks_cluster(aws, SEOUL)
    result = run(aws)
    assert result["status"] == "Failed" and "no primary group" in result["failure_message"]
