"""dr-verify-multi-az-failover against moto's RDS and ElastiCache. moto does
not move a Multi-AZ primary on a forced failover (RebootDBInstance with
ForceFailover keeps its zone), so each test builds the state a failover
leaves (primary in another zone) or the one it did not."""

from testing import world
from testing.harness import SEOUL, invoke, load_lambda

PATH = "zone/dr-verify-multi-az-failover.py"
LOST = "ap-northeast-2a"


def event(key="k1", zone=LOST):
    return {"idempotency_key": key, "step": "verify Multi-AZ database failover happened",
            "payload": {"zone": zone, "incident": "0193a5d2-7c1e-7000-8000-00000000a004"}}


def redis(aws, name, az, failover=True):
    aws("elasticache").create_replication_group(
        ReplicationGroupId=name, ReplicationGroupDescription="d", Engine="redis", CacheNodeType="cache.t3.micro",
        NumCacheClusters=2, AutomaticFailoverEnabled=failover, MultiAZEnabled=failover, PreferredCacheClusterAZs=[az, "ap-northeast-2c"])


def test_passes_when_every_primary_left_the_zone(aws):
    world.rds_primary(aws, "order", multi_az=True, az="ap-northeast-2b")
    world.rds_primary(aws, "auth", multi_az=True, az="ap-northeast-2c")
    redis(aws, "payment", "ap-northeast-2b")
    fn = load_lambda(PATH, aws, SEOUL)
    ok, out = invoke(fn, event(), "dr-verify-multi-az-failover")
    assert ok, out
    assert sorted(out["checked"]) == ["elasticache payment", "rds instance auth-db", "rds instance order-db"]
    assert out["problems"] == []


def test_a_primary_still_in_the_lost_zone_fails_loudly(aws):
    world.rds_primary(aws, "order", multi_az=True, az=LOST)
    world.rds_primary(aws, "auth", multi_az=True, az="ap-northeast-2c")
    redis(aws, "payment", LOST)
    fn = load_lambda(PATH, aws, SEOUL)
    ok, err = invoke(fn, event(), "f")
    assert not ok and err["errorType"] == "FailoverNotHappened"
    assert "rds instance order-db: primary still in ap-northeast-2a" in err["errorMessage"]
    assert "elasticache payment: primary still in ap-northeast-2a" in err["errorMessage"]
    assert "auth" not in err["errorMessage"]


def test_a_single_az_datastore_in_the_zone_needs_a_restore(aws):
    world.rds_primary(aws, "product", az=LOST)
    redis(aws, "cache", LOST, failover=False)
    fn = load_lambda(PATH, aws, SEOUL)
    ok, err = invoke(fn, event(), "f")
    assert not ok
    assert "single-AZ in ap-northeast-2a" in err["errorMessage"]
    assert "no automatic failover" in err["errorMessage"]


def test_the_same_key_answers_the_same_and_a_bad_zone_is_refused(aws):
    world.rds_primary(aws, "order", multi_az=True, az="ap-northeast-2b")
    fn = load_lambda(PATH, aws, SEOUL)
    first = invoke(fn, event("same"), "f")
    world.rds_primary(aws, "late", multi_az=True, az=LOST)
    assert invoke(fn, event("same"), "f") == first, "a retry of the step gets the first answer"
    assert not invoke(fn, event("other"), "f")[0], "a new step sees the new state"
    ok, err = invoke(fn, event("z", zone="ap-northeast-1a"), "f")
    assert not ok and "not in ap-northeast-2" in err["errorMessage"]
