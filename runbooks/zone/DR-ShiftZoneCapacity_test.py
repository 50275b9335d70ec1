"""DR-ShiftZoneCapacity against moto: per-zone Auto Scaling groups and node
groups end to end through the interpreter; the spanning-group paths through
the scripts (moto keeps an ASG's instances where they are when its subnets
change, so the whole document cannot show that path converge)."""

import json

from testing import world
from testing.automation import Automation
from testing.harness import SEOUL, document, script

DOC = document("zone/DR-ShiftZoneCapacity.yaml")
INCIDENT = "0193a5d2-7c1e-7000-8000-00000000a002"
PARAMS = {"Service": "order", "FailedZone": "ap-northeast-2a", "IncidentId": INCIDENT}
TAG = [{"Key": "dr-reactor:service", "Value": "order", "PropagateAtLaunch": True}]


def subnets(aws):
    ec2 = aws("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    return {z: ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"ap-northeast-2{z}")["Subnet"]["SubnetId"]
            for i, z in enumerate("abc")}


def per_zone_groups(aws, sn):
    asg = aws("autoscaling")
    image = aws("ec2").describe_images()["Images"][0]["ImageId"]
    asg.create_launch_configuration(LaunchConfigurationName="order", ImageId=image, InstanceType="t3.micro")
    for z in "abc":
        asg.create_auto_scaling_group(AutoScalingGroupName=f"order-{z}", LaunchConfigurationName="order", MinSize=1,
                                      MaxSize=3, DesiredCapacity=3, VPCZoneIdentifier=sn[z], Tags=TAG)
    asg.create_auto_scaling_group(AutoScalingGroupName="payment-b", LaunchConfigurationName="order", MinSize=1,
                                  MaxSize=2, DesiredCapacity=2, VPCZoneIdentifier=sn["b"],
                                  Tags=[{"Key": "dr-reactor:service", "Value": "payment", "PropagateAtLaunch": True}])


def in_service_by_zone(aws):
    out = {}
    for g in aws("autoscaling").describe_auto_scaling_groups()["AutoScalingGroups"]:
        if g["AutoScalingGroupName"].startswith("order"):
            for i in g["Instances"]:
                if i["LifecycleState"] == "InService":
                    out[i["AvailabilityZone"]] = out.get(i["AvailabilityZone"], 0) + 1
    return out


def run(aws):
    return Automation(DOC, SEOUL, aws.endpoint, poll_interval=0.05).run(PARAMS)


def test_capacity_rises_in_the_healthy_zones_and_not_in_the_lost_one(aws):
    sn = subnets(aws)
    per_zone_groups(aws, sn)
    before = in_service_by_zone(aws)
    assert before == {"ap-northeast-2a": 3, "ap-northeast-2b": 3, "ap-northeast-2c": 3}
    result = run(aws)
    assert result["status"] == "Success", result["failure_message"]
    after = in_service_by_zone(aws)
    assert after["ap-northeast-2a"] == 3, "none added in the lost zone"
    assert after["ap-northeast-2b"] == 5 and after["ap-northeast-2c"] == 5, "3 lost, shared as 2 and 2"
    assert result["outputs"]["VerifyCapacity.HealthyCapacity"] == ["10"]
    payment = aws("autoscaling").describe_auto_scaling_groups(AutoScalingGroupNames=["payment-b"])["AutoScalingGroups"][0]
    assert payment["DesiredCapacity"] == 2, "another service's group is not touched"
    saved = json.loads(aws("ssm").get_parameter(Name="/dr-reactor/zone-shift/order/ap-northeast-2a")["Parameter"]["Value"])
    assert saved["incident"] == INCIDENT and {g["name"]: g["desired"] for g in saved["groups"]} == \
        {"order-a": 3, "order-b": 3, "order-c": 3}


def test_a_second_run_adds_no_capacity(aws, calls):
    sn = subnets(aws)
    per_zone_groups(aws, sn)
    assert run(aws)["status"] == "Success"
    first = in_service_by_zone(aws)
    calls.actions.clear()
    again = run(aws)
    assert again["status"] == "Success", again["failure_message"]
    assert in_service_by_zone(aws) == first
    assert "autoscaling:UpdateAutoScalingGroup" not in calls.actions and "ssm:PutParameter" not in calls.actions


def test_node_groups_per_zone_scale_in_the_healthy_zones(aws):
    sn = subnets(aws)
    world.eks_cluster(aws)
    for z in "abc":
        world.nodegroup(aws, f"order-{z}", 2, subnets=[sn[z]], tags={"dr-reactor:service": "order"})
    result = run(aws)
    assert result["status"] == "Success", result["failure_message"]
    sizes = {z: world.nodegroup_size(aws, f"order-{z}")["desiredSize"] for z in "abc"}
    assert sizes == {"a": 2, "b": 3, "c": 3}


def test_nowhere_to_shift_fails_loudly(aws):
    sn = subnets(aws)
    world.eks_cluster(aws)
    world.nodegroup(aws, "order-a", 2, subnets=[sn["a"]], tags={"dr-reactor:service": "order"})
    result = run(aws)
    assert result["status"] == "Failed" and "no group in a healthy zone can take it" in result["failure_message"]


def test_spanning_groups_lose_the_zone_or_grow_by_its_share(aws):
    sn = subnets(aws)
    asg = aws("autoscaling")
    image = aws("ec2").describe_images()["Images"][0]["ImageId"]
    asg.create_launch_configuration(LaunchConfigurationName="order", ImageId=image, InstanceType="t3.micro")
    asg.create_auto_scaling_group(AutoScalingGroupName="order-all", LaunchConfigurationName="order", MinSize=1, MaxSize=9,
                                  DesiredCapacity=6, VPCZoneIdentifier=",".join(sn.values()), Tags=TAG)
    world.eks_cluster(aws)
    world.nodegroup(aws, "order-ng", 6, subnets=list(sn.values()), tags={"dr-reactor:service": "order"})
    plan = script(DOC, "PlanShift")({"Service": "order", "FailedZone": "ap-northeast-2a", "IncidentId": INCIDENT}, {})
    script(DOC, "ApplyShift")({"Targets": plan["Targets"]}, {})
    g = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["order-all"])["AutoScalingGroups"][0]
    assert sorted(g["VPCZoneIdentifier"].split(",")) == sorted([sn["b"], sn["c"]])
    assert "ap-northeast-2a" not in g["AvailabilityZones"] and g["DesiredCapacity"] == 6
    assert world.nodegroup_size(aws, "order-ng")["desiredSize"] == 9, "6 over three zones: 9 so two carry 6"
