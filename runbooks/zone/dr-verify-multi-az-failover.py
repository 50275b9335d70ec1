"""dr-verify-multi-az-failover: after a zone is lost, check that every
Multi-AZ datastore in the region failed over out of it, and fail loudly if
one did not.

Event: `{"idempotency_key": ..., "step": ..., "payload": {"zone":
"ap-northeast-2a", "incident": "..."}}`. Runs in the zone's region.

What counts as failed over, per resource:
- RDS DB instance with MultiAZ: its primary (`AvailabilityZone`) is not the
  lost zone and it is `available`;
- Aurora DB cluster: its writer instance is not in the lost zone and the
  cluster is `available`;
- ElastiCache replication group with Multi-AZ or automatic failover: every
  shard's primary node is not in the lost zone and the group is
  `available`.
A datastore with no standby (single-AZ RDS instance, ElastiCache group
without automatic failover) whose only zone is the lost one fails the check
too: it is down and needs a restore, not a wait.

RDS events of the last two hours in the `failover` category are reported
as evidence (which instances AWS says failed over). ElastiCache events are
not read: DescribeEvents there adds nothing the node roles do not say.
Idempotent by nature (it only reads) and by Powertools idempotency on
`idempotency_key` (DynamoDB table `IDEMPOTENCY_TABLE`): a retry of the same
step returns the first answer.
"""

import datetime
import os
import re

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent,
)

logger = Logger()
persistence = DynamoDBPersistenceLayer(table_name=os.environ["IDEMPOTENCY_TABLE"])
# A verdict is worth repeating only for a short while: the state moves on.
config = IdempotencyConfig(event_key_jmespath="idempotency_key", raise_on_no_idempotency_key=True,
                           expires_after_seconds=3600)

ZONE = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d[a-z]$")


class FailoverNotHappened(Exception):
    """A datastore still has its primary in the lost zone, or is not available."""


def _rds(zone):
    rds, checked, problems = boto3.client("rds"), [], []
    instances = {db["DBInstanceIdentifier"]: db for page in rds.get_paginator("describe_db_instances").paginate()
                 for db in page["DBInstances"]}
    for db in instances.values():
        if db.get("DBClusterIdentifier"):
            continue  # Aurora: judged by its cluster's writer below
        name = f"rds instance {db['DBInstanceIdentifier']}"
        if db.get("MultiAZ"):
            checked.append(name)
            if db.get("AvailabilityZone") == zone:
                problems.append(f"{name}: primary still in {zone}")
            elif db["DBInstanceStatus"] != "available":
                problems.append(f"{name}: {db['DBInstanceStatus']}, not available")
        elif db.get("AvailabilityZone") == zone and not db.get("ReadReplicaSourceDBInstanceIdentifier"):
            checked.append(name)
            problems.append(f"{name}: single-AZ in {zone}, no standby to fail over to")
    for page in rds.get_paginator("describe_db_clusters").paginate():
        for c in page["DBClusters"]:
            name = f"aurora cluster {c['DBClusterIdentifier']}"
            writers = [m["DBInstanceIdentifier"] for m in c.get("DBClusterMembers") or [] if m.get("IsClusterWriter")]
            if not writers:
                continue
            checked.append(name)
            writer_zone = instances.get(writers[0], {}).get("AvailabilityZone")
            if writer_zone == zone:
                problems.append(f"{name}: writer {writers[0]} still in {zone}")
            elif c["Status"] != "available":
                problems.append(f"{name}: {c['Status']}, not available")
    since = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=2)
    events = [f"{e['SourceIdentifier']}: {e['Message']}" for page in rds.get_paginator("describe_events").paginate(
        SourceType="db-instance", StartTime=since, EventCategories=["failover"]) for e in page["Events"]]
    return checked, problems, events


def _elasticache(zone):
    ec, checked, problems = boto3.client("elasticache"), [], []
    for page in ec.get_paginator("describe_replication_groups").paginate():
        for g in page["ReplicationGroups"]:
            name = f"elasticache {g['ReplicationGroupId']}"
            members = [m for ng in g.get("NodeGroups") or [] for m in ng.get("NodeGroupMembers") or []]
            primaries = [m for m in members if m.get("CurrentRole") == "primary"]
            in_zone = [m["CacheClusterId"] for m in primaries if m.get("PreferredAvailabilityZone") == zone]
            failover = g.get("AutomaticFailover") in ("enabled", "enabling") or g.get("MultiAZ") == "enabled"
            if not failover and not in_zone:
                continue
            checked.append(name)
            if in_zone:
                why = "primary still in" if failover else "no automatic failover, primary in"
                problems.append(f"{name}: {why} {zone} ({', '.join(in_zone)})")
            elif g["Status"] != "available":
                problems.append(f"{name}: {g['Status']}, not available")
    return checked, problems


@logger.inject_lambda_context
@idempotent(persistence_store=persistence, config=config)
def handler(event, context):
    zone = (event.get("payload") or {}).get("zone", "")
    if not ZONE.match(zone):
        raise ValueError(f"payload.zone {zone!r} is not an availability zone name")
    if not zone.startswith(os.environ["AWS_REGION"]):
        raise ValueError(f"{zone} is not in {os.environ['AWS_REGION']}, where this runs")
    rds_checked, rds_problems, events = _rds(zone)
    ec_checked, ec_problems = _elasticache(zone)
    report = {"zone": zone, "incident": (event.get("payload") or {}).get("incident"),
              "checked": rds_checked + ec_checked, "problems": rds_problems + ec_problems,
              "failover_events": events}
    logger.info("multi-AZ failover check", extra=report)
    if report["problems"]:
        raise FailoverNotHappened(f"{len(report['problems'])} datastore(s) did not fail over out of {zone}: "
                                  + "; ".join(report["problems"]))
    return report
