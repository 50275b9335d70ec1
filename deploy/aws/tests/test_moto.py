"""The packaged stack deployed into moto's CloudFormation, in the DR region
and then the primary, as docs/aws.md says; then `dr-reactor readiness`
against that moto finds every runbook the shipped rules call ready, in
both regions.

moto's CloudFormation skips resource types it does not implement; those
are created here through the services' own APIs (which moto does
implement) from the same resolved properties, so botocore checks their
shape and moto stores them, and a new type that neither covers fails the
test. What moto's CloudFormation ignores of a type it does create (an S3
bucket's versioning, Object Lock, lifecycle, public access block; a KMS
key's MultiRegion) is asserted on the template in test_policies.py and
checked against CloudFormation's schema by cfn-lint.
"""

import json
import os
import re
import subprocess

import boto3
import pytest
import yaml
from moto.cloudformation.parsing import get_model_map

from conftest import ACCOUNT, DR, IRSA, PRIMARY, ROOT, resolve

CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def client(endpoint, service, region):
    return boto3.client(service, region_name=region, endpoint_url=endpoint, **CREDENTIALS)


def refers_to(value, logical_ids):
    """Whether a resource's JSON names one of `logical_ids` (Ref, GetAtt,
    Sub, DependsOn)."""
    text = json.dumps(value)
    return any(re.search(rf'"{re.escape(i)}"|\$\{{{re.escape(i)}[.}}]', text) for i in logical_ids)


def for_moto(template):
    """What moto's CloudFormation is given, and what it is not: the types it
    lacks, and what refers to them (moto cannot resolve the reference), are
    taken out to be made through the services' APIs. moto's KMS reads a
    KeyPolicy and an SSM document's Content as text only (AWS takes an
    object too)."""
    t = json.loads(json.dumps(template))
    supported = set(get_model_map())
    left_out = {k for k, r in t["Resources"].items() if r["Type"] not in supported}
    while True:
        more = {k for k, r in t["Resources"].items() if k not in left_out and refers_to(r, left_out)}
        if not more:
            break
        left_out |= more
    for k in left_out:
        del t["Resources"][k]
    t["Outputs"] = {k: o for k, o in t.get("Outputs", {}).items() if not refers_to(o, left_out)}
    for r in t["Resources"].values():
        if r["Type"] == "AWS::KMS::Key":
            r["Properties"]["KeyPolicy"] = json.dumps(r["Properties"]["KeyPolicy"])
        if r["Type"] == "AWS::SSM::Document":
            r["Properties"]["Content"] = yaml.safe_dump(r["Properties"]["Content"])
    return t, left_out


def apply_bucket_policy(endpoint, region, p):
    s3 = client(endpoint, "s3", region)
    s3.put_bucket_policy(Bucket=p["Bucket"], Policy=json.dumps(p["PolicyDocument"]))
    assert json.loads(s3.get_bucket_policy(Bucket=p["Bucket"])["Policy"]) == p["PolicyDocument"]


def apply_glue_database(endpoint, region, p):
    glue = client(endpoint, "glue", region)
    glue.create_database(CatalogId=p["CatalogId"], DatabaseInput=p["DatabaseInput"])
    assert glue.get_database(Name=p["DatabaseInput"]["Name"])["Database"]["Name"] == p["DatabaseInput"]["Name"]


def apply_glue_table(endpoint, region, p):
    glue = client(endpoint, "glue", region)
    glue.create_table(CatalogId=p["CatalogId"], DatabaseName=p["DatabaseName"], TableInput=p["TableInput"])
    got = glue.get_table(DatabaseName=p["DatabaseName"], Name=p["TableInput"]["Name"])["Table"]
    assert got["Parameters"] == p["TableInput"]["Parameters"]
    assert got["PartitionKeys"] == p["TableInput"]["PartitionKeys"]


def apply_workgroup(endpoint, region, p):
    athena = client(endpoint, "athena", region)
    athena.create_work_group(Name=p["Name"], Description=p["Description"], Configuration=p["WorkGroupConfiguration"])
    got = athena.get_work_group(WorkGroup=p["Name"])["WorkGroup"]
    assert got["Configuration"]["ResultConfiguration"] == p["WorkGroupConfiguration"]["ResultConfiguration"]


def apply_managed_policy(endpoint, region, p):
    iam = client(endpoint, "iam", region)
    arn = iam.create_policy(PolicyName=p["ManagedPolicyName"], Description=p["Description"], PolicyDocument=json.dumps(p["PolicyDocument"]))["Policy"]["Arn"]
    for role in p.get("Roles", []):
        iam.attach_role_policy(RoleName=role, PolicyArn=arn)


def apply_alias(endpoint, region, p):
    kms = client(endpoint, "kms", region)
    kms.create_alias(AliasName=p["AliasName"], TargetKeyId=p["TargetKeyId"])
    aliases = {a["AliasName"]: a.get("TargetKeyId") for a in kms.list_aliases()["Aliases"]}
    assert aliases[p["AliasName"]] == p["TargetKeyId"]


def apply_replica_key(endpoint, region, p):
    primary_region = p["PrimaryKeyArn"].split(":")[3]
    kms = client(endpoint, "kms", primary_region)
    # moto takes the key id only (AWS takes the ARN too).
    key_id = p["PrimaryKeyArn"].split("/")[-1]
    replica = kms.replicate_key(KeyId=key_id, ReplicaRegion=region, Policy=json.dumps(p["KeyPolicy"]))
    assert replica["ReplicaKeyMetadata"]["Arn"].split(":")[3] == region


APPLY = {
    "AWS::S3::BucketPolicy": apply_bucket_policy,
    "AWS::Glue::Database": apply_glue_database,
    "AWS::Glue::Table": apply_glue_table,
    "AWS::Athena::WorkGroup": apply_workgroup,
    "AWS::KMS::ReplicaKey": apply_replica_key,
    # These two only where they refer to what moto's CloudFormation did
    # not make (a replica key, the workgroup).
    "AWS::KMS::Alias": apply_alias,
    "AWS::IAM::ManagedPolicy": apply_managed_policy,
}
# Created with Platform eks-pod-identity only, which moto has no API for:
# checked by cfn-lint and by test_policies.py.
NOT_DEPLOYED = {"AWS::EKS::PodIdentityAssociation"}


def deploy(endpoint, template, region, parameters):
    cf = client(endpoint, "cloudformation", region)
    given, left_out = for_moto(template)
    cf.create_stack(
        StackName="dr-reactor",
        TemplateBody=json.dumps(given),
        Parameters=[{"ParameterKey": k, "ParameterValue": str(v)} for k, v in parameters.items()],
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    stack = cf.describe_stacks(StackName="dr-reactor")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    resolved = resolve(template, region, **parameters)
    # In template order, which puts what is referred to first.
    for logical, r in resolved.resources.items():
        if logical not in left_out:
            continue
        assert r["Type"] in APPLY or r["Type"] in NOT_DEPLOYED, f"moto does not deploy {r['Type']} ({logical}) and nothing here covers it"
        if r["Type"] in APPLY:
            APPLY[r["Type"]](endpoint, region, r["Properties"])
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}, resolved


@pytest.fixture(scope="module")
def deployed(moto_endpoint, shipped_packaged):
    outputs, dr = deploy(moto_endpoint, shipped_packaged, DR, dict(IRSA))
    # moto's CloudFormation makes a single-Region key (it ignores
    # MultiRegion): the replica is made from a multi-Region key created as
    # the template asks, through KMS's own API.
    kms = client(moto_endpoint, "kms", DR)
    key = dr.resources["AuditKey"]["Properties"]
    mrk = kms.create_key(MultiRegion=key["MultiRegion"], Description=key["Description"], Policy=json.dumps(key["KeyPolicy"]))
    arn = mrk["KeyMetadata"]["Arn"]
    assert mrk["KeyMetadata"]["KeyId"].startswith("mrk-")
    _, primary = deploy(moto_endpoint, shipped_packaged, PRIMARY, {**IRSA, "AuditKeyArn": arn})
    assert "AuditKeyReplica" in primary.resources
    return {"outputs": outputs, DR: dr, PRIMARY: primary, "key": arn}


def test_every_runbook_is_deployed_in_both_regions(moto_endpoint, deployed, shipped_manifest):
    executor = f"arn:aws:iam::{ACCOUNT}:role/dr-executor"
    for region in (PRIMARY, DR):
        ssm = client(moto_endpoint, "ssm", region)
        aws_lambda = client(moto_endpoint, "lambda", region)
        for rb in shipped_manifest:
            if rb["kind"] == "ssm":
                doc = ssm.describe_document(Name=rb["name"])["Document"]
                assert (doc["DocumentType"], doc["Status"]) == ("Automation", "Active")
                assert "AutomationAssumeRole" in {p["Name"] for p in doc["Parameters"]}
            else:
                config = aws_lambda.get_function(FunctionName=rb["name"])["Configuration"]
                assert (config["State"], config["Role"], config["Handler"]) == ("Active", executor, rb["handler"])


def test_the_roles_have_exactly_their_policies(moto_endpoint, deployed):
    iam = client(moto_endpoint, "iam", DR)
    resolved = deployed[DR]

    def attached(role):
        return sorted(p["PolicyName"] for p in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"])

    executor = sorted(r["Properties"]["ManagedPolicyName"] for k, r in resolved.resources.items() if k.startswith("Executor") and r["Type"] == "AWS::IAM::ManagedPolicy")
    assert attached("dr-executor") == executor
    assert attached("dr-reactor") == ["dr-reactor-dispatch"]
    assert iam.list_role_policies(RoleName="dr-reactor")["PolicyNames"] == []
    arn = f"arn:aws:iam::{ACCOUNT}:policy/dr-reactor-dispatch"
    version = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    stored = iam.get_policy_version(PolicyArn=arn, VersionId=version)["PolicyVersion"]["Document"]
    assert stored == resolved.resources["DrReactorPolicy"]["Properties"]["PolicyDocument"]
    assert deployed["outputs"]["ExecutorRoleArn"] == f"arn:aws:iam::{ACCOUNT}:role/dr-executor"


def test_the_audit_bucket_is_encrypted_with_the_stacks_key(moto_endpoint, deployed):
    s3 = client(moto_endpoint, "s3", DR)
    bucket = deployed["outputs"]["AuditBucketName"]
    assert bucket == f"dr-audit-{ACCOUNT}-{DR}"
    (rule,) = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert rule["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"] == deployed["outputs"]["AuditKeyArn"]


def test_readiness_finds_every_runbook_ready_in_every_region(moto_endpoint, deployed, shipped_manifest, tmp_path):
    binary = os.environ.get("DR_REACTOR_BIN")
    if not binary:
        pytest.skip("needs the dr-reactor binary: run through `cargo test --test aws_stack`")
    config = tmp_path / "dr-reactor.yaml"
    config.write_text(
        f"rules:\n  paths: [{ROOT}/rules]\n  catalogue: {ROOT}/config/services.yaml\n"
        "webhook:\n  auth:\n    bearer_token: t\n"
        f"aws:\n  endpoint_url: {moto_endpoint}\n  default_region: {DR}\n  retry: {{max_attempts: 2}}\n"
        f"  automation_assume_role: {deployed['outputs']['ExecutorRoleArn']}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing")
    run = subprocess.run([binary, "readiness", "--output", "json", "--config", str(config)], capture_output=True, text=True, env=env, timeout=120)
    report = json.loads(run.stdout or "{}")
    not_ready = [r for r in report.get("runbooks", []) if not r["ready"]]
    assert run.returncode == 0, f"{run.stderr}\n{json.dumps(not_ready, indent=1)}"
    assert report["unresolved"] == []
    checked = {(r["runbook"], r["region"]) for r in report["runbooks"]}
    called = {rb["name"] for rb in shipped_manifest}
    assert checked == {(name, region) for name in called for region in (PRIMARY, DR)}
