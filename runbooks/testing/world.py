"""Builders for the AWS world the runbooks act on, in moto, following the
conventions of docs/runbooks.md (tags, Parameter Store names). Test tooling.
"""

from __future__ import annotations

import datetime
import json

from testing.harness import ACCOUNT, SEOUL, TOKYO

SERVICE_TAG = "dr-reactor:service"


def rds_primary(aws, service="auth", region=SEOUL, ident=None, engine="postgres", multi_az=False, az=None):
    ident = ident or f"{service}-db"
    kwargs = dict(DBSubnetGroupName=subnet_group(aws, region),
        DBInstanceIdentifier=ident, Engine=engine, DBInstanceClass="db.t3.micro", MasterUsername="admin",
        MasterUserPassword="not-a-real-password", AllocatedStorage=20, BackupRetentionPeriod=7,
        MultiAZ=multi_az, Tags=[{"Key": SERVICE_TAG, "Value": service}, {"Key": "dr-reactor:role", "Value": "primary"}],
    )
    if az:
        kwargs["AvailabilityZone"] = az
    return aws("rds", region).create_db_instance(**kwargs)["DBInstance"]


def subnet_group(aws, region, name="dr-db"):
    """A DB subnet group over three zones, as every RDS database in a VPC has."""
    rds = aws("rds", region)
    if rds.describe_db_subnet_groups()["DBSubnetGroups"]:
        return name
    ec2 = aws("ec2", region)
    vpc = ec2.create_vpc(CidrBlock="10.30.0.0/16")["Vpc"]["VpcId"]
    zones = [z["ZoneName"] for z in ec2.describe_availability_zones()["AvailabilityZones"]][:3]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.30.{i}.0/24", AvailabilityZone=z)["Subnet"]["SubnetId"]
               for i, z in enumerate(zones)]
    rds.create_db_subnet_group(DBSubnetGroupName=name, DBSubnetGroupDescription="databases", SubnetIds=subnets)
    return name


def rds_cross_region_replica(aws, service="auth", source_region=SEOUL, region=TOKYO, ident=None, source=None):
    source = source or f"{service}-db"
    return aws("rds", region).create_db_instance_read_replica(
        DBInstanceIdentifier=ident or f"{service}-db-dr",
        SourceDBInstanceIdentifier=f"arn:aws:rds:{source_region}:{ACCOUNT}:db:{source}",
        DBInstanceClass="db.t3.micro",
        Tags=[{"Key": SERVICE_TAG, "Value": service}, {"Key": "dr-reactor:role", "Value": "replica"}],
    )["DBInstance"]


def replica_lag(aws, ident, seconds, region=TOKYO, metric="ReplicaLag", dim="DBInstanceIdentifier"):
    aws("cloudwatch", region).put_metric_data(Namespace="AWS/RDS", MetricData=[{
        "MetricName": metric, "Dimensions": [{"Name": dim, "Value": ident}],
        "Timestamp": datetime.datetime.now(datetime.timezone.utc), "Value": float(seconds),
    }])


def parameter(aws, name, value, region=SEOUL):
    aws("ssm", region).put_parameter(Name=name, Value=value if isinstance(value, str) else json.dumps(value),
                                     Type="String", Overwrite=True)


def private_zone(aws, name="internal.example.com", region=TOKYO):
    ec2 = aws("ec2", region)
    vpc = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    zone = aws("route53").create_hosted_zone(
        Name=name, CallerReference=f"{name}-{region}", HostedZoneConfig={"PrivateZone": True},
        VPC={"VPCRegion": region, "VPCId": vpc})["HostedZone"]["Id"]
    return zone.split("/")[-1]


def cname(aws, zone, name, value, ttl=30):
    aws("route53").change_resource_record_sets(HostedZoneId=zone, ChangeBatch={"Changes": [{
        "Action": "UPSERT", "ResourceRecordSet": {"Name": name, "Type": "CNAME", "TTL": ttl,
                                                   "ResourceRecords": [{"Value": value}]}}]})


def record_values(aws, zone, name, rtype="CNAME"):
    fqdn = name.rstrip(".") + "."
    sets = aws("route53").list_resource_record_sets(HostedZoneId=zone)["ResourceRecordSets"]
    return [r["Value"] for s in sets if s["Name"] == fqdn and s["Type"] == rtype for r in s.get("ResourceRecords", [])]


def instance(aws, ident, region):
    return aws("rds", region).describe_db_instances(DBInstanceIdentifier=ident)["DBInstances"][0]


def tags(resource):
    return {t["Key"]: t["Value"] for t in resource.get("TagList") or []}


def management_host(aws, region=SEOUL):
    ec2 = aws("ec2", region)
    image = ec2.describe_images()["Images"][0]["ImageId"]
    return ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, TagSpecifications=[{
        "ResourceType": "instance", "Tags": [{"Key": "dr-reactor:role", "Value": "eks-admin"}]}])["Instances"][0]["InstanceId"]


def eks_cluster(aws, region=SEOUL, name="prod", tags=None):
    return aws("eks", region).create_cluster(
        name=name, roleArn=f"arn:aws:iam::{ACCOUNT}:role/eks", resourcesVpcConfig={"subnetIds": ["subnet-1"]},
        tags=tags or {})["cluster"]


def nodegroup(aws, name, desired, region=SEOUL, cluster="prod", subnets=None, max_size=None, tags=None):
    return aws("eks", region).create_nodegroup(
        clusterName=cluster, nodegroupName=name, nodeRole=f"arn:aws:iam::{ACCOUNT}:role/node",
        subnets=subnets or ["subnet-1"],
        scalingConfig={"minSize": min(desired, 1), "maxSize": max_size or max(desired, 1), "desiredSize": desired},
        tags={k: str(v) for k, v in (tags or {}).items()})["nodegroup"]


def nodegroup_size(aws, name, region=SEOUL, cluster="prod"):
    return aws("eks", region).describe_nodegroup(clusterName=cluster, nodegroupName=name)["nodegroup"]["scalingConfig"]


def commands(aws, region, comment_part=""):
    return [c for c in aws("ssm", region).list_commands()["Commands"] if comment_part in (c.get("Comment") or "")]
