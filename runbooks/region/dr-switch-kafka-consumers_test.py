"""dr-switch-kafka-consumers against moto: the parameter the consumers read
changes, the restart runs through Run Command, once per switch."""

from testing import world
from testing.harness import SEOUL, TOKYO, invoke, load_lambda

PATH = "region/dr-switch-kafka-consumers.py"
DR_BOOTSTRAP = "b-1.tokyo.kafka.example:9098"
PRIMARY_BOOTSTRAP = "b-1.seoul.kafka.example:9098"


def management_host(aws, region):
    ec2 = aws("ec2", region)
    image = ec2.describe_images()["Images"][0]["ImageId"]
    return ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, TagSpecifications=[{
        "ResourceType": "instance", "Tags": [{"Key": "dr-reactor:role", "Value": "eks-admin"}]}])["Instances"][0]["InstanceId"]


def setup(aws, region=TOKYO):
    management_host(aws, region)
    world.parameter(aws, "/dr-reactor/kafka/clusters/ap-northeast-1/bootstrap", DR_BOOTSTRAP, region)
    world.parameter(aws, "/dr-reactor/kafka/clusters/ap-northeast-2/bootstrap", PRIMARY_BOOTSTRAP, region)
    world.parameter(aws, "/dr-reactor/services/notify/kafka-bootstrap", PRIMARY_BOOTSTRAP, region)


def event(key, **payload):
    return {"idempotency_key": key, "step": "switch-kafka-consumers", "payload": {"service": "notify", **payload}}


def bootstrap(aws, region):
    return aws("ssm", region).get_parameter(Name="/dr-reactor/services/notify/kafka-bootstrap")["Parameter"]["Value"]


def restarts(aws, region):
    return [c for c in aws("ssm", region).list_commands()["Commands"]
            if c.get("Comment") == "dr-reactor kafka-switch notify"]


def test_failover_points_the_consumers_at_the_mirrored_cluster_and_restarts_them(aws):
    setup(aws)
    fn = load_lambda(PATH, aws, TOKYO)
    ok, out = invoke(fn, event("k1", failed_region=SEOUL), "dr-switch-kafka-consumers")
    assert ok, out
    assert bootstrap(aws, TOKYO) == DR_BOOTSTRAP
    [restart] = restarts(aws, TOKYO)
    assert restart["Status"] == "Success"
    assert "kubectl -n notify rollout restart deployment -l dr-reactor/kafka-consumer=true" in restart["Parameters"]["commands"]
    assert out["restart_command_id"] == restart["CommandId"] and out["changed"] is True
    assert out["previous"] == PRIMARY_BOOTSTRAP


def test_the_same_key_twice_is_one_effect_and_a_new_key_changes_nothing_more(aws):
    setup(aws)
    fn = load_lambda(PATH, aws, TOKYO)
    first = invoke(fn, event("k1", failed_region=SEOUL), "f")
    again = invoke(fn, event("k1", failed_region=SEOUL), "f")
    assert first == again
    other = invoke(fn, event("k2", failed_region=SEOUL), "f")
    assert other[0] and other[1]["changed"] is False
    assert other[1]["restart_command_id"] == first[1]["restart_command_id"]
    assert len(restarts(aws, TOKYO)) == 1, "one switch, one restart"


def test_failback_switches_back_in_the_primary_region(aws):
    setup(aws, SEOUL)
    world.parameter(aws, "/dr-reactor/services/notify/kafka-bootstrap", DR_BOOTSTRAP, SEOUL)
    fn = load_lambda(PATH, aws, SEOUL)
    ok, out = invoke(fn, event("back", back_to_region=SEOUL), "f")
    assert ok, out
    assert bootstrap(aws, SEOUL) == PRIMARY_BOOTSTRAP and out["direction"] == "failback"


def test_preconditions_fail_before_any_change(aws):
    setup(aws)
    aws("ssm", TOKYO).delete_parameter(Name="/dr-reactor/kafka/clusters/ap-northeast-1/bootstrap")
    fn = load_lambda(PATH, aws, TOKYO)
    ok, err = invoke(fn, event("k1", failed_region=SEOUL), "f")
    assert not ok and err["errorType"] == "SwitchError" and "bootstrap is not set" in err["errorMessage"]
    assert bootstrap(aws, TOKYO) == PRIMARY_BOOTSTRAP and restarts(aws, TOKYO) == []
    ok, err = invoke(fn, event("k2", failed_region=TOKYO), "f")
    assert not ok and "run it in the DR region" in err["errorMessage"]
    ok, err = invoke(fn, {"step": "s", "payload": {"service": "notify", "failed_region": SEOUL}}, "f")
    assert not ok, "no idempotency key, no run"


def test_an_inactive_msk_cluster_is_refused(aws):
    setup(aws)
    kafka = aws("kafka", TOKYO)
    arn = kafka.create_cluster_v2(ClusterName="dr", Provisioned={
        "BrokerNodeGroupInfo": {"InstanceType": "kafka.m5.large", "ClientSubnets": ["subnet-1", "subnet-2"]},
        "KafkaVersion": "3.6.0", "NumberOfBrokerNodes": 2})["ClusterArn"]
    world.parameter(aws, "/dr-reactor/kafka/clusters/ap-northeast-1/arn", arn, TOKYO)
    state = kafka.describe_cluster_v2(ClusterArn=arn)["ClusterInfo"]["State"]
    fn = load_lambda(PATH, aws, TOKYO)
    ok, out = invoke(fn, event("k1", failed_region=SEOUL), "f")
    if state == "ACTIVE":
        assert ok, out
    else:
        assert not ok and "not ACTIVE" in out["errorMessage"]
        assert bootstrap(aws, TOKYO) == PRIMARY_BOOTSTRAP
