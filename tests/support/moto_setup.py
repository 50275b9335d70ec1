"""Creates, in a running moto server, the runbooks tests/moto.rs checks:
the same ones tests/moto.rs registers in the in-house fake, made through
AWS's own API (boto3), so the two stand-ins can be compared.

usage: python3 moto_setup.py http://127.0.0.1:PORT
"""

import io
import json
import sys
import urllib.request
import zipfile

import boto3

endpoint = sys.argv[1]
SEOUL = "ap-northeast-2"

# Lambda without Docker: Invoke returns the event it was given.
urllib.request.urlopen(
    urllib.request.Request(
        f"{endpoint}/moto-api/config",
        data=json.dumps({"lambda": {"use_docker": False}}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
).read()


def client(service, region=SEOUL):
    return boto3.client(
        service,
        region_name=region,
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


AUTOMATION = """
schemaVersion: '0.3'
description: restore a service
parameters:
  Service: {type: String}
  AutomationAssumeRole: {type: String, default: ''}
mainSteps:
  - name: wait
    action: aws:sleep
    inputs: {Duration: PT1S}
"""

COMMAND = """
schemaVersion: '2.2'
description: a shell command, not an automation
mainSteps:
  - action: aws:runShellScript
    name: run
    inputs: {runCommand: [echo hi]}
"""

ssm = client("ssm")
ssm.create_document(Name="DR-Restore", Content=AUTOMATION, DocumentType="Automation", DocumentFormat="YAML")
ssm.update_document(Name="DR-Restore", Content=AUTOMATION.replace("restore a service", "restore, v2"), DocumentVersion="$LATEST", DocumentFormat="YAML")
ssm.create_document(Name="DR-Old", Content=AUTOMATION, DocumentType="Automation", DocumentFormat="YAML")
ssm.create_document(Name="DR-Params", Content=AUTOMATION, DocumentType="Automation", DocumentFormat="YAML")
ssm.create_document(Name="DR-Shell", Content=COMMAND, DocumentType="Command", DocumentFormat="YAML")

role = client("iam", "us-east-1").create_role(
    RoleName="dr-runbook",
    AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
)["Role"]["Arn"]
code = io.BytesIO()
with zipfile.ZipFile(code, "w") as z:
    z.writestr("index.py", "def handler(event, context):\n    return event\n")
aws_lambda = client("lambda")
aws_lambda.create_function(
    FunctionName="dr-verify",
    Runtime="python3.12",
    Role=role,
    Handler="index.handler",
    Code={"ZipFile": code.getvalue()},
)
version = aws_lambda.publish_version(FunctionName="dr-verify")["Version"]
aws_lambda.create_alias(FunctionName="dr-verify", Name="live", FunctionVersion=version)
print("moto ready")
