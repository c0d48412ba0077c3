"""SageMaker hyperparameter tuning jobs from a ``binsight tune`` YAML, and their results written as the
local tuner writes them (``trials.csv``, ``best.yaml``, ``summary.json``).

The search space maps one to one: ``lr`` and ``weight_decay`` become logarithmic continuous ranges,
``patience`` an integer range, every choice key (``batch_size``, ``freeze_backbone``, ``model``, ``loss``,
``augment``, ``img_size``) a categorical range; keys with one value and the rest of ``train:`` are static
hyperparameters. Objective: maximise ``val_macro_f1`` (the metric definition over the trainer's epoch log).
``trials`` → MaxNumberOfTrainingJobs, ``jobs`` → MaxParallelTrainingJobs, ``sampler`` tpe → Bayesian,
random → Random, ``pruner`` none → early stopping Off, any other → Auto (SageMaker's median rule, the
local default's counterpart).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from binsight.aws.api import Api
from binsight.aws.ledger import tags
from binsight.aws.session import Target
from binsight.aws.training import (
    JobOptions,
    framework_hyperparameters,
    hyperparameter_value,
    hyperparameters,
    input_channels,
    job_definition,
    upload_sourcedir,
)
from binsight.config.schemas import TuneConfig
from binsight.tuning.space import RANGE_KEYS, fixed_values, tuned_keys

STATES = {
    "Completed": "COMPLETE",
    "Stopped": "PRUNED",
    "Failed": "FAIL",
    "InProgress": "RUNNING",
    "Stopping": "RUNNING",
}
TERMINAL = ("Completed", "Failed", "Stopped")


def parameter_ranges(cfg: TuneConfig) -> dict[str, list[dict[str, Any]]]:
    ranges: dict[str, list[dict[str, Any]]] = {
        "ContinuousParameterRanges": [],
        "IntegerParameterRanges": [],
        "CategoricalParameterRanges": [],
    }
    for key in tuned_keys(cfg.space):
        values = getattr(cfg.space, key)
        kind = RANGE_KEYS.get(key)
        if kind == "log":
            ranges["ContinuousParameterRanges"].append(
                {"Name": key, "MinValue": str(values[0]), "MaxValue": str(values[1]), "ScalingType": "Logarithmic"}
            )
        elif kind == "int":
            ranges["IntegerParameterRanges"].append(
                {"Name": key, "MinValue": str(int(values[0])), "MaxValue": str(int(values[1])), "ScalingType": "Linear"}
            )
        else:
            ranges["CategoricalParameterRanges"].append(
                {"Name": key, "Values": [hyperparameter_value(v) for v in values]}
            )
    return {k: v for k, v in ranges.items() if v}


def tuning_request(
    cfg: TuneConfig, opts: JobOptions, target: Target, name: str, data_uri: str, sourcedir: str
) -> dict[str, Any]:
    """The ``create_hyper_parameter_tuning_job`` request.

    With spot, the training jobs share one checkpoint prefix; each keeps its run in a folder named after its
    own training job (no ``BINSIGHT_RUN_NAME``), so a restarted job resumes its own run and no other.
    """
    from binsight.tuning.space import apply_params

    static = hyperparameters(apply_params(cfg.train, cfg.space, {}), opts.max_runtime)
    for key in tuned_keys(cfg.space):
        static.pop(key, None)
    static.update({k: hyperparameter_value(v) for k, v in fixed_values(cfg.space).items()})
    static.update(framework_hyperparameters(sourcedir, target.region))
    definition = job_definition(opts, target, name)
    if not opts.spot:
        definition.pop("CheckpointConfig", None)  # on-demand trials are short; no restart to resume
    definition.update(
        StaticHyperParameters=static,
        InputDataConfig=input_channels(data_uri),
    )
    return {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobConfig": {
            "Strategy": "Bayesian" if cfg.sampler == "tpe" else "Random",
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "val_macro_f1"},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": cfg.trials, "MaxParallelTrainingJobs": cfg.jobs},
            "ParameterRanges": parameter_ranges(cfg),
            "TrainingJobEarlyStoppingType": "Off" if cfg.pruner == "none" else "Auto",
            "RandomSeed": cfg.sampler_seed,
        },
        "TrainingJobDefinition": definition,
        "Tags": tags(target.deployment),
    }


def start_tuning_job(
    api: Api, target: Target, cfg: TuneConfig, opts: JobOptions, data_uri: str, name: str
) -> dict[str, Any]:
    sourcedir = upload_sourcedir(api, target, name)
    request = tuning_request(cfg, opts, target, name, data_uri, sourcedir)
    api.create(
        "sagemaker",
        "create_hyper_parameter_tuning_job",
        "tuning_job",
        name,
        arn=lambda r: r["HyperParameterTuningJobArn"],
        **request,
    )
    return request


def list_trial_jobs(api: Api, name: str) -> list[dict[str, Any]]:
    """Every training job of the tuning job (all pages)."""
    jobs: list[dict[str, Any]] = []
    token = None
    while True:
        params: dict[str, Any] = {"HyperParameterTuningJobName": name, "MaxResults": 100}
        if token:
            params["NextToken"] = token
        page = api.call("sagemaker", "list_training_jobs_for_hyper_parameter_tuning_job", **params)
        jobs.extend(page.get("TrainingJobSummaries", []))
        token = page.get("NextToken")
        if not token:
            return jobs


def trial_rows(cfg: TuneConfig, jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows with the local ``trials.csv`` columns: trial, state, value, epochs, duration_s, parameters, note."""
    from binsight.config.loader import from_dict, to_dict
    from binsight.config.schemas import TrainConfig

    keys = tuned_keys(cfg.space)
    rows = []
    for number, job in enumerate(sorted(jobs, key=lambda j: str(j.get("CreationTime", "")))):
        tuned = {k.strip('"'): str(v).strip('"') for k, v in (job.get("TunedHyperParameters") or {}).items()}
        typed = to_dict(from_dict(TrainConfig, {k: v for k, v in tuned.items() if k in keys}))
        start, end = job.get("TrainingStartTime"), job.get("TrainingEndTime")
        duration = (end - start).total_seconds() if hasattr(end, "__sub__") and start else None
        metric = job.get("FinalHyperParameterTuningJobObjectiveMetric") or {}
        row = {
            "trial": number,
            "state": STATES.get(job.get("TrainingJobStatus", ""), job.get("TrainingJobStatus", "")),
            "value": metric.get("Value"),
            "epochs": None,
            "duration_s": round(duration, 1) if duration is not None else None,
        }
        row.update({k: typed.get(k) for k in keys})
        row["note"] = job.get("TrainingJobName", "") + (f"; {job['FailureReason']}" if job.get("FailureReason") else "")
        rows.append(row)
    return rows


def write_results(cfg: TuneConfig, name: str, jobs: list[dict[str, Any]], out: Path) -> dict[str, Any]:
    """``trials.csv``, ``best.yaml`` (the whole training config of the best job) and ``summary.json``."""
    from binsight.config.loader import dump_yaml
    from binsight.tuning.space import apply_params
    from binsight.utils.io import atomic_write_json, atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    rows = trial_rows(cfg, jobs)
    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    atomic_write_text(out / "trials.csv", buf.getvalue())
    scored = [r for r in rows if r["value"] is not None]
    summary: dict[str, Any] = {"tuning_job": name, "trials": len(rows), "best": None}
    if scored:
        best = max(scored, key=lambda r: r["value"])
        params = {k: best[k] for k in tuned_keys(cfg.space)}
        train = apply_params(cfg.train, cfg.space, params, name=f"{cfg.name}-best")
        header = (
            f"# best training job {best['note'].split(';')[0]} of tuning job {name}: "
            f"validation macro-F1 {best['value']:.4f}\n# train it with: binsight train --config best.yaml\n"
        )
        atomic_write_text(out / "best.yaml", header + dump_yaml(train))
        summary["best"] = {"trial": best["trial"], "value": best["value"], "params": params, "job": best["note"]}
    atomic_write_json(out / "summary.json", summary)
    (out / "trials.json").write_text(json.dumps(jobs, indent=2, default=str))
    return summary
