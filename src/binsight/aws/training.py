"""SageMaker training jobs from a :class:`~binsight.config.schemas.TrainConfig`: the request, spot and
checkpoint rules, waiting with logs, and the download into a local run directory.

The job runs :func:`binsight.training.sagemaker.main` (vendored with the job, see :mod:`binsight.aws.package`)
on AWS's PyTorch training container. Hyperparameters are the resolved TrainConfig, so the same YAML and
``key=value`` overrides drive ``binsight train`` and ``binsight aws train``. With ``--instance-count N`` every
host gets the whole split (``FullyReplicated``) and the entry point starts data-parallel workers with a
static rendezvous at ``algo-1``. The trainer's own ``max_runtime`` is set a margin below SageMaker's
``MaxRuntimeInSeconds``, so a job that runs out of time saves a checkpoint and stops before SageMaker kills
it; the run directory lives in ``/opt/ml/checkpoints`` (synced to ``CheckpointConfig.S3Uri``), so a spot
restart, or ``binsight aws train --resume JOB`` after MaxRuntime, continues from the last epoch.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from binsight.aws.api import Api
from binsight.aws.errors import AwsCallError, AwsInputError
from binsight.aws.images import REGISTRIES, dlc_image
from binsight.aws.ledger import tags
from binsight.aws.logs import follow_job
from binsight.aws.package import TRAIN_ENTRY, build_sourcedir
from binsight.aws.prices import instance_seconds_cost, usd
from binsight.aws.session import Target, check_instance_type, check_role
from binsight.config.schemas import TrainConfig
from binsight.utils.io import extract_tar

CHECKPOINT_LOCAL = "/opt/ml/checkpoints"
LOG_GROUP = "/aws/sagemaker/TrainingJobs"
# Not hyperparameters: where the data and caches live inside the container is the entry point's business.
LOCAL_ONLY_KEYS = ("data", "cache_dir")
# Regexes over the trainer's per-epoch log line ("epoch 3/10  train_loss 1.2 acc 0.3 | val_loss … macro_f1 …").
METRIC_DEFINITIONS = [
    {"Name": "val_macro_f1", "Regex": r"epoch \d+/\d+ .*\| val_loss \S+ acc \S+ macro_f1 ([0-9.]+)"},
    {"Name": "val_loss", "Regex": r"epoch \d+/\d+ .*\| val_loss ([0-9.]+)"},
    {"Name": "val_acc", "Regex": r"epoch \d+/\d+ .*\| val_loss \S+ acc ([0-9.]+)"},
    {"Name": "train_loss", "Regex": r"epoch \d+/\d+ +train_loss ([0-9.]+)"},
]
TERMINAL = ("Completed", "Failed", "Stopped")


@dataclass(frozen=True)
class JobOptions:
    """Where and how a training job (or each job of a tuning job) runs."""

    role: str
    instance_type: str = "ml.m5.xlarge"
    instance_count: int = 1
    volume_gb: int = 30
    spot: bool = False
    max_runtime: int = 86400
    max_wait: int = 0  # with spot: 0 = 2 x max_runtime
    checkpoint_s3: str | None = None  # None = s3://bucket/prefix/deployment/checkpoints/RUN; "" = none
    image: str = ""

    @property
    def wait_limit(self) -> int:
        return self.max_wait or 2 * self.max_runtime


def validate_options(opts: JobOptions, region: str, what: str = "a training job") -> None:
    """Every rule SageMaker would enforce late (or never), checked before anything is created."""
    check_role(opts.role, what)
    check_instance_type(opts.instance_type, "training")
    if opts.instance_count < 1:
        raise AwsInputError(f"--instance-count must be >= 1, got {opts.instance_count}")
    if opts.max_runtime < 120:
        raise AwsInputError(f"--max-runtime must be at least 120 seconds, got {opts.max_runtime}")
    if opts.spot:
        if opts.checkpoint_s3 == "":
            raise AwsInputError(
                "--spot needs a checkpoint location: a spot job can be interrupted and must resume from "
                "checkpoints on S3; drop --no-checkpoint or pass --checkpoint-s3 s3://BUCKET/PREFIX"
            )
        if opts.wait_limit < opts.max_runtime:
            raise AwsInputError(
                f"--max-wait ({opts.max_wait} s) must be >= --max-runtime ({opts.max_runtime} s): it is the "
                "whole time SageMaker may take, waiting for spot capacity included"
            )
    elif opts.max_wait:
        raise AwsInputError("--max-wait only applies to managed spot training (--spot)")
    if opts.checkpoint_s3 and not opts.checkpoint_s3.startswith("s3://"):
        raise AwsInputError(f"--checkpoint-s3 must be an s3:// URI, got {opts.checkpoint_s3!r}")
    if not opts.image and region not in REGISTRIES:
        raise AwsInputError(
            f"no pinned PyTorch container image for region {region}: pass --image URI "
            f"(pinned regions: {', '.join(sorted(REGISTRIES))})"
        )


def trainer_budget(max_runtime: int, configured: float = 0.0) -> float:
    """The trainer's ``max_runtime``: 5% (at least 5 min, at most 20 min) below SageMaker's limit, so the
    checkpoint is written and synced before SageMaker stops the job; a smaller configured value wins."""
    margin = min(1200.0, max(300.0, 0.05 * max_runtime))
    budget = max(60.0, max_runtime - margin)
    return min(budget, configured) if configured > 0 else budget


def hyperparameter_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def hyperparameters(cfg: TrainConfig, max_runtime: int) -> dict[str, str]:
    """The resolved TrainConfig as SageMaker hyperparameters (keys as in ``binsight train``)."""
    from binsight.config.loader import to_dict

    values = {k: v for k, v in to_dict(cfg).items() if k not in LOCAL_ONLY_KEYS}
    values["max_runtime"] = trainer_budget(max_runtime, cfg.max_runtime)
    return {k: hyperparameter_value(v) for k, v in values.items()}


def framework_hyperparameters(sourcedir_uri: str, region: str) -> dict[str, str]:
    """What AWS's training toolkit reads to fetch and run the entry point."""
    return {
        "sagemaker_program": TRAIN_ENTRY,
        "sagemaker_submit_directory": sourcedir_uri,
        "sagemaker_region": region,
        "sagemaker_container_log_level": "20",
    }


def checkpoint_uri(opts: JobOptions, target: Target, run_name: str) -> str:
    if opts.checkpoint_s3 is None:
        return target.uri("checkpoints", run_name)
    return opts.checkpoint_s3.rstrip("/") + ("/" + run_name if opts.checkpoint_s3 else "")


def job_definition(opts: JobOptions, target: Target, run_name: str) -> dict[str, Any]:
    """The parts of a training job shared by a single job and a tuning job's training job definition."""
    image = opts.image or dlc_image(target.region, "training", opts.instance_type)
    definition: dict[str, Any] = {
        "AlgorithmSpecification": {
            "TrainingImage": image,
            "TrainingInputMode": "File",
            "MetricDefinitions": METRIC_DEFINITIONS,
        },
        "RoleArn": opts.role,
        "OutputDataConfig": {"S3OutputPath": target.uri("output")},
        "ResourceConfig": {
            "InstanceType": opts.instance_type,
            "InstanceCount": opts.instance_count,
            "VolumeSizeInGB": opts.volume_gb,
        },
        "StoppingCondition": {"MaxRuntimeInSeconds": opts.max_runtime},
        "EnableManagedSpotTraining": opts.spot,
    }
    if opts.spot:
        definition["StoppingCondition"]["MaxWaitTimeInSeconds"] = opts.wait_limit
    ckpt = checkpoint_uri(opts, target, run_name)
    if ckpt:
        definition["CheckpointConfig"] = {"S3Uri": ckpt, "LocalPath": CHECKPOINT_LOCAL}
    return definition


def input_channels(data_uri: str) -> list[dict[str, Any]]:
    """One ``train`` channel holding a whole split folder (train.csv, val.csv, test.csv, images/)."""
    return [
        {
            "ChannelName": "train",
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": data_uri.rstrip("/") + "/",
                    "S3DataDistributionType": "FullyReplicated",
                }
            },
            "InputMode": "File",
        }
    ]


def upload_sourcedir(api: Api, target: Target, name: str) -> str:
    """Build and upload ``sourcedir.tar.gz``; returns its S3 URI."""
    key = target.key("code", name, "sourcedir.tar.gz")
    with tempfile.TemporaryDirectory(prefix="binsight-aws-") as tmp:
        body = build_sourcedir(Path(tmp) / "sourcedir.tar.gz").read_bytes()
    record_prefix(api, target)
    api.call("s3", "put_object", Bucket=target.bucket, Key=key, Body=body)
    return f"s3://{target.bucket}/{key}"


def record_prefix(api: Api, target: Target) -> None:
    """Ledger the deployment's S3 prefix once, so ``cleanup --delete-data`` knows what to empty."""
    if api.dry_run or any(r.kind == "s3_prefix" for r in api.ledger.live(api.deployment)):
        return
    from binsight.aws.ledger import Resource

    api.ledger.created(
        Resource(api.deployment, "s3_prefix", target.key() + "/", api.region, extra={"bucket": target.bucket})
    )


def start_training_job(
    api: Api,
    target: Target,
    cfg: TrainConfig,
    opts: JobOptions,
    data_uri: str,
    job_name: str,
    run_name: str,
) -> dict[str, Any]:
    """Upload the code and create the training job; returns the request that was sent."""
    sourcedir = upload_sourcedir(api, target, job_name)
    request = {
        "TrainingJobName": job_name,
        "HyperParameters": {
            **hyperparameters(cfg, opts.max_runtime),
            **framework_hyperparameters(sourcedir, api.region),
        },
        "InputDataConfig": input_channels(data_uri),
        "Environment": {"BINSIGHT_RUN_NAME": run_name},
        "Tags": tags(api.deployment),
        **job_definition(opts, target, run_name),
    }
    api.create(
        "sagemaker", "create_training_job", "training_job", job_name, arn=lambda r: r["TrainingJobArn"], **request
    )
    return request


def resume_request(api: Api, old_job: str, new_job: str) -> dict[str, Any]:
    """A new job continuing ``old_job``'s run: same code, data, hyperparameters and checkpoint location."""
    old = api.call("sagemaker", "describe_training_job", TrainingJobName=old_job)
    if not old.get("CheckpointConfig"):
        raise AwsInputError(f"{old_job} has no CheckpointConfig: there is nothing on S3 to resume from")
    spec = old["AlgorithmSpecification"]
    request = {
        "TrainingJobName": new_job,
        "HyperParameters": old["HyperParameters"],
        "AlgorithmSpecification": {
            "TrainingImage": spec["TrainingImage"],
            "TrainingInputMode": spec["TrainingInputMode"],
            "MetricDefinitions": METRIC_DEFINITIONS,
        },
        "RoleArn": old["RoleArn"],
        "InputDataConfig": old["InputDataConfig"],
        "OutputDataConfig": old["OutputDataConfig"],
        "ResourceConfig": old["ResourceConfig"],
        "StoppingCondition": old["StoppingCondition"],
        "EnableManagedSpotTraining": bool(old.get("EnableManagedSpotTraining")),
        "CheckpointConfig": old["CheckpointConfig"],
        "Environment": old.get("Environment") or {"BINSIGHT_RUN_NAME": old_job},
        "Tags": tags(api.deployment),
    }
    api.create(
        "sagemaker", "create_training_job", "training_job", new_job, arn=lambda r: r["TrainingJobArn"], **request
    )
    return request


def wait_training_job(api: Api, job_name: str, *, logs: bool = True, interval: float = 15.0) -> dict[str, Any]:
    """Wait for the job to end with a live status line and its CloudWatch logs; returns the last describe."""
    return follow_job(
        api,
        f"training job {job_name}",
        lambda: api.call("sagemaker", "describe_training_job", TrainingJobName=job_name),
        "TrainingJobStatus",
        TERMINAL,
        detail_key="SecondaryStatus",
        log_group=LOG_GROUP if logs else None,
        log_prefix=f"{job_name}/",
        interval=interval,
    )


def job_costs(desc: dict[str, Any]) -> dict[str, Any]:
    """Training vs billable seconds, the spot saving and the cost at the pinned list price."""
    resources = desc.get("ResourceConfig", {})
    itype, count = resources.get("InstanceType", ""), int(resources.get("InstanceCount", 1))
    training = desc.get("TrainingTimeInSeconds")
    if training is None and desc.get("TrainingStartTime") and desc.get("TrainingEndTime"):
        training = int((desc["TrainingEndTime"] - desc["TrainingStartTime"]).total_seconds())
    billable = desc.get("BillableTimeInSeconds", training)
    out: dict[str, Any] = {
        "status": desc.get("TrainingJobStatus"),
        "reason": desc.get("FailureReason", ""),
        "instance_type": itype,
        "instance_count": count,
        "training_seconds": training,
        "billable_seconds": billable,
    }
    if billable is not None:
        out["cost_usd"] = round(instance_seconds_cost(itype, float(billable), count), 4)
    if training and billable is not None:
        out["spot_saving"] = round(1 - float(billable) / float(training), 3)
    return out


def describe_costs(costs: dict[str, Any]) -> str:
    parts = [f"status {costs['status']}"]
    if costs.get("training_seconds") is not None:
        parts.append(f"training {costs['training_seconds']} s, billable {costs['billable_seconds']} s")
    if "cost_usd" in costs:
        n = costs["instance_count"]
        parts.append(f"cost {usd(costs['cost_usd'])} ({n} x {costs['instance_type']} at list price)")
    if costs.get("spot_saving"):
        parts.append(f"spot saving {costs['spot_saving']:.0%}")
    if costs.get("reason"):
        parts.append(costs["reason"])
    return "; ".join(parts)


def split_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://"):
        raise AwsInputError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    return bucket, key


def download_run(api: Api, desc: dict[str, Any], out_dir: Path, local_data: str = "") -> Path:
    """Fetch ``model.tar.gz`` (and ``output.tar.gz``: metrics, config, plots) into a binsight run directory:
    ``artifact/`` + ``config.yaml`` + ``metrics.csv``, which evaluate, predict, serve and export accept."""
    model_uri = desc["ModelArtifacts"]["S3ModelArtifacts"]
    out_dir.mkdir(parents=True, exist_ok=True)
    for uri, folder in (
        (model_uri, out_dir / "artifact"),
        (model_uri[: -len("model.tar.gz")] + "output.tar.gz", out_dir),
    ):
        bucket, key = split_s3_uri(uri)
        try:
            body = api.call("s3", "get_object", Bucket=bucket, Key=key)["Body"].read()
        except AwsCallError as exc:
            if folder == out_dir and exc.code in ("NoSuchKey", "404"):
                continue  # no output.tar.gz: the artifact alone is still a usable run directory
            raise
        archive = out_dir / Path(key).name
        archive.write_bytes(body)
        extract_tar(archive, folder)
    config = out_dir / "config.yaml"
    if local_data and config.is_file():
        from binsight.config.loader import dump_yaml, read_yaml

        values = read_yaml(config)
        values["data"] = local_data
        config.write_text(dump_yaml(values))
    (out_dir / "aws_job.json").write_text(
        json.dumps({"job": desc.get("TrainingJobName"), **job_costs(desc), "model": model_uri}, indent=2, default=str)
    )
    return out_dir


def job_name(deployment: str, name: str, when: float | None = None) -> str:
    """``bs-<deployment>-<name>-<YYmmdd-HHMMSS>``, at most 63 characters, valid for SageMaker."""
    import re

    stamp = time.strftime("%y%m%d-%H%M%S", time.gmtime(when or time.time()))
    base = re.sub(r"[^a-zA-Z0-9-]", "-", f"bs-{deployment}-{name}")[: 63 - len(stamp) - 1].strip("-")
    return f"{base}-{stamp}"
