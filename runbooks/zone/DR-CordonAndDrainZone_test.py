"""DR-CordonAndDrainZone through the interpreter: discovery in moto (ELBv2,
EKS), zonal shifts on the ARC stand-in (moto lacks arc-zonal-shift), the
drain as Run Command in moto, and its shell run against a stand-in kubectl."""

from testing import shell, world
from testing.automation import Automation
from testing.harness import SEOUL, document

DOC = document("zone/DR-CordonAndDrainZone.yaml")
INCIDENT = "0193a5d2-7c1e-7000-8000-00000000a001"
PARAMS = {"Zone": "ap-northeast-2a", "IncidentId": INCIDENT}
OPT_IN = [{"Key": "dr-reactor:zonal-shift", "Value": "enabled"}]


def zone_world(aws):
    ec2 = aws("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"ap-northeast-2{z}")["Subnet"]["SubnetId"]
               for i, z in enumerate("abc")]
    elb = aws("elbv2")
    opted = elb.create_load_balancer(Name="api", Subnets=subnets, Type="application", Tags=OPT_IN)["LoadBalancers"][0]
    elb.create_load_balancer(Name="other", Subnets=subnets, Type="application")
    cluster = world.eks_cluster(aws, tags={"dr-reactor:zonal-shift": "enabled"})
    world.management_host(aws)
    return opted["LoadBalancerArn"], cluster["arn"]


def run(aws, **extra):
    return Automation(DOC, SEOUL, aws.endpoint, poll_interval=0.05).run({**PARAMS, **extra})


def test_shifts_the_opted_in_resources_away_and_drains_the_zone(aws, standins):
    lb, cluster = zone_world(aws)
    result = run(aws)
    assert result["status"] == "Success", result["failure_message"]
    shifts = standins.zonal_shift.ListZonalShifts({"status": "ACTIVE"})["items"]
    assert sorted(s["resourceIdentifier"] for s in shifts) == sorted([lb, cluster]), "only the opted-in ones"
    assert {s["awayFrom"] for s in shifts} == {"apne2-az1"}, "by AZ ID, not by name"
    started = [p for op, p in standins.zonal_shift.requests if op == "StartZonalShift"]
    assert started[0] == {"resourceIdentifier": lb, "awayFrom": "apne2-az1", "expiresIn": "12h",
                          "comment": f"dr-reactor {INCIDENT}"}
    commands = shell.sent_commands(aws, SEOUL, f"drain ap-northeast-2a")
    status, calls, _ = shell.run(commands)
    assert status == 0
    assert calls == ["kubectl cordon -l topology.kubernetes.io/zone=ap-northeast-2a",
                     "kubectl drain -l topology.kubernetes.io/zone=ap-northeast-2a --ignore-daemonsets "
                     "--delete-emptydir-data --timeout=600s"]


def test_a_second_run_starts_no_second_shift(aws, standins):
    zone_world(aws)
    assert run(aws)["status"] == "Success"
    again = run(aws)
    assert again["status"] == "Success", again["failure_message"]
    assert again["outputs"]["StartZonalShifts.Shifted"] == []
    assert len([op for op, _ in standins.zonal_shift.requests if op == "StartZonalShift"]) == 2


def test_a_resource_shifted_from_another_zone_fails_loudly(aws, standins):
    lb, _ = zone_world(aws)
    standins.zonal_shift.StartZonalShift({"resourceIdentifier": lb, "awayFrom": "apne2-az3",
                                          "expiresIn": "1h", "comment": "by hand"})
    result = run(aws)
    assert result["status"] == "Failed" and "already shifted away from apne2-az3" in result["failure_message"]


def test_a_failed_drain_fails_the_runbook(aws, standins):
    zone_world(aws)
    assert run(aws)["status"] == "Success"
    commands = shell.sent_commands(aws, SEOUL, "drain ap-northeast-2a")
    status, _, _ = shell.run(commands, {"kubectl": {"drain*": (1, "error: cannot evict pod")}})
    assert status != 0, "set -e: a failed drain fails the command, and so the verify step"


def test_an_expiry_arc_would_refuse_is_refused_before_any_change(aws, standins):
    zone_world(aws)
    result = run(aws, ExpiresIn="4d")
    assert result["status"] == "InvalidParameters"
    assert standins.zonal_shift.requests == []
