"""DR-Route53Failover through the interpreter: weighted records in moto's
Route 53; routing controls against the ARC stand-in (moto lacks the
route53-recovery-cluster data plane)."""

from testing import world
from testing.automation import Automation
from testing.harness import SEOUL, TOKYO, document

DOC = document("region/DR-Route53Failover.yaml")
PARAMS = {"FailedRegion": SEOUL, "TargetRegion": TOKYO, "IncidentId": "0193a5d2-7c1e-7000-8000-00000000b002"}
NAME = "api.example.com."


def weighted(aws, zone, region, value, weight):
    aws("route53").change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [{
        "Action": "UPSERT", "ResourceRecordSet": {"Name": NAME, "Type": "CNAME", "SetIdentifier": region,
                                                   "Weight": weight, "TTL": 60,
                                                   "ResourceRecords": [{"Value": value}]}}]})


def public_zone(aws):
    zone = aws("route53").create_hosted_zone(Name="example.com", CallerReference="pub")["HostedZone"]["Id"].split("/")[-1]
    weighted(aws, zone, SEOUL, "api.ap-northeast-2.example.com", 100)
    weighted(aws, zone, TOKYO, "api.ap-northeast-1.example.com", 0)
    world.parameter(aws, "/dr-reactor/route53/failover", {"hosted_zone_id": zone, "records": [NAME]}, TOKYO)
    return zone


def answers(aws, zone):
    sets = aws("route53").list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    return sorted(r["Value"] for s in sets if s["Name"] == NAME and s.get("Weight", 0) > 0 for r in s["ResourceRecords"])


def run(aws, **extra):
    return Automation(DOC, TOKYO, aws.endpoint, poll_interval=0.05).run({**PARAMS, **extra})


def test_the_record_answers_with_the_dr_target(aws):
    zone = public_zone(aws)
    result = run(aws)
    assert result["status"] == "Success", result["failure_message"]
    assert answers(aws, zone) == ["api.ap-northeast-1.example.com"]
    assert result["outputs"]["VerifyFailover.Answer"] == [f"{NAME} api.ap-northeast-1.example.com"]
    assert [s["name"] for s in result["steps"]] == ["ReadConfig", "CheckTarget", "ChooseMode", "FlipRecords",
                                                   "WaitForRecords", "VerifyFailover"]


def test_a_second_run_changes_nothing(aws, calls):
    zone = public_zone(aws)
    assert run(aws)["status"] == "Success"
    calls.actions.clear()
    again = run(aws)
    assert again["status"] == "Success"
    assert "route53:ChangeResourceRecordSets" not in calls.actions
    assert answers(aws, zone) == ["api.ap-northeast-1.example.com"]


def test_failback_is_the_same_document_with_the_regions_swapped(aws):
    zone = public_zone(aws)
    assert run(aws)["status"] == "Success"
    back = run(aws, FailedRegion=TOKYO, TargetRegion=SEOUL)
    assert back["status"] == "Success", back["failure_message"]
    assert answers(aws, zone) == ["api.ap-northeast-2.example.com"]


def test_no_record_for_the_target_region_refuses_before_any_change(aws):
    zone = aws("route53").create_hosted_zone(Name="example.com", CallerReference="p")["HostedZone"]["Id"].split("/")[-1]
    weighted(aws, zone, SEOUL, "api.ap-northeast-2.example.com", 100)
    world.parameter(aws, "/dr-reactor/route53/failover", {"hosted_zone_id": zone, "records": [NAME]}, TOKYO)
    result = run(aws)
    assert result["status"] == "Failed"
    assert "no weighted record with SetIdentifier ap-northeast-1" in result["failure_message"]
    assert answers(aws, zone) == ["api.ap-northeast-2.example.com"]


def test_no_configuration_fails_at_the_first_step(aws):
    result = run(aws)
    assert result["status"] == "Failed" and result["steps"][-1]["name"] == "ReadConfig"


def test_routing_controls_flip_through_a_cluster_endpoint(aws, standins):
    arns = {r: f"arn:aws:route53-recovery-control::123456789012:controlpanel/p/routingcontrol/{r}"
            for r in (SEOUL, TOKYO)}
    standins.routing_control.states.update({arns[SEOUL]: "On", arns[TOKYO]: "Off"})
    world.parameter(aws, "/dr-reactor/route53/failover", {
        "routing_controls": arns,
        "cluster_endpoints": [{"Endpoint": "https://host-aaaa.us-west-2.example.com/v1", "Region": "us-west-2"}],
    }, TOKYO)
    result = run(aws)
    assert result["status"] == "Success", result["failure_message"]
    assert standins.routing_control.states == {arns[SEOUL]: "Off", arns[TOKYO]: "On"}
    assert ("UpdateRoutingControlStates", {"UpdateRoutingControlStateEntries": [
        {"RoutingControlArn": arns[TOKYO], "RoutingControlState": "On"},
        {"RoutingControlArn": arns[SEOUL], "RoutingControlState": "Off"}]}) in standins.routing_control.requests
