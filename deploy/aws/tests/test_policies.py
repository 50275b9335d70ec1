"""The policies the stack creates, resolved for test parameters: the
identity policies through parliament (PyPI, Duo Labs' IAM linter: unknown
actions, wildcards where a narrower resource exists, resources of the
wrong type, malformed conditions); the trust, bucket and key policies,
which parliament does not read (no Resource, or `*` meaning "this key"),
by what each must say."""

import json

import pytest
from parliament import analyze_policy_string

from conftest import ACCOUNT, DR, PRIMARY, resolve

# The one finding accepted, and why: iam:PassRole is permissions management
# by nature; it is limited to the executor role, passed to SSM only
# (asserted below).
ACCEPTED = {("DrReactorPolicy", "PERMISSIONS_MANAGEMENT_ACTIONS", ("iam:passrole",))}

PLATFORMS = ["eks-irsa", "eks-pod-identity", "ec2", "ecs"]


def findings(document):
    policy = analyze_policy_string(json.dumps(document), include_community_auditors=True)
    return [(f.issue, f.detail, f.location) for f in policy.findings]


@pytest.mark.parametrize("which", ["fixture", "shipped"])
def test_identity_policies_pass_parliament(which, fixture_packaged, shipped_packaged):
    template = fixture_packaged if which == "fixture" else shipped_packaged
    r = resolve(template, DR)
    policies = r.of_type("AWS::IAM::ManagedPolicy")
    assert {"DrReactorPolicy", "AuditReaderPolicy", "ExecutorLogsPolicy"} <= set(policies)
    for name, p in policies.items():
        for issue, detail, location in findings(p["Properties"]["PolicyDocument"]):
            key = (name, issue, tuple(location.get("actions", ())))
            assert key in ACCEPTED, f"{name}: {issue} {detail} {location}"


def statements(r, logical, key="PolicyDocument"):
    doc = r.resources[logical]["Properties"][key]
    doc = json.loads(doc) if isinstance(doc, str) else doc
    assert doc["Version"] == "2012-10-17"
    return doc["Statement"]


def as_list(v):
    return v if isinstance(v, list) else [v]


def test_dr_reactors_role_names_its_resources_and_passes_the_executor_to_ssm_only(fixture_packaged):
    r = resolve(fixture_packaged, DR)
    allowed = {
        "ssm:StartAutomationExecution", "ssm:GetAutomationExecution", "ssm:StopAutomationExecution",
        "ssm:DescribeDocument", "lambda:InvokeFunction", "lambda:GetFunction",
        "iam:PassRole", "s3:PutObject",
    }
    seen = set()
    for s in statements(r, "DrReactorPolicy"):
        assert s["Effect"] == "Allow" and s["Sid"].isalnum(), s
        assert "*" not in as_list(s["Resource"]), s
        seen |= set(as_list(s["Action"]))
        if "iam:PassRole" in as_list(s["Action"]):
            assert as_list(s["Action"]) == ["iam:PassRole"]
            assert s["Resource"] == f"arn:aws:iam::{ACCOUNT}:role/dr-executor"
            assert s["Condition"] == {"StringEquals": {"iam:PassedToService": "ssm.amazonaws.com"}}
        if "s3:PutObject" in as_list(s["Action"]):
            assert s["Resource"] == f"arn:aws:s3:::dr-audit-{ACCOUNT}-{DR}/dr-reactor/reports/*"
    assert seen == allowed
    assert r.resources["DrReactorPolicy"]["Properties"]["Roles"] == ["dr-reactor"]


@pytest.mark.parametrize("platform", PLATFORMS)
def test_only_the_chosen_platform_may_assume_dr_reactors_role(platform, fixture_packaged):
    extra = {"EksClusterName": "dr"} if platform == "eks-pod-identity" else {}
    r = resolve(fixture_packaged, DR, Platform=platform, **extra)
    (s,) = statements(r, "DrReactorRole", "AssumeRolePolicyDocument")
    assert s["Effect"] == "Allow"
    provider = "oidc.eks.ap-northeast-1.amazonaws.com/id/EXAMPLED539D4633E53DE1B71EXAMPLE"
    want = {
        "eks-irsa": (
            {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{provider}"},
            "sts:AssumeRoleWithWebIdentity",
            {"StringEquals": {f"{provider}:sub": "system:serviceaccount:dr-reactor:dr-reactor", f"{provider}:aud": "sts.amazonaws.com"}},
        ),
        "eks-pod-identity": (
            {"Service": "pods.eks.amazonaws.com"},
            ["sts:AssumeRole", "sts:TagSession"],
            {"StringEquals": {"aws:SourceAccount": ACCOUNT}, "ArnEquals": {"aws:SourceArn": f"arn:aws:eks:{DR}:{ACCOUNT}:cluster/dr"}},
        ),
        "ec2": ({"Service": "ec2.amazonaws.com"}, "sts:AssumeRole", None),
        "ecs": (
            {"Service": "ecs-tasks.amazonaws.com"},
            "sts:AssumeRole",
            {"StringEquals": {"aws:SourceAccount": ACCOUNT}, "ArnLike": {"aws:SourceArn": f"arn:aws:ecs:{DR}:{ACCOUNT}:*"}},
        ),
    }[platform]
    assert (s["Principal"], s["Action"], s.get("Condition")) == want
    assert ("DrReactorInstanceProfile" in r.resources) == (platform == "ec2")
    assert ("DrReactorPodIdentity" in r.resources) == (platform == "eks-pod-identity")
    if platform == "eks-pod-identity":
        p = r.resources["DrReactorPodIdentity"]["Properties"]
        assert (p["ClusterName"], p["Namespace"], p["ServiceAccount"]) == ("dr", "dr-reactor", "dr-reactor")


def test_the_executor_role_is_ssm_automations_of_this_account_and_the_functions(fixture_packaged):
    r = resolve(fixture_packaged, DR)
    ssm, fn = statements(r, "ExecutorRole", "AssumeRolePolicyDocument")
    assert ssm["Principal"] == {"Service": "ssm.amazonaws.com"}
    assert ssm["Condition"] == {
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
        "ArnLike": {"aws:SourceArn": [f"arn:aws:ssm:{region}:{ACCOUNT}:automation-execution/*" for region in (PRIMARY, DR)]},
    }
    assert fn["Principal"] == {"Service": "lambda.amazonaws.com"} and fn["Action"] == "sts:AssumeRole"
    assert "Policies" not in r.resources["ExecutorRole"]["Properties"], "its permissions are the managed policies"


def test_the_audit_bucket_is_locked_encrypted_tls_only_and_ages_out(fixture_packaged):
    r = resolve(fixture_packaged, DR, AuditRetentionDays=400, AuditExpireAfterDays=3000)
    b = r.resources["AuditBucket"]
    p = b["Properties"]
    assert b["DeletionPolicy"] == b["UpdateReplacePolicy"] == "Retain"
    assert p["BucketName"] == f"dr-audit-{ACCOUNT}-{DR}"
    assert p["VersioningConfiguration"] == {"Status": "Enabled"}
    assert p["ObjectLockEnabled"] is True
    assert p["ObjectLockConfiguration"] == {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "COMPLIANCE", "Days": 400}}}
    (rule,) = p["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    key_arn = r.getatt("AuditKey", "Arn")
    assert rule == {"BucketKeyEnabled": True, "ServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn}}
    assert all(p["PublicAccessBlockConfiguration"].values())
    (life,) = p["LifecycleConfiguration"]["Rules"]
    assert life["ExpirationInDays"] == 3000 and life["NoncurrentVersionExpiration"] == {"NoncurrentDays": 400}
    assert life["Transitions"] == [{"StorageClass": "GLACIER_IR", "TransitionInDays": 90}]
    for bucket, policy in (("AuditBucket", "AuditBucketPolicy"), ("AthenaResultsBucket", "AthenaResultsBucketPolicy")):
        name = r.resources[bucket]["Properties"]["BucketName"]
        assert r.resources[policy]["Properties"]["Bucket"] == name
        (tls,) = [s for s in statements(r, policy) if s["Sid"] == "TlsOnly"]
        assert (tls["Effect"], tls["Principal"], tls["Action"]) == ("Deny", "*", "s3:*")
        assert tls["Resource"] == [f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"]
        assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
        assert findings(r.resources[policy]["Properties"]["PolicyDocument"]) == []
    assert "ObjectLockEnabled" not in r.resources["AthenaResultsBucket"]["Properties"], "query results are not records"


def test_the_audit_key_is_multi_region_and_dr_reactor_only_encrypts_through_s3(fixture_packaged):
    r = resolve(fixture_packaged, DR)
    p = r.resources["AuditKey"]["Properties"]
    assert p["MultiRegion"] is True and p["EnableKeyRotation"] is True
    admin, reactor = p["KeyPolicy"]["Statement"]
    assert admin["Principal"] == {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}
    assert reactor == {
        "Sid": "DrReactorEncryptsThroughS3",
        "Effect": "Allow",
        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:role/dr-reactor"},
        "Action": "kms:GenerateDataKey",
        "Resource": "*",
        "Condition": {"StringEquals": {"kms:ViaService": f"s3.{DR}.amazonaws.com"}},
    }
    primary = resolve(fixture_packaged, PRIMARY, AuditKeyArn=f"arn:aws:kms:{DR}:{ACCOUNT}:key/mrk-1234abcd12ab34cd56ef1234567890ab")
    (replica,) = primary.of_type("AWS::KMS::ReplicaKey").values()
    assert [s["Sid"] for s in replica["Properties"]["KeyPolicy"]["Statement"]] == ["TheAccountAdministersTheKey"]
