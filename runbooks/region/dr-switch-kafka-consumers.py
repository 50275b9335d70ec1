"""dr-switch-kafka-consumers: point a service's Kafka consumers at this
region's cluster and restart them.

Region outage (scenario B), run in the DR region with
`{"service": ..., "failed_region": ...}`: the consumers there switch to the
DR region's cluster, which MirrorMaker 2 replicates from the failed one
(its checkpoint connector translates the consumer groups' offsets, so the
consumers resume near where they stopped). Failback, run in the primary
region with `{"service": ..., "back_to_region": ...}`: the same switch
back to the primary region's cluster.

Conventions (Parameter Store, this region):
- `/dr-reactor/services/<service>/kafka-bootstrap`: what the consumers
  read at start (bootstrap servers);
- `/dr-reactor/kafka/clusters/<region>/bootstrap`: each region's cluster;
- `/dr-reactor/kafka/clusters/<region>/arn` (optional): its MSK cluster,
  which must be ACTIVE;
- the consumers: Deployments labelled `dr-reactor/kafka-consumer=true` in
  namespace `<service>`, restarted with kubectl through SSM Run Command on
  the management host (EC2 tagged `dr-reactor:role=eks-admin`).

Idempotent: Powertools idempotency on the event's `idempotency_key`
(DynamoDB table `IDEMPOTENCY_TABLE`); and a switch already made, with a
successful restart after it, is not made again.
"""

import os
import re
import time

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent,
)

logger = Logger()
persistence = DynamoDBPersistenceLayer(table_name=os.environ["IDEMPOTENCY_TABLE"])
config = IdempotencyConfig(event_key_jmespath="idempotency_key", raise_on_no_idempotency_key=True,
                           expires_after_seconds=7 * 24 * 3600)

SERVICE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
REGION = re.compile(r"^[a-z]{2}(-gov)?-[a-z]+-\d$")
ADMIN_TAG = "dr-reactor:role"
RESTART_TIMEOUT = int(os.environ.get("RESTART_TIMEOUT_SECONDS", "600"))
POLL_SECONDS = float(os.environ.get("POLL_SECONDS", "5"))


class SwitchError(Exception):
    """A precondition or the switch failed; Lambda reports a FunctionError."""


def _payload(event):
    p = event.get("payload") or {}
    service = p.get("service", "")
    if not SERVICE.match(service):
        raise SwitchError(f"payload.service {service!r} is not a service name")
    region = os.environ["AWS_REGION"]
    if p.get("back_to_region"):
        if p["back_to_region"] != region:
            raise SwitchError(f"back_to_region {p['back_to_region']} must be the region this runs in ({region})")
        return service, region, "failback"
    failed = p.get("failed_region", "")
    if not REGION.match(failed):
        raise SwitchError("payload needs failed_region (failover) or back_to_region (failback)")
    if failed == region:
        raise SwitchError(f"failed_region {failed} is the region this runs in: run it in the DR region")
    return service, region, "failover"


def _target(ssm, region):
    try:
        bootstrap = ssm.get_parameter(Name=f"/dr-reactor/kafka/clusters/{region}/bootstrap")["Parameter"]["Value"]
    except ssm.exceptions.ParameterNotFound as e:
        raise SwitchError(f"/dr-reactor/kafka/clusters/{region}/bootstrap is not set") from e
    try:
        arn = ssm.get_parameter(Name=f"/dr-reactor/kafka/clusters/{region}/arn")["Parameter"]["Value"]
    except ssm.exceptions.ParameterNotFound:
        arn = None  # self-managed Kafka: no MSK state to check
    if arn:
        state = boto3.client("kafka").describe_cluster_v2(ClusterArn=arn)["ClusterInfo"]["State"]
        if state != "ACTIVE":
            raise SwitchError(f"the Kafka cluster {arn} is {state}, not ACTIVE")
    return bootstrap


def _management_host(ec2):
    for r in ec2.describe_instances(Filters=[
        {"Name": f"tag:{ADMIN_TAG}", "Values": ["eks-admin"]},
        {"Name": "instance-state-name", "Values": ["running"]},
    ])["Reservations"]:
        for i in r["Instances"]:
            return i["InstanceId"]
    raise SwitchError(f"no running management host (EC2 tagged {ADMIN_TAG}=eks-admin) to restart the consumers")


def _restart(ssm, ec2, service, comment):
    host = _management_host(ec2)
    selector = "dr-reactor/kafka-consumer=true"
    command = ssm.send_command(
        InstanceIds=[host], DocumentName="AWS-RunShellScript", Comment=comment, TimeoutSeconds=600,
        Parameters={"commands": [
            "set -euo pipefail",
            f"kubectl -n {service} rollout restart deployment -l {selector}",
            f"for d in $(kubectl -n {service} get deployment -l {selector} -o name); do "
            f"kubectl -n {service} rollout status \"$d\" --timeout={RESTART_TIMEOUT}s; done",
        ], "executionTimeout": [str(RESTART_TIMEOUT + 60)]},
    )["Command"]["CommandId"]
    deadline = time.monotonic() + RESTART_TIMEOUT
    while True:
        status = ssm.get_command_invocation(CommandId=command, InstanceId=host)["Status"]
        if status == "Success":
            return command
        if status in ("Failed", "Cancelled", "TimedOut"):
            raise SwitchError(f"restarting {service}'s consumers: command {command} ended {status}")
        if time.monotonic() > deadline:
            raise SwitchError(f"restarting {service}'s consumers: command {command} still {status}")
        time.sleep(POLL_SECONDS)


def _restarted_since(ssm, comment, since):
    for page in ssm.get_paginator("list_commands").paginate():
        for c in page["Commands"]:
            if c.get("Comment") == comment and c["Status"] == "Success" and c["RequestedDateTime"] >= since:
                return c["CommandId"]
    return None


@logger.inject_lambda_context
@idempotent(persistence_store=persistence, config=config)
def handler(event, context):
    service, region, direction = _payload(event)
    ssm, ec2 = boto3.client("ssm"), boto3.client("ec2")
    target = _target(ssm, region)
    name = f"/dr-reactor/services/{service}/kafka-bootstrap"
    try:
        current = ssm.get_parameter(Name=name)["Parameter"]
    except ssm.exceptions.ParameterNotFound as e:
        raise SwitchError(f"{name} is not set: the consumers read no bootstrap from Parameter Store") from e
    comment = f"dr-reactor kafka-switch {service}"
    changed = current["Value"] != target
    if changed:
        ssm.put_parameter(Name=name, Value=target, Type=current["Type"], Overwrite=True,
                          Description=f"dr-reactor {direction}: {service} consumers read {region}'s cluster")
        since = ssm.get_parameter(Name=name)["Parameter"]["LastModifiedDate"]
        command = None
    else:
        since = current["LastModifiedDate"]
        command = _restarted_since(ssm, comment, since)
    if command is None:
        command = _restart(ssm, ec2, service, comment)
    if ssm.get_parameter(Name=name)["Parameter"]["Value"] != target:
        raise SwitchError(f"{name} does not read {target} after the switch")
    logger.info("consumers switched", extra={"service": service, "bootstrap": target, "changed": changed})
    return {"service": service, "region": region, "direction": direction, "bootstrap": target,
            "previous": current["Value"], "changed": changed, "restart_command_id": command}
