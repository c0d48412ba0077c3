"""Audits at warehouse scale: a SageMaker Batch Transform job over an S3 prefix of bin photos.

Same model and inference entry as the endpoint (:mod:`binsight.aws.container`): every object under the
input prefix is sent as one ``image/jpeg`` request (``SplitType`` None) and the prediction JSON is written to
``<output>/<key relative to the input prefix>.out``. Each ``.out`` file is exactly one prediction of
``binsight predict`` for that photo, so a per-bin audit reads ``(key, prediction)`` pairs: the bin id is the
key's file name, as in the local audit (docs/aws.md, "Audit at warehouse scale").
"""

from __future__ import annotations

from typing import Any

from binsight.aws.api import Api
from binsight.aws.ledger import tags
from binsight.aws.session import Target


def start_transform_job(
    api: Api,
    target: Target,
    name: str,
    model: str,
    input_uri: str,
    output_uri: str,
    *,
    instance_type: str,
    instance_count: int = 1,
    concurrency: int = 4,
) -> dict:
    request: dict[str, Any] = {
        "TransformJobName": name,
        "ModelName": model,
        "MaxConcurrentTransforms": concurrency,
        "MaxPayloadInMB": 6,
        "BatchStrategy": "SingleRecord",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": input_uri}},
            "ContentType": "image/jpeg",
            "SplitType": "None",
        },
        "TransformOutput": {"S3OutputPath": output_uri, "Accept": "application/json", "AssembleWith": "None"},
        "TransformResources": {"InstanceType": instance_type, "InstanceCount": instance_count},
        "Tags": tags(target.deployment),
    }
    api.create(
        "sagemaker", "create_transform_job", "transform_job", name, arn=lambda r: r["TransformJobArn"], **request
    )
    return request
