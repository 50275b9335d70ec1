"""dr-verify-and-replay: after DR-PointInTimeRestore, verify the restored
data, switch the service over to it, replay the changes made since the
restore point, and report what the verification found.

Event: `{"idempotency_key": ..., "step": ..., "payload": {"service": ...,
"incident": ...}}`, in the restore's region.

1. The restore: `/dr-reactor/restores/<service>/latest` (written by
   DR-PointInTimeRestore); it must belong to this incident.
2. Verify: the checks in `/dr-reactor/services/<service>/verify`, JSON
   `{"secret_arn": "...", "database": "...", "checks": [{"name": "orders",
   "sql": "SELECT count(*) FROM orders", "min": 1000}, {"name": "ledger",
   "sql": "SELECT md5(string_agg(id::text, ',' ORDER BY id)) FROM ledger
   WHERE day < '2026-12-01'", "equals": "9e10..."}]}`, each run through the
   RDS Data API on the restored cluster: the first value of the first row
   is compared with `min` / `max` / `equals`. The Data API serves Aurora
   clusters only: an RDS instance restore is reported unverified, and is
   only switched to when the configuration says
   `"allow_unverified_switch": true`.
3. Switch: the service's private record (`/dr-reactor/services/<service>/db-record`,
   `{"hosted_zone_id", "record_name"}`) to the restore's endpoint, waiting
   for INSYNC.
4. Replay: the DMS tasks tagged `dr-reactor:service=<service>` and
   `dr-reactor:cdc=replay` are started from the restore time
   (CdcStartTime); their target endpoint names the service's record, which
   now answers with the restore. The tasks started are recorded in
   `/dr-reactor/restores/<service>/replay` first; a task recorded there for
   this incident is not started again.

Any failed check, or a failed switch or start, is a FunctionError with the
report in its message. Idempotent: Powertools idempotency on
`idempotency_key` (DynamoDB table `IDEMPOTENCY_TABLE`), and each effect
checks whether it was already made.
"""

import datetime
import json
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
SWITCH_TIMEOUT = int(os.environ.get("SWITCH_TIMEOUT_SECONDS", "300"))
POLL_SECONDS = float(os.environ.get("POLL_SECONDS", "5"))


class VerifyFailed(Exception):
    """The restored data failed a check, or could not be switched to or replayed."""


def _param(ssm, name):
    try:
        return json.loads(ssm.get_parameter(Name=name)["Parameter"]["Value"])
    except ssm.exceptions.ParameterNotFound:
        return None


def _value(field):
    for kind in ("longValue", "doubleValue", "stringValue", "booleanValue"):
        if kind in field:
            return field[kind]
    return None


def _verify(restore, cfg):
    if restore["kind"] != "cluster":
        return False, [], "the RDS Data API serves Aurora clusters only: this instance restore is not verified"
    data, results = boto3.client("rds-data"), []
    for check in cfg["checks"]:
        out = data.execute_statement(resourceArn=restore["arn"], secretArn=cfg["secret_arn"],
                                     database=cfg.get("database"), sql=check["sql"])
        rows = out.get("records") or []
        value = _value(rows[0][0]) if rows and rows[0] else None
        ok = value is not None
        if ok and "min" in check:
            ok = float(value) >= check["min"]
        if ok and "max" in check:
            ok = float(value) <= check["max"]
        if ok and "equals" in check:
            ok = str(value) == str(check["equals"])
        results.append({"name": check["name"], "value": value, "ok": ok})
    failed = [r["name"] for r in results if not r["ok"]]
    return not failed, results, f"failed checks: {', '.join(failed)}" if failed else "all checks passed"


def _switch(ssm, service, restore, incident):
    record = _param(ssm, f"/dr-reactor/services/{service}/db-record")
    if record is None:
        raise VerifyFailed(f"/dr-reactor/services/{service}/db-record is not set: nothing to switch over")
    r53 = boto3.client("route53")
    fqdn = record["record_name"].rstrip(".") + "."
    sets = r53.list_resource_record_sets(HostedZoneId=record["hosted_zone_id"], StartRecordName=fqdn,
                                         StartRecordType="CNAME", MaxItems="1")["ResourceRecordSets"]
    if [v["Value"] for s in sets if s["Name"] == fqdn for v in s.get("ResourceRecords", [])] == [restore["endpoint"]]:
        return False
    change = r53.change_resource_record_sets(HostedZoneId=record["hosted_zone_id"], ChangeBatch={
        "Comment": f"dr-reactor {incident}: {service} to its restore {restore['id']}",
        "Changes": [{"Action": "UPSERT", "ResourceRecordSet": {
            "Name": fqdn, "Type": "CNAME", "TTL": 30, "ResourceRecords": [{"Value": restore["endpoint"]}]}}]})
    deadline = time.monotonic() + SWITCH_TIMEOUT
    while r53.get_change(Id=change["ChangeInfo"]["Id"])["ChangeInfo"]["Status"] != "INSYNC":
        if time.monotonic() > deadline:
            raise VerifyFailed(f"the switch of {fqdn} is not INSYNC after {SWITCH_TIMEOUT}s")
        time.sleep(POLL_SECONDS)
    return True


def _replay(ssm, service, restore, incident):
    dms, out = boto3.client("dms"), []
    marker_name = f"/dr-reactor/restores/{service}/replay"
    marker = _param(ssm, marker_name) or {}
    done = set(marker.get("tasks") or []) if marker.get("incident") == incident else set()
    start = datetime.datetime.fromisoformat(restore["restore_time"].replace("Z", "+00:00"))
    for page in dms.get_paginator("describe_replication_tasks").paginate():
        for task in page["ReplicationTasks"]:
            tags = {t["Key"]: t["Value"] for t in dms.list_tags_for_resource(ResourceArn=task["ReplicationTaskArn"])["TagList"]}
            if tags.get("dr-reactor:service") != service or tags.get("dr-reactor:cdc") != "replay":
                continue
            name = task["ReplicationTaskIdentifier"]
            if name in done:
                out.append({"task": name, "started": False, "status": task["Status"]})
                continue
            # Marked first: a rerun after a lost answer recognises its own start.
            done.add(name)
            ssm.put_parameter(Name=marker_name, Type="String", Overwrite=True,
                              Value=json.dumps({"incident": incident, "tasks": sorted(done)}))
            started = dms.start_replication_task(ReplicationTaskArn=task["ReplicationTaskArn"],
                                                 StartReplicationTaskType="start-replication", CdcStartTime=start)
            out.append({"task": name, "started": True, "status": started["ReplicationTask"]["Status"]})
    return out


@logger.inject_lambda_context
@idempotent(persistence_store=persistence, config=config)
def handler(event, context):
    p = event.get("payload") or {}
    service, incident = p.get("service", ""), p.get("incident", "")
    if not SERVICE.match(service) or not incident:
        raise ValueError("payload needs service (a service name) and incident")
    ssm = boto3.client("ssm")
    restore = _param(ssm, f"/dr-reactor/restores/{service}/latest")
    if restore is None:
        raise VerifyFailed(f"no restore of {service} recorded: run DR-PointInTimeRestore first")
    if restore["incident"] != incident:
        raise VerifyFailed(f"the latest restore of {service} belongs to incident {restore['incident']}, not {incident}")
    cfg = _param(ssm, f"/dr-reactor/services/{service}/verify")
    if cfg is None or not cfg.get("checks"):
        raise VerifyFailed(f"/dr-reactor/services/{service}/verify names no checks: nothing proves the restore is good")
    verified, checks, summary = _verify(restore, cfg)
    report = {"service": service, "restore": restore, "verified": verified, "checks": checks, "summary": summary,
              "switched": False, "replay": []}
    logger.info("restore verified" if verified else "restore not verified", extra=report)
    if not verified and not (restore["kind"] != "cluster" and cfg.get("allow_unverified_switch")):
        raise VerifyFailed(f"{service}'s restore {restore['id']} not switched to: {summary}; checks: {json.dumps(checks)}")
    report["switched"] = _switch(ssm, service, restore, incident)
    report["replay"] = _replay(ssm, service, restore, incident)
    return report
