"""DR-PromoteReplicaAndFailover, end to end through the interpreter against
moto (RDS path) and against the Aurora global stand-in (moto lacks
FailoverGlobalCluster)."""

from testing import world
from testing.automation import Automation
from testing.harness import SEOUL, TOKYO, document

DOC = document("region/DR-PromoteReplicaAndFailover.yaml")
INCIDENT = "0193a5d2-7c1e-7000-8000-00000000b001"
PARAMS = {"Service": "auth", "Datastore": "postgresql", "FailedRegion": SEOUL, "IncidentId": INCIDENT}
MUTATING = {"rds:PromoteReadReplica", "rds:AddTagsToResource", "route53:ChangeResourceRecordSets",
            "rds:FailoverGlobalCluster"}


def region_pair(aws, lag=20, rpo="1m"):
    """Seoul primary, Tokyo replica, the RPO and the DB record in Tokyo."""
    world.rds_primary(aws)
    world.rds_cross_region_replica(aws)
    if lag is not None:
        world.replica_lag(aws, "auth-db-dr", lag)
    if rpo is not None:
        world.parameter(aws, "/dr-reactor/services/auth/rpo-seconds", rpo, TOKYO)
    zone = world.private_zone(aws)
    world.cname(aws, zone, "auth-db.internal.example.com", "auth-db.seoul.example")
    world.parameter(aws, "/dr-reactor/services/auth/db-record",
                    {"hosted_zone_id": zone, "record_name": "auth-db.internal.example.com"}, TOKYO)
    return zone


def run(aws, **extra):
    return Automation(DOC, TOKYO, aws.endpoint, poll_interval=0.05).run({**PARAMS, **extra})


def test_promotes_the_replica_and_flips_the_record(aws, calls):
    zone = region_pair(aws)
    result = run(aws)
    assert result["status"] == "Success", result["failure_message"]
    db = world.instance(aws, "auth-db-dr", TOKYO)
    assert "ReadReplicaSourceDBInstanceIdentifier" not in db, "a standalone instance now"
    assert db["DBInstanceStatus"] == "available"
    assert world.tags(db)["dr-reactor:promoted-by"] == INCIDENT
    endpoint = db["Endpoint"]["Address"]
    assert world.record_values(aws, zone, "auth-db.internal.example.com") == [endpoint]
    assert result["outputs"]["VerifyFailover.DnsTarget"] == [endpoint]
    assert result["outputs"]["CheckReplicaLag.LagSeconds"] == ["20.0"]
    ran = [s["name"] for s in result["steps"]]
    assert ran == ["CheckReplica", "CheckReplicaLag", "ChoosePath", "MarkPromotion", "PromoteReplica",
                   "WaitForStandalone", "SwitchDns", "VerifyFailover"]


def test_a_second_run_changes_nothing(aws, calls):
    zone = region_pair(aws)
    assert run(aws)["status"] == "Success"
    state = lambda: ({k: v for k, v in world.instance(aws, "auth-db-dr", TOKYO).items()  # noqa: E731
                      if k in ("DBInstanceStatus", "ReadReplicaSourceDBInstanceIdentifier", "TagList", "Endpoint")},
                     world.record_values(aws, zone, "auth-db.internal.example.com"))
    before = state()
    calls.actions.clear()
    again = run(aws)
    assert again["status"] == "Success", again["failure_message"]
    assert [s["name"] for s in again["steps"]][:3] == ["CheckReplica", "CheckReplicaLag", "ChoosePath"]
    assert "PromoteReplica" not in [s["name"] for s in again["steps"]]
    assert not MUTATING & set(calls.actions), calls.actions
    assert state() == before


def test_lag_beyond_the_rpo_refuses_before_any_change(aws, calls):
    zone = region_pair(aws, lag=300)
    result = run(aws)
    assert result["status"] == "Failed"
    assert "exceeds the RPO of 60s" in result["failure_message"]
    db = world.instance(aws, "auth-db-dr", TOKYO)
    assert db["ReadReplicaSourceDBInstanceIdentifier"].endswith(":db:auth-db"), "still a replica"
    assert "dr-reactor:promoted-by" not in world.tags(db)
    assert world.record_values(aws, zone, "auth-db.internal.example.com") == ["auth-db.seoul.example"]
    assert not MUTATING & set(calls.actions)


def test_the_explicit_override_promotes_whatever_the_lag(aws):
    region_pair(aws, lag=300)
    result = run(aws, IgnoreReplicaLag="true")
    assert result["status"] == "Success", result["failure_message"]
    assert "ReadReplicaSourceDBInstanceIdentifier" not in world.instance(aws, "auth-db-dr", TOKYO)


def test_max_lag_parameter_replaces_the_rpo(aws):
    region_pair(aws, lag=300, rpo=None)
    assert run(aws)["status"] == "Failed", "no RPO and no override: refuse"
    result = run(aws, MaxReplicaLagSeconds="600")
    assert result["status"] == "Success", result["failure_message"]


def test_no_lag_datapoint_is_no_proof_of_rpo(aws):
    region_pair(aws, lag=None)
    result = run(aws)
    assert result["status"] == "Failed"
    assert "no ReplicaLag datapoint" in result["failure_message"]
    assert world.instance(aws, "auth-db-dr", TOKYO).get("ReadReplicaSourceDBInstanceIdentifier")


def test_no_replica_fails_loudly(aws):
    world.parameter(aws, "/dr-reactor/services/auth/rpo-seconds", "60", TOKYO)
    result = run(aws)
    assert result["status"] == "Failed"
    assert "no replica of service auth" in result["failure_message"]


def test_an_undeclared_parameter_is_refused_like_start_automation_execution(aws):
    result = run(aws, Extra="x")
    assert result["status"] == "InvalidParameters"


def test_aurora_global_fails_over_to_this_region(aws, standins, calls):
    rds = aws("rds", TOKYO)
    tag = [{"Key": "dr-reactor:service", "Value": "auth"}]
    cluster = rds.create_db_cluster(DBClusterIdentifier="auth-dr", Engine="aurora-postgresql",
                                    MasterUsername="admin", MasterUserPassword="not-a-real-password",
                                    Tags=tag)["DBCluster"]
    primary = "arn:aws:rds:ap-northeast-2:123456789012:cluster:auth"
    standins.global_clusters.add("auth-global", primary, [cluster["DBClusterArn"]])
    world.replica_lag(aws, "auth-dr", 800, metric="AuroraGlobalDBReplicationLag", dim="DBClusterIdentifier")
    world.parameter(aws, "/dr-reactor/services/auth/rpo-seconds", "1m", TOKYO)
    result = run(aws)
    assert result["status"] == "Success", result["failure_message"]
    assert ("FailoverGlobalCluster", {"GlobalClusterIdentifier": "auth-global",
                                      "TargetDbClusterIdentifier": cluster["DBClusterArn"],
                                      "AllowDataLoss": True}) in standins.global_clusters.requests
    members = standins.global_clusters.clusters["auth-global"]["GlobalClusterMembers"]
    assert [m["DBClusterArn"] for m in members if m["IsWriter"]] == [cluster["DBClusterArn"]]
    assert result["outputs"]["CheckReplicaLag.LagSeconds"] == ["0.8"]
    # Again: the cluster is the writer already, so no second failover.
    standins.global_clusters.requests.clear()
    assert run(aws)["status"] == "Success"
    assert "FailoverGlobalCluster" not in [op for op, _ in standins.global_clusters.requests]
