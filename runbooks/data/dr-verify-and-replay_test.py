"""dr-verify-and-replay against moto: Data API answers programmed through
moto's own results endpoint, the record in Route 53, the CDC task in DMS."""

import json
import urllib.request

from testing import world
from testing.harness import SEOUL, invoke, load_lambda

PATH = "data/dr-verify-and-replay.py"
INCIDENT = "0193a5d2-7c1e-7000-8000-00000000d002"
SECRET = "arn:aws:secretsmanager:ap-northeast-2:123456789012:secret:order-db"
CLUSTER = "arn:aws:rds:ap-northeast-2:123456789012:cluster:order-pitr-0193a5d2"


def data_api_answers(aws, *values):
    """moto's rds-data answers these first values, one statement each, in
    order (it takes the last programmed first, and keeps each answer for its
    cluster and SQL)."""
    body = {"region": SEOUL, "results": [{"records": [[{"longValue": v} if isinstance(v, int) else {"stringValue": v}]]}
                                         for v in reversed(values)]}
    urllib.request.urlopen(urllib.request.Request(f"{aws.endpoint}/moto-api/static/rds-data/statement-results",
                                                  data=json.dumps(body).encode(), method="POST",
                                                  headers={"Content-Type": "application/json"})).read()


def restored(aws, kind="cluster", incident=INCIDENT, allow=False):
    world.parameter(aws, "/dr-reactor/restores/order/latest", {
        "kind": kind, "id": "order-pitr-0193a5d2", "arn": CLUSTER, "endpoint": "order-pitr.cluster.example",
        "source": "order", "restore_time": "2026-12-07T10:15:00Z", "incident": incident})
    world.parameter(aws, "/dr-reactor/services/order/verify", {
        "secret_arn": SECRET, "database": "orders", "allow_unverified_switch": allow, "checks": [
            {"name": "orders", "sql": "SELECT count(*) FROM orders", "min": 1000},
            {"name": "ledger", "sql": "SELECT md5(string_agg(id::text, ',')) FROM ledger", "equals": "9e107d9d"}]})
    zone = world.private_zone(aws, region=SEOUL)
    world.cname(aws, zone, "order-db.internal.example.com", "order-db.damaged.example")
    world.parameter(aws, "/dr-reactor/services/order/db-record",
                    {"hosted_zone_id": zone, "record_name": "order-db.internal.example.com"})
    dms = aws("dms")
    task = dms.create_replication_task(
        ReplicationTaskIdentifier="order-cdc", MigrationType="cdc", TableMappings=json.dumps({"rules": []}),
        SourceEndpointArn="arn:aws:dms:ap-northeast-2:123456789012:endpoint:binlog",
        TargetEndpointArn="arn:aws:dms:ap-northeast-2:123456789012:endpoint:order-db-record",
        ReplicationInstanceArn="arn:aws:dms:ap-northeast-2:123456789012:rep:dms",
        Tags=[{"Key": "dr-reactor:service", "Value": "order"}, {"Key": "dr-reactor:cdc", "Value": "replay"}])
    return zone, task["ReplicationTask"]["ReplicationTaskArn"]


def event(key="k1"):
    return {"idempotency_key": key, "step": "verify restored data and replay CDC from the restore point",
            "payload": {"service": "order", "incident": INCIDENT}}


def task_status(aws, arn):
    return aws("dms").describe_replication_tasks(Filters=[{"Name": "replication-task-arn", "Values": [arn]}])["ReplicationTasks"][0]["Status"]


def test_verified_data_is_switched_to_and_replayed_from_the_restore_point(aws):
    zone, task = restored(aws)
    data_api_answers(aws, 1500, "9e107d9d")
    fn = load_lambda(PATH, aws, SEOUL)
    ok, report = invoke(fn, event(), "dr-verify-and-replay")
    assert ok, report
    assert report["verified"] is True and report["summary"] == "all checks passed"
    assert report["checks"] == [{"name": "orders", "value": 1500, "ok": True},
                                {"name": "ledger", "value": "9e107d9d", "ok": True}]
    assert world.record_values(aws, zone, "order-db.internal.example.com") == ["order-pitr.cluster.example"]
    assert task_status(aws, task) == "running"
    assert report["replay"] == [{"task": "order-cdc", "started": True, "status": "running"}]
    marker = json.loads(aws("ssm").get_parameter(Name="/dr-reactor/restores/order/replay")["Parameter"]["Value"])
    assert marker == {"incident": INCIDENT, "tasks": ["order-cdc"]}


def test_a_failed_check_switches_nothing_and_says_what_it_found(aws):
    zone, task = restored(aws)
    data_api_answers(aws, 12, "9e107d9d")
    fn = load_lambda(PATH, aws, SEOUL)
    ok, err = invoke(fn, event(), "f")
    assert not ok and err["errorType"] == "VerifyFailed"
    assert "failed checks: orders" in err["errorMessage"] and '"value": 12' in err["errorMessage"]
    assert world.record_values(aws, zone, "order-db.internal.example.com") == ["order-db.damaged.example"]
    assert task_status(aws, task) != "running"


def test_a_new_key_after_success_starts_no_second_replay(aws):
    _, task = restored(aws)
    data_api_answers(aws, 1500, "9e107d9d")
    fn = load_lambda(PATH, aws, SEOUL)
    assert invoke(fn, event("a"), "f")[0]
    ok, again = invoke(fn, event("b"), "f")
    assert ok, again
    assert again["switched"] is False and again["replay"][0]["started"] is False


def test_an_instance_restore_is_unverified_and_not_switched_unless_allowed(aws):
    zone, _ = restored(aws, kind="instance")
    fn = load_lambda(PATH, aws, SEOUL)
    ok, err = invoke(fn, event(), "f")
    assert not ok and "Data API serves Aurora clusters only" in err["errorMessage"]
    assert world.record_values(aws, zone, "order-db.internal.example.com") == ["order-db.damaged.example"]


def test_an_allowed_unverified_instance_restore_is_switched_and_reported(aws):
    zone, _ = restored(aws, kind="instance", allow=True)
    fn = load_lambda(PATH, aws, SEOUL)
    ok, report = invoke(fn, event(), "f")
    assert ok, report
    assert report["verified"] is False and report["switched"] is True
    assert world.record_values(aws, zone, "order-db.internal.example.com") == ["order-pitr.cluster.example"]


def test_another_incidents_restore_is_refused(aws):
    restored(aws, incident="another")
    fn = load_lambda(PATH, aws, SEOUL)
    ok, err = invoke(fn, event(), "f")
    assert not ok and "belongs to incident another" in err["errorMessage"]
