"""The event gateway on AWS: the ``binsight gateway package`` zip as a Lambda function, an API Gateway
HTTP API route to it, and an S3 ``ObjectCreated`` notification, all pointing at the deployment's endpoint.

Least privilege: the function's role may invoke that one endpoint, read objects of that one bucket and write
its own log group (:func:`binsight.aws.iam.gateway_policy`). API Gateway and S3 may invoke the function only
from that API and that bucket (resource-policy statements with ``SourceArn``). The notification is merged
into the bucket's existing configuration (S3 keeps one per bucket) under the id ``binsight-<deployment>``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from binsight.aws.api import Api
from binsight.aws.errors import AwsCallError
from binsight.aws.iam import create_role, gateway_policy
from binsight.aws.ledger import TAG_KEY
from binsight.aws.session import Target
from binsight.gateway.package import HANDLER

RUNTIME = "python3.11"
ROUTE = "POST /predict"


@dataclass(frozen=True)
class GatewayOptions:
    memory_mb: int = 512
    timeout_s: int = 30  # Lambda timeout; API Gateway's integration timeout is capped at 29 s
    s3_prefix: str = ""  # notify on ObjectCreated under this key prefix of the bucket; "" = no notification
    s3_suffix: str = ".jpg"


def function_name(deployment: str) -> str:
    return f"binsight-{deployment}-gateway"


def notification_id(deployment: str) -> str:
    return f"binsight-{deployment}"


def create_function(api: Api, name: str, role_arn: str, zip_bytes: bytes, endpoint: str, opts: GatewayOptions) -> str:
    """Create the function, retrying while IAM has not yet propagated the new role (a few seconds)."""
    params: dict[str, Any] = dict(
        FunctionName=name,
        Runtime=RUNTIME,
        Handler=HANDLER,
        Role=role_arn,
        Code={"ZipFile": zip_bytes},
        Timeout=opts.timeout_s,
        MemorySize=opts.memory_mb,
        Environment={"Variables": {"BINSIGHT_SAGEMAKER_ENDPOINT": endpoint}},
        Description=f"binsight event gateway for endpoint {endpoint}",
        Tags={TAG_KEY: api.deployment},
    )
    for attempt in range(10):
        try:
            response = api.create(
                "lambda", "create_function", "function", name, arn=lambda r: r["FunctionArn"], **params
            )
            break
        except AwsCallError as exc:
            if "assume" not in str(exc).lower() or attempt == 9:
                raise
            api.calls.pop()
            time.sleep(6)
    if not api.dry_run:
        api.wait(
            lambda: api.call("lambda", "get_function_configuration", FunctionName=name),
            lambda c: c.get("State") in (None, "Active", "Failed"),
            interval=2,
            timeout=300,
        )
    return response["FunctionArn"]


def create_http_api(api: Api, name: str, function_arn: str, account: str, opts: GatewayOptions) -> dict[str, str]:
    created = api.create(
        "apigatewayv2",
        "create_api",
        "api",
        name,
        arn=lambda r: r["ApiId"],
        Name=name,
        ProtocolType="HTTP",
        Description=f"binsight gateway {api.deployment}",
        Tags={TAG_KEY: api.deployment},
    )
    api_id = created["ApiId"]
    integration = api.call(
        "apigatewayv2",
        "create_integration",
        ApiId=api_id,
        IntegrationType="AWS_PROXY",
        IntegrationUri=function_arn,
        PayloadFormatVersion="2.0",
        TimeoutInMillis=min(29000, opts.timeout_s * 1000),
    )
    api.call(
        "apigatewayv2",
        "create_route",
        ApiId=api_id,
        RouteKey=ROUTE,
        Target=f"integrations/{integration['IntegrationId']}",
    )
    api.call("apigatewayv2", "create_stage", ApiId=api_id, StageName="$default", AutoDeploy=True)
    api.call(
        "lambda",
        "add_permission",
        FunctionName=function_arn,
        StatementId="binsight-http-api",
        Action="lambda:InvokeFunction",
        Principal="apigateway.amazonaws.com",
        SourceArn=f"arn:aws:execute-api:{api.region}:{account}:{api_id}/*/*/predict",
    )
    return {"api_id": api_id, "url": f"{created['ApiEndpoint']}/predict"}


def add_s3_notification(api: Api, target: Target, function_arn: str, account: str, opts: GatewayOptions) -> str:
    api.call(
        "lambda",
        "add_permission",
        FunctionName=function_arn,
        StatementId="binsight-s3",
        Action="lambda:InvokeFunction",
        Principal="s3.amazonaws.com",
        SourceArn=f"arn:aws:s3:::{target.bucket}",
        SourceAccount=account,
    )
    nid = notification_id(target.deployment)
    config = {} if api.dry_run else api.call("s3", "get_bucket_notification_configuration", Bucket=target.bucket)
    config = {k: v for k, v in dict(config).items() if k != "ResponseMetadata"}
    lambdas = [c for c in config.get("LambdaFunctionConfigurations", []) if c.get("Id") != nid]
    rules = [{"Name": "prefix", "Value": opts.s3_prefix}] + (
        [{"Name": "suffix", "Value": opts.s3_suffix}] if opts.s3_suffix else []
    )
    lambdas.append(
        {
            "Id": nid,
            "LambdaFunctionArn": function_arn,
            "Events": ["s3:ObjectCreated:*"],
            "Filter": {"Key": {"FilterRules": rules}},
        }
    )
    config["LambdaFunctionConfigurations"] = lambdas
    api.create(
        "s3",
        "put_bucket_notification_configuration",
        "s3_notification",
        nid,
        extra={"bucket": target.bucket},
        Bucket=target.bucket,
        NotificationConfiguration=config,
    )
    return nid


def deploy_gateway(
    api: Api, target: Target, account: str, endpoint: str, zip_bytes: bytes, opts: GatewayOptions
) -> dict[str, str]:
    """Role, function, HTTP API and (with ``s3_prefix``) the bucket notification. Returns names and URL."""
    name = function_name(target.deployment)
    role_arn = create_role(
        api, name, "lambda.amazonaws.com", gateway_policy(api.region, account, endpoint, target.bucket, name)
    )
    function_arn = create_function(api, name, role_arn, zip_bytes, endpoint, opts)
    out = {"function": name, "role": name, **create_http_api(api, name, function_arn, account, opts)}
    if opts.s3_prefix:
        out["notification"] = add_s3_notification(api, target, function_arn, account, opts)
    return out


def remove_s3_notification(api: Api, bucket: str, nid: str) -> bool:
    """Drop the notification ``nid`` from the bucket's configuration, keeping any others. True if it was there."""
    try:
        config = api.call("s3", "get_bucket_notification_configuration", Bucket=bucket)
    except AwsCallError as exc:
        if exc.code == "NoSuchBucket":
            return False
        raise
    config = {k: v for k, v in dict(config).items() if k != "ResponseMetadata"}
    lambdas = config.get("LambdaFunctionConfigurations", [])
    kept = [c for c in lambdas if c.get("Id") != nid]
    if len(kept) == len(lambdas):
        return False
    config["LambdaFunctionConfigurations"] = kept
    api.call("s3", "put_bucket_notification_configuration", Bucket=bucket, NotificationConfiguration=config)
    return True
