"""``binsight aws cleanup``: delete what the ledger says binsight created, in dependency order.

Order: the S3 notification (it points at the function), the HTTP API, the function (its resource-policy
statements go with it), running jobs stopped, the tuning job record, the endpoint, its configs, the models,
the role policies, the roles, and, only with ``delete_data``, the deployment's S3 prefix. Each delete treats
"already gone" as done and is ledgered at once, so running it twice, or after a half-failed deploy or a
half-failed cleanup, finishes the job. Training and transform jobs cannot be deleted on SageMaker (they are
immutable records and cost nothing once ended); running ones are stopped. The result has the shape of the
local ``binsight cleanup``'s (a list of names per kind), printed the same way.
"""

from __future__ import annotations

from typing import Any

from binsight.aws.api import Api
from binsight.aws.errors import AwsCallError
from binsight.aws.gateway import remove_s3_notification
from binsight.aws.ledger import KINDS, Resource

REPORT_KEYS = (
    "notifications",
    "apis",
    "functions",
    "jobs",
    "tuning_jobs",
    "endpoints",
    "endpoint_configs",
    "models",
    "role_policies",
    "roles",
    "s3_objects",
)
RUNNING = ("InProgress", "Stopping")


def _job_status(api: Api, res: Resource) -> str:
    op, key, field = {
        "training_job": ("describe_training_job", "TrainingJobName", "TrainingJobStatus"),
        "tuning_job": (
            "describe_hyper_parameter_tuning_job",
            "HyperParameterTuningJobName",
            "HyperParameterTuningJobStatus",
        ),
        "transform_job": ("describe_transform_job", "TransformJobName", "TransformJobStatus"),
    }[res.kind]
    try:
        return str(api.call("sagemaker", op, **{key: res.name}).get(field, ""))
    except AwsCallError as exc:
        if exc.code == "ValidationException" or "not found" in str(exc).lower():
            return "gone"
        raise


def _stop_job(api: Api, res: Resource) -> bool:
    """Stop a running job; True when it was running."""
    status = _job_status(api, res)
    if status == "InProgress":
        op, key = {
            "training_job": ("stop_training_job", "TrainingJobName"),
            "tuning_job": ("stop_hyper_parameter_tuning_job", "HyperParameterTuningJobName"),
            "transform_job": ("stop_transform_job", "TransformJobName"),
        }[res.kind]
        api.call("sagemaker", op, **{key: res.name})
        return True
    return False


def _empty_prefix(api: Api, bucket: str, prefix: str) -> int:
    deleted = 0
    token = None
    while True:
        params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
        if token:
            params["ContinuationToken"] = token
        page = api.call("s3", "list_objects_v2", **params)
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        for start in range(0, len(keys), 1000):
            api.call(
                "s3", "delete_objects", Bucket=bucket, Delete={"Objects": keys[start : start + 1000], "Quiet": True}
            )
        deleted += len(keys)
        token = page.get("NextContinuationToken")
        if not token:
            return deleted


def remove(api: Api, res: Resource, delete_data: bool) -> tuple[str, str] | None:
    """Delete one resource; returns (report key, shown name) when something was removed or stopped."""
    kind = res.kind
    if kind == "s3_notification":
        if remove_s3_notification(api, res.extra["bucket"], res.name):
            api.ledger.deleted(res)
            return "notifications", f"{res.extra['bucket']}:{res.name}"
        api.ledger.deleted(res)
        return None
    if kind == "api":
        return ("apis", res.name) if api.delete(res, "apigatewayv2", "delete_api", ApiId=res.arn) else None
    if kind == "function":
        return ("functions", res.name) if api.delete(res, "lambda", "delete_function", FunctionName=res.name) else None
    if kind in ("training_job", "transform_job", "tuning_job"):
        if _stop_job(api, res):
            return "jobs", res.name  # stays in the ledger until it has stopped
        if kind == "tuning_job" and _job_status(api, res) != "gone":
            deleted = api.delete(
                res, "sagemaker", "delete_hyper_parameter_tuning_job", HyperParameterTuningJobName=res.name
            )
            return ("tuning_jobs", res.name) if deleted else None
        api.ledger.deleted(res)
        return None
    if kind == "endpoint":
        return (
            ("endpoints", res.name) if api.delete(res, "sagemaker", "delete_endpoint", EndpointName=res.name) else None
        )
    if kind == "endpoint_config":
        done = api.delete(res, "sagemaker", "delete_endpoint_config", EndpointConfigName=res.name)
        return ("endpoint_configs", res.name) if done else None
    if kind == "model":
        return ("models", res.name) if api.delete(res, "sagemaker", "delete_model", ModelName=res.name) else None
    if kind == "role_policy":
        done = api.delete(res, "iam", "delete_role_policy", RoleName=res.extra["role"], PolicyName=res.extra["policy"])
        return ("role_policies", res.name) if done else None
    if kind == "role":
        return ("roles", res.name) if api.delete(res, "iam", "delete_role", RoleName=res.name) else None
    if kind == "s3_prefix":
        if not delete_data:
            return None
        count = _empty_prefix(api, res.extra["bucket"], res.name)
        api.ledger.deleted(res)
        return "s3_objects", f"s3://{res.extra['bucket']}/{res.name} ({count} objects)"
    raise ValueError(f"unknown resource kind {kind!r} in the ledger")


DELETE_CALLS = {
    "s3_notification": ("s3", "put_bucket_notification_configuration", lambda r: {"Bucket": r.extra["bucket"],
                        "NotificationConfiguration": f"<the current configuration without {r.name}>"}),
    "api": ("apigatewayv2", "delete_api", lambda r: {"ApiId": r.arn}),
    "function": ("lambda", "delete_function", lambda r: {"FunctionName": r.name}),
    "training_job": ("sagemaker", "stop_training_job", lambda r: {"TrainingJobName": r.name}),
    "transform_job": ("sagemaker", "stop_transform_job", lambda r: {"TransformJobName": r.name}),
    "tuning_job": ("sagemaker", "delete_hyper_parameter_tuning_job", lambda r: {"HyperParameterTuningJobName": r.name}),
    "endpoint": ("sagemaker", "delete_endpoint", lambda r: {"EndpointName": r.name}),
    "endpoint_config": ("sagemaker", "delete_endpoint_config", lambda r: {"EndpointConfigName": r.name}),
    "model": ("sagemaker", "delete_model", lambda r: {"ModelName": r.name}),
    "role_policy": ("iam", "delete_role_policy", lambda r: {"RoleName": r.extra["role"],
                                                            "PolicyName": r.extra["policy"]}),
    "role": ("iam", "delete_role", lambda r: {"RoleName": r.name}),
    "s3_prefix": ("s3", "delete_objects", lambda r: {"Bucket": r.extra["bucket"], "Prefix": r.name}),
}  # fmt: skip


def plan(api: Api, resources: list[Resource], delete_data: bool = False) -> None:
    """Dry run: record the call that would remove each resource (jobs: stopped only if still running)."""
    for res in sorted(resources, key=lambda r: KINDS.index(r.kind)):
        if res.kind == "s3_prefix" and not delete_data:
            continue
        service, operation, params = DELETE_CALLS[res.kind]
        api.call(service, operation, **params(res))


def cleanup(api: Api, resources: list[Resource], delete_data: bool = False) -> tuple[dict[str, list], list[str]]:
    """Remove ``resources`` (from :meth:`Ledger.live`) in dependency order.

    Returns:
        ``({report key: [names]}, [errors])``; a failed delete is reported and the rest still attempted.
    """
    removed: dict[str, list] = {key: [] for key in REPORT_KEYS}
    errors: list[str] = []
    for res in sorted(resources, key=lambda r: KINDS.index(r.kind)):
        try:
            done = remove(api, res, delete_data)
        except AwsCallError as exc:
            errors.append(f"{res.kind} {res.name}: {exc}")
            continue
        if done:
            removed[done[0]].append(done[1])
    return removed, errors
