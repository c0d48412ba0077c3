"""IAM roles binsight creates, with least-privilege inline policies (documents built here, tested as data)."""

from __future__ import annotations

import json
from typing import Any

from binsight.aws.api import Api
from binsight.aws.ledger import tags

ROLE_PATH = "/binsight/"


def trust_policy(service: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}],
    }


def gateway_policy(region: str, account: str, endpoint: str, bucket: str, function: str) -> dict[str, Any]:
    """Invoke that endpoint, read that bucket, write the function's own logs: nothing else."""
    log_group = f"arn:aws:logs:{region}:{account}:log-group:/aws/lambda/{function}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "InvokeEndpoint",
                "Effect": "Allow",
                "Action": "sagemaker:InvokeEndpoint",
                "Resource": f"arn:aws:sagemaker:{region}:{account}:endpoint/{endpoint.lower()}",
            },
            {"Sid": "ReadBucket", "Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/*"},
            {"Sid": "CreateLogGroup", "Effect": "Allow", "Action": "logs:CreateLogGroup", "Resource": log_group},
            {
                "Sid": "WriteLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": f"{log_group}:*",
            },
        ],
    }


def create_role(api: Api, name: str, service: str, policy: dict[str, Any]) -> str:
    """Create role ``name`` assumable by ``service`` with one inline policy; returns the role ARN."""
    role = api.create(
        "iam",
        "create_role",
        "role",
        name,
        arn=lambda r: r["Role"]["Arn"],
        RoleName=name,
        Path=ROLE_PATH,
        AssumeRolePolicyDocument=json.dumps(trust_policy(service)),
        Description=f"binsight deployment {api.deployment}",
        Tags=tags(api.deployment),
    )
    api.create(
        "iam",
        "put_role_policy",
        "role_policy",
        f"{name}/{name}",
        extra={"role": name, "policy": name},
        RoleName=name,
        PolicyName=name,
        PolicyDocument=json.dumps(policy),
    )
    return role["Role"]["Arn"]
