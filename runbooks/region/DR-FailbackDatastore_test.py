"""DR-FailbackDatastore after DR-PromoteReplicaAndFailover, end to end in
moto: a new replica in Seoul of Tokyo's promoted primary, promoted, and the
Seoul record pointing at it."""

from testing import world
from testing.automation import Automation
from testing.harness import SEOUL, TOKYO, document

PROMOTE = document("region/DR-PromoteReplicaAndFailover.yaml")
DOC = document("region/DR-FailbackDatastore.yaml")
FAILBACK_INCIDENT = "0193a5d2-7c1e-7000-8000-00000000b005"
REPLICA = "auth-fb-0193a5d2"
PARAMS = {"Service": "auth", "Datastore": "postgresql", "FromRegion": TOKYO, "IncidentId": FAILBACK_INCIDENT}


def after_failover(aws, calls):
    world.rds_primary(aws)
    world.rds_cross_region_replica(aws)
    world.replica_lag(aws, "auth-db-dr", 5)
    for region in (SEOUL, TOKYO):
        world.parameter(aws, "/dr-reactor/services/auth/rpo-seconds", "1m", region)
    with calls.pause():
        r = Automation(PROMOTE, TOKYO, aws.endpoint, poll_interval=0.05).run(
            {"Service": "auth", "Datastore": "postgresql", "FailedRegion": SEOUL,
             "IncidentId": "0193a5d2-7c1e-7000-8000-00000000b001"})
    assert r["status"] == "Success", r["failure_message"]
    zone = world.private_zone(aws, region=SEOUL)
    world.cname(aws, zone, "auth-db.internal.example.com", "auth-db-dr.tokyo.example")
    world.parameter(aws, "/dr-reactor/services/auth/db-record",
                    {"hosted_zone_id": zone, "record_name": "auth-db.internal.example.com"}, SEOUL)
    return zone


def run(aws, **extra):
    return Automation(DOC, SEOUL, aws.endpoint, poll_interval=0.05).run({**PARAMS, **extra})


def test_rebuilds_a_replica_promotes_it_and_switches_back(aws, calls):
    zone = after_failover(aws, calls)
    world.replica_lag(aws, REPLICA, 2, region=SEOUL)
    result = run(aws)
    assert result["status"] == "Success", result["failure_message"]
    db = world.instance(aws, REPLICA, SEOUL)
    assert "ReadReplicaSourceDBInstanceIdentifier" not in db
    assert world.tags(db)["dr-reactor:failback-of"].endswith(":ap-northeast-1:123456789012:db:auth-db-dr")
    assert world.tags(db)["dr-reactor:failed-back-by"] == FAILBACK_INCIDENT
    assert world.record_values(aws, zone, "auth-db.internal.example.com") == [db["Endpoint"]["Address"]]
    assert world.instance(aws, "auth-db", SEOUL)["DBInstanceStatus"] == "available", "the old primary is left"


def test_a_second_run_creates_and_promotes_nothing(aws, calls):
    after_failover(aws, calls)
    world.replica_lag(aws, REPLICA, 2, region=SEOUL)
    assert run(aws)["status"] == "Success"
    calls.actions.clear()
    again = run(aws)
    assert again["status"] == "Success", again["failure_message"]
    assert not {"rds:CreateDBInstanceReadReplica", "rds:PromoteReadReplica",
                "route53:ChangeResourceRecordSets"} & set(calls.actions)
    ids = [d["DBInstanceIdentifier"] for d in aws("rds", SEOUL).describe_db_instances()["DBInstances"]]
    assert sorted(ids) == ["auth-db", REPLICA]


def test_a_lagging_replica_is_not_promoted(aws, calls):
    after_failover(aws, calls)
    world.replica_lag(aws, REPLICA, 900, region=SEOUL)
    result = run(aws)
    assert result["status"] == "Failed" and "exceeds the RPO" in result["failure_message"]
    assert world.instance(aws, REPLICA, SEOUL)["ReadReplicaSourceDBInstanceIdentifier"]


def test_no_promoted_primary_in_the_dr_region_fails_before_any_change(aws):
    world.rds_primary(aws)
    result = run(aws)
    assert result["status"] == "Failed" and "no promoted primary of auth" in result["failure_message"]
    assert len(aws("rds", SEOUL).describe_db_instances()["DBInstances"]) == 1
