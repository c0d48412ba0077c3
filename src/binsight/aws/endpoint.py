"""SageMaker real-time endpoints: model, endpoint config, endpoint, InService wait, smoke invoke, blue/green.

The model is ``model.tar.gz`` from :func:`binsight.aws.package.build_model_tar` on AWS's PyTorch inference
container (``code/inference.py`` → :mod:`binsight.aws.container`), or on any image given with ``--image``
(e.g. the project's ``Dockerfile`` pushed to ECR, which serves the same archive). An update creates a new
model and endpoint config and calls ``UpdateEndpoint``: SageMaker brings the new fleet up, shifts traffic
and only then retires the old one (blue/green, no failed request); the old config and model are deleted
after the swap.
"""

from __future__ import annotations

import base64
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from binsight.aws.api import Api
from binsight.aws.errors import AwsCallError
from binsight.aws.images import dlc_image
from binsight.aws.ledger import Resource, tags
from binsight.aws.logs import StatusLine
from binsight.aws.package import build_model_tar
from binsight.aws.session import Target
from binsight.aws.training import record_prefix

VARIANT = "AllTraffic"
# The model's review band travels in its container environment (the prediction JSON does not carry it); a
# transform job's audit reads it back (binsight.aws.transform).
REVIEW_BAND_ENV = "BINSIGHT_REVIEW_BAND"


def endpoint_name(deployment: str) -> str:
    return f"binsight-{deployment}"


def upload_model(api: Api, target: Target, model_path: str | Path, name: str) -> str:
    """Package a local run directory (or artifact folder) and upload it; returns the ``model.tar.gz`` URI."""
    key = target.key("models", name, "model.tar.gz")
    with tempfile.TemporaryDirectory(prefix="binsight-aws-") as tmp:
        body = build_model_tar(model_path, Path(tmp) / "model.tar.gz").read_bytes()
    record_prefix(api, target)
    api.call("s3", "put_object", Bucket=target.bucket, Key=key, Body=body)
    return f"s3://{target.bucket}/{key}"


def create_model(
    api: Api,
    target: Target,
    name: str,
    model_uri: str,
    role: str,
    image: str,
    instance_type: str,
    review_band: dict[str, float] | None = None,
) -> str:
    image = image or dlc_image(target.region, "inference", instance_type)
    band = {REVIEW_BAND_ENV: json.dumps(review_band, sort_keys=True)} if review_band else {}
    api.create(
        "sagemaker",
        "create_model",
        "model",
        name,
        arn=lambda r: r["ModelArn"],
        ModelName=name,
        PrimaryContainer={
            "Image": image,
            "ModelDataUrl": model_uri,
            "Environment": {
                "SAGEMAKER_PROGRAM": "inference.py",
                "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
                "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
                "SAGEMAKER_REGION": target.region,
                **band,
            },
        },
        ExecutionRoleArn=role,
        Tags=tags(target.deployment),
    )
    return name


def create_endpoint_config(api: Api, target: Target, name: str, model: str, instance_type: str, count: int) -> str:
    api.create(
        "sagemaker",
        "create_endpoint_config",
        "endpoint_config",
        name,
        arn=lambda r: r["EndpointConfigArn"],
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": VARIANT,
                "ModelName": model,
                "InitialInstanceCount": count,
                "InstanceType": instance_type,
                "InitialVariantWeight": 1.0,
            }
        ],
        Tags=tags(target.deployment),
    )
    return name


def wait_in_service(api: Api, name: str, interval: float = 20.0) -> dict[str, Any]:
    """Wait for ``InService`` (a live status line); raises with SageMaker's FailureReason on ``Failed``."""
    if api.dry_run:
        return api.call("sagemaker", "describe_endpoint", EndpointName=name)
    status = StatusLine(f"endpoint {name}")
    desc = api.wait(
        lambda: api.call("sagemaker", "describe_endpoint", EndpointName=name),
        lambda d: d.get("EndpointStatus") not in ("Creating", "Updating", "SystemUpdating"),
        interval=interval,
        on_poll=lambda d: status.show(str(d.get("EndpointStatus"))),
    )
    status.done()
    if desc.get("EndpointStatus") != "InService":
        raise AwsCallError(
            f"endpoint {name} is {desc.get('EndpointStatus')}: {desc.get('FailureReason', 'no reason given')}; "
            f"its resources stay in the ledger: binsight aws cleanup --deployment {api.deployment}",
            code="EndpointFailed",
        )
    return desc


def smoke(api: Api, name: str, image: Path, expected_quantity: int | None = None) -> Any:
    """One image through ``sagemaker-runtime`` ``invoke_endpoint``; returns the parsed prediction."""
    if expected_quantity is None:
        body, content_type = image.read_bytes(), "image/jpeg" if image.suffix.lower() != ".png" else "image/png"
    else:
        payload = {"image_b64": base64.b64encode(image.read_bytes()).decode(), "expected_quantity": expected_quantity}
        body, content_type = json.dumps(payload).encode(), "application/json"
    answer = api.call(
        "sagemaker-runtime",
        "invoke_endpoint",
        EndpointName=name,
        Body=body,
        ContentType=content_type,
        Accept="application/json",
    )
    if api.dry_run:
        return answer
    text = answer["Body"].read()
    try:
        return json.loads(text)
    except ValueError:
        raise AwsCallError(f"endpoint {name} answered something that is not JSON: {text[:200]!r}") from None


def deploy(
    api: Api,
    target: Target,
    model_path: str | Path,
    *,
    role: str,
    instance_type: str,
    instance_count: int = 1,
    image: str = "",
    interval: float = 20.0,
) -> dict[str, str]:
    """Create (or, when it exists, blue/green update) the deployment's endpoint. Returns the names used."""
    stamp = time.strftime("%y%m%d-%H%M%S", time.gmtime())
    endpoint = endpoint_name(target.deployment)
    version = f"{endpoint}-{stamp}"
    model_uri = upload_model(api, target, model_path, version)
    from binsight.inference.artifact import read_meta, resolve_artifact_dir

    band = dict(read_meta(resolve_artifact_dir(model_path)).decision_thresholds)
    create_model(api, target, version, model_uri, role, image, instance_type, band)
    create_endpoint_config(api, target, version, version, instance_type, instance_count)
    previous = ledgered_config(api, endpoint) if api.dry_run else current_config(api, endpoint)
    if previous is None:
        api.create(
            "sagemaker",
            "create_endpoint",
            "endpoint",
            endpoint,
            arn=lambda r: r["EndpointArn"],
            EndpointName=endpoint,
            EndpointConfigName=version,
            Tags=tags(target.deployment),
        )
    else:
        api.call("sagemaker", "update_endpoint", EndpointName=endpoint, EndpointConfigName=version)
    wait_in_service(api, endpoint, interval)
    if previous is not None:
        retire(api, previous)
    return {"endpoint": endpoint, "endpoint_config": version, "model": version, "model_data": model_uri}


def current_config(api: Api, endpoint: str) -> dict[str, str] | None:
    """The endpoint's current config and model names, or None when there is no such endpoint."""
    try:
        desc = api.call("sagemaker", "describe_endpoint", EndpointName=endpoint)
    except AwsCallError as exc:
        if exc.code == "ValidationException":
            return None
        raise
    config = desc["EndpointConfigName"]
    variants = api.call("sagemaker", "describe_endpoint_config", EndpointConfigName=config)["ProductionVariants"]
    return {"endpoint_config": config, "model": variants[0]["ModelName"]}


def ledgered_config(api: Api, endpoint: str) -> dict[str, str] | None:
    """What :func:`current_config` would answer, from the ledger alone (a dry run calls nothing): the
    deployment's latest live endpoint config and model when its endpoint is live, else None."""
    live = api.ledger.live(api.deployment)
    if not any(r.kind == "endpoint" and r.name == endpoint and r.region == api.region for r in live):
        return None
    latest = {r.kind: r.name for r in live if r.region == api.region and r.kind in ("endpoint_config", "model")}
    if len(latest) < 2:
        return None
    return {"endpoint_config": latest["endpoint_config"], "model": latest["model"]}


def retire(api: Api, previous: dict[str, str]) -> None:
    """Delete the config and model an update replaced."""
    config = Resource(api.deployment, "endpoint_config", previous["endpoint_config"], api.region)
    api.delete(config, "sagemaker", "delete_endpoint_config", EndpointConfigName=config.name)
    model = Resource(api.deployment, "model", previous["model"], api.region)
    api.delete(model, "sagemaker", "delete_model", ModelName=model.name)
