"""``binsight aws``: the local commands' configs as SageMaker jobs, a SageMaker endpoint and a Lambda gateway.

Every command that creates something prints its plan and asks (or needs ``--yes``); ``--dry-run`` prints every
API call with its parameters and the estimated cost and creates nothing (no credentials needed). Everything
created is tagged ``binsight:deployment=NAME`` and written to the ledger as it is created, so
``binsight aws cleanup`` removes it, also after a half-failed deploy. Details: docs/aws.md.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from binsight.cli.common import add_config_args

DEFAULT_PREFIX = "binsight"


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "aws",
        help="run training, tuning, an endpoint and the gateway on AWS (SageMaker, Lambda); clean up",
        description="The same configs as the local commands, on AWS: upload a split, a training job, a tuning "
        "job, an endpoint, the Lambda gateway, a batch audit, status and clean-up. Region, credentials: the "
        "standard AWS chain or --region. Nothing is created without --yes or a confirmation; --dry-run prints "
        "every call and the estimated cost. See docs/aws.md.",
    )
    cmds = parser.add_subparsers(dest="aws_command", metavar="COMMAND", required=True)

    p = cmds.add_parser("upload", help="upload a local split folder as a training channel")
    _common(p)
    p.add_argument("--data", type=Path, required=True, help="split folder (train.csv, val.csv, test.csv)")
    p.set_defaults(func=handle_upload)

    p = cmds.add_parser(
        "train",
        help="a SageMaker training job from a training config (the config of `binsight train`)",
        description="Create a training job on AWS's PyTorch container running binsight's SageMaker entry point "
        "with the resolved training config as hyperparameters; wait with a status line and the job's logs; "
        "download model.tar.gz into a run directory that evaluate, predict, serve and export accept.",
    )
    _common(p)
    add_config_args(p)
    _job_options(p)
    p.add_argument("--data", help="a local split folder (uploaded first) or the s3:// URI of an uploaded one")
    p.add_argument("--resume", metavar="JOB", help="continue a stopped job's run (same data, config, checkpoints)")
    p.add_argument("--attach", metavar="JOB", help="create nothing: wait for JOB (e.g. after --no-wait) and download")
    p.add_argument("--out", type=Path, default=Path("runs/aws"), help="where the run directory goes (runs/aws)")
    _wait_options(p)
    p.set_defaults(func=handle_train)

    p = cmds.add_parser(
        "tune",
        help="a SageMaker tuning job from a tune config (the config of `binsight tune`)",
        description="Map the YAML's search space to a hyperparameter tuning job (objective val_macro_f1, "
        "trials = max jobs, jobs = max parallel jobs, early stopping unless pruner=none); when it ends, write "
        "trials.csv, best.yaml and summary.json as `binsight tune` does.",
    )
    _common(p)
    add_config_args(p, default_config="configs/tune-report.yaml")
    _job_options(p)
    p.add_argument("--data", help="a local split folder (uploaded first) or the s3:// URI of an uploaded one")
    p.add_argument("--out", type=Path, default=Path("runs/aws-tune"), help="results folder root (runs/aws-tune)")
    _wait_options(p)
    p.set_defaults(func=handle_tune)

    p = cmds.add_parser(
        "deploy",
        help="a SageMaker real-time endpoint for a run (again: blue/green update)",
        description="Package the run's artifact with the inference entry, create model, endpoint config and "
        "endpoint binsight-DEPLOYMENT, wait for InService and send a smoke image. If the endpoint exists, "
        "the new config replaces the old one with UpdateEndpoint (blue/green) and the old ones are deleted.",
    )
    _common(p)
    p.add_argument("--model", type=Path, required=True, help="run directory or artifact folder")
    p.add_argument("--role", default="", help="SageMaker execution role ARN (or BINSIGHT_AWS_ROLE)")
    p.add_argument("--instance-type", default="ml.m5.large", help="hosting instance type (default ml.m5.large)")
    p.add_argument("--instance-count", type=int, default=1, help="instances behind the endpoint (default 1)")
    p.add_argument("--image", default="", help="container image URI (default: AWS's PyTorch inference image)")
    p.add_argument("--smoke", type=Path, help="an image to send once the endpoint is InService")
    p.add_argument("--expected-quantity", type=int, help="with --smoke: run the inventory check too")
    p.add_argument("--poll", type=float, default=20.0, help="seconds between status checks (default 20)")
    p.set_defaults(func=handle_deploy)

    p = cmds.add_parser(
        "gateway",
        help="the Lambda gateway for the deployment's endpoint, an HTTP API route and S3 events",
        description="Create a least-privilege role, the Lambda function from the `binsight gateway package` "
        "zip with BINSIGHT_SAGEMAKER_ENDPOINT set, an API Gateway HTTP API (POST /predict) and, with "
        "--s3-prefix, an ObjectCreated notification of the bucket.",
    )
    _common(p)
    p.add_argument("--zip", type=Path, help="the Lambda zip (default: build it now; pip needs the package index)")
    p.add_argument("--memory", type=int, default=512, help="Lambda memory in MB (default 512)")
    p.add_argument("--timeout", type=int, default=30, help="Lambda timeout in seconds (default 30)")
    p.add_argument("--s3-prefix", default="", help="notify the gateway of new objects under this key prefix")
    p.add_argument("--s3-suffix", default=".jpg", help="... whose key ends with this (default .jpg)")
    p.set_defaults(func=handle_gateway)

    p = cmds.add_parser(
        "audit",
        help="`binsight audit s3://…` on AWS: a Batch Transform job, collected into audit.csv/.json/.html",
        description="Predict every photo of an S3 prefix in ABID layout (--input s3://B/P: P/bin-images/*.jpg, "
        "P/metadata/<id>.json) with the deployment's latest model in a Batch Transform job (same inference "
        "entry as the endpoint; each prediction goes to OUTPUT/<photo>.out), wait for it, then join the "
        "predictions with the records and write audit.csv, audit.json and audit.html exactly as "
        "`binsight audit s3://B/P` does. --collect JOB does only the last step (after --no-wait, or again).",
    )
    _common(p)
    p.add_argument("--input", help="s3://bucket/prefix in ABID layout (bin-images/, metadata/): what is audited")
    p.add_argument("--collect", metavar="JOB", help="create nothing: wait for transform job JOB and collect it")
    p.add_argument("--output", default="", help="s3:// output prefix (default: the deployment's audits/JOB/)")
    p.add_argument("--instance-type", default="ml.m5.xlarge", help="instance type (default ml.m5.xlarge)")
    p.add_argument("--instance-count", type=int, default=1, help="instances (default 1)")
    p.add_argument("--out", type=Path, help="local audit folder (default runs/aws-audit/JOB); re-use it to resume")
    p.add_argument("--workers", type=int, default=8, help="threads reading photos, records, predictions (8)")
    _wait_options(p)
    p.set_defaults(func=handle_audit)

    p = cmds.add_parser("status", help="what the ledger holds, with each resource's state on AWS")
    _ledger_options(p)
    p.add_argument("--deployment", help="one deployment (default: all)")
    p.add_argument("--offline", action="store_true", help="print the ledger only; call nothing")
    p.set_defaults(func=handle_status)

    p = cmds.add_parser(
        "cleanup",
        help="delete everything binsight created on AWS (all deployments, or one)",
        description="Delete, in dependency order, the S3 notification, HTTP API, Lambda function, endpoint, "
        "endpoint configs, models, role policies and roles in the ledger; stop running jobs; with "
        "--delete-data also the deployment's S3 prefix. Idempotent; prints what it removed in the format of "
        "`binsight cleanup`.",
    )
    _ledger_options(p)
    p.add_argument("--deployment", help="one deployment (default: all)")
    p.add_argument("--delete-data", action="store_true", help="also delete the deployment's S3 prefix")
    p.add_argument(
        "--sweep",
        action="store_true",
        help="also find resources by their binsight:deployment tag in --region (the ledger lost or incomplete)",
    )
    p.add_argument("--region", help="with --sweep: the region to search (default: the standard chain)")
    p.add_argument("--bucket", help="with --sweep: also look for the gateway's notification on this bucket")
    p.add_argument("--dry-run", action="store_true", help="print the calls only")
    p.add_argument("--json", action="store_true", help="print what was removed as JSON")
    p.set_defaults(func=handle_cleanup)


def _ledger_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ledger", type=Path, help="ledger file (default $BINSIGHT_HOME/aws/ledger.jsonl)")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--region", help="AWS region (default: AWS_REGION / AWS_DEFAULT_REGION / profile)")
    p.add_argument("--bucket", help="S3 bucket in that region (or BINSIGHT_AWS_BUCKET)")
    p.add_argument("--prefix", default=DEFAULT_PREFIX, help=f"key prefix in the bucket (default {DEFAULT_PREFIX})")
    p.add_argument("--deployment", default="default", help="name grouping what is created (default 'default')")
    p.add_argument("--yes", "-y", action="store_true", help="create without asking")
    p.add_argument("--dry-run", action="store_true", help="print every call and the estimated cost; create nothing")
    _ledger_options(p)


def _job_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--role", default="", help="SageMaker execution role ARN (or BINSIGHT_AWS_ROLE)")
    p.add_argument("--instance-type", default="ml.m5.xlarge", help="training instance type (default ml.m5.xlarge)")
    p.add_argument("--instance-count", type=int, default=1, help="instances; N > 1 trains data-parallel (DDP)")
    p.add_argument("--volume-gb", type=int, default=30, help="EBS volume per instance in GB (default 30)")
    p.add_argument("--spot", action="store_true", help="managed spot training (checkpoints on S3, resumes)")
    p.add_argument("--max-runtime", type=int, default=86400, help="MaxRuntimeInSeconds (default 86400)")
    p.add_argument("--max-wait", type=int, default=0, help="MaxWaitTimeInSeconds with --spot (default 2 x runtime)")
    p.add_argument("--checkpoint-s3", help="checkpoint S3 prefix (default: the deployment's checkpoints/)")
    p.add_argument("--no-checkpoint", action="store_true", help="no CheckpointConfig (not with --spot)")
    p.add_argument("--image", default="", help="training image URI (default: AWS's PyTorch training image)")


def _wait_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-wait", action="store_true", help="return once the job is created")
    p.add_argument("--no-logs", action="store_true", help="do not stream the job's CloudWatch logs")
    p.add_argument("--poll", type=float, default=15.0, help="seconds between status checks (default 15)")


# -- plumbing --------------------------------------------------------------------------------------------------
def _target(args: argparse.Namespace):
    from binsight.aws.session import resolve_target

    return resolve_target(args.region, args.bucket, args.prefix, args.deployment)


def _api(args: argparse.Namespace, region: str, deployment: str, dry_run: bool):
    from binsight.aws.api import Api
    from binsight.aws.ledger import Ledger

    return Api(region=region, deployment=deployment, ledger=Ledger(args.ledger), dry_run=dry_run)


def _print_calls(calls: list, out=None) -> None:
    out = out or sys.stdout
    shown: dict[tuple[str, str], int] = {}
    for call in calls:
        key = (call.service, call.operation)
        shown[key] = shown.get(key, 0) + 1
        if shown[key] <= 3:
            print(call.render(), file=out)
    for (service, op), n in shown.items():
        if n > 3:
            print(f"... and {n - 3} more {service}.{op} calls", file=out)


def _create(args: argparse.Namespace, action: Callable[[Any, Any, str], Any], estimate: list[str]) -> Any:
    """Plan with a dry-run pass, print it with the cost estimate, confirm, then run ``action(api, target,
    account)`` for real (after the account, credentials and bucket checks). Returns its result."""
    from binsight.aws.errors import AwsInputError
    from binsight.aws.session import check_account

    target = _target(args)
    cost = "\n".join(["estimated cost (us-east-1 list prices):", *estimate])
    if args.dry_run or not args.yes:
        plan = _api(args, target.region, target.deployment, dry_run=True)
        action(plan, target, "<account>")
        if args.dry_run:
            _print_calls(plan.calls)
            print(f"{cost}\ndry run: {len(plan.calls)} calls, nothing created")
            return None
        print(f"binsight aws {args.aws_command} will create in {target.region} (deployment {target.deployment}):")
        for call in (c for c in plan.calls if c.creates):
            print(f"  {call.creates}: {call.service}.{call.operation}")
        print(cost)
        if not sys.stdin.isatty():
            raise AwsInputError("nothing created: add --yes to create these resources (or --dry-run to see every call)")
        if input("create them? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing created")
            return None
    else:
        print(cost)
    api = _api(args, target.region, target.deployment, dry_run=False)
    return action(api, target, check_account(api, target))


def _job_opts(args: argparse.Namespace):
    import os

    from binsight.aws.training import JobOptions

    checkpoint = "" if args.no_checkpoint else args.checkpoint_s3
    return JobOptions(
        role=args.role or os.environ.get("BINSIGHT_AWS_ROLE", ""),
        instance_type=args.instance_type,
        instance_count=args.instance_count,
        volume_gb=args.volume_gb,
        spot=args.spot,
        max_runtime=args.max_runtime,
        max_wait=args.max_wait,
        checkpoint_s3=checkpoint,
        image=args.image,
    )


def _job_estimate(opts, jobs: int = 1) -> list[str]:
    from binsight.aws.prices import instance_seconds_cost, usd

    most = instance_seconds_cost(opts.instance_type, opts.max_runtime, opts.instance_count) * jobs
    lines = [
        f"  at most {usd(most)} on demand: {jobs} job(s) x {opts.instance_count} x {opts.instance_type} for at most "
        f"{opts.max_runtime} s (billed per second of actual training)"
    ]
    if opts.spot:
        lines.append("  managed spot bills the spot price, typically 60-70% less (the report's spot job: 65%)")
    return lines


def _data_uri(api, target, data: str | None, name: str) -> str:
    from binsight.aws.errors import AwsInputError
    from binsight.aws.upload import upload_split

    if not data:
        raise AwsInputError("--data is required: a local split folder or the s3:// URI of an uploaded split")
    if data.startswith("s3://"):
        return data
    return upload_split(api, target, Path(data), name)


def _check_data(data: str | None) -> None:
    from binsight.aws.errors import AwsInputError

    if not data:
        raise AwsInputError("--data is required: a local split folder or the s3:// URI of an uploaded split")
    if not data.startswith("s3://") and not (Path(data) / "train.csv").is_file():
        raise AwsInputError(f"--data {data}: not a split folder (no train.csv) and not an s3:// URI")


# -- commands --------------------------------------------------------------------------------------------------
def handle_upload(args: argparse.Namespace) -> int:
    from binsight.aws.upload import upload_split

    _check_data(str(args.data))
    result = _create(
        args,
        lambda api, t, _: upload_split(api, t, args.data, args.data.resolve().name),
        ["  S3 storage $0.023 per GB-month"],
    )
    if result:
        print(f"uploaded: {result}  (use it as --data)")
    return 0


def handle_train(args: argparse.Namespace) -> int:
    from binsight.aws.training import (
        describe_costs,
        download_run,
        job_costs,
        job_name,
        resume_request,
        start_training_job,
        validate_options,
        wait_training_job,
    )
    from binsight.cli.common import load_stage_config
    from binsight.config.schemas import TrainConfig

    target = _target(args)
    cfg = load_stage_config(TrainConfig, args)
    if args.attach:
        name = args.attach
    else:
        opts = _job_opts(args)
        if not args.resume:  # a resumed job reuses the old job's options
            validate_options(opts, target.region)
            _check_data(args.data)
        name = job_name(target.deployment, cfg.name)

        def action(api, t, _account):
            if args.resume:
                resume_request(api, args.resume, name)
            else:
                start_training_job(api, t, cfg, opts, _data_uri(api, t, args.data, cfg.name), name, name)
            return name

        if _create(args, action, _job_estimate(opts)) is None:
            return 0
        print(f"training job {name} created")
        if args.no_wait:
            print(f"wait for it and download the model with: binsight aws train --attach {name} (same --region)")
            return 0
    api = _api(args, target.region, target.deployment, dry_run=False)
    desc = wait_training_job(api, name, logs=not args.no_logs, interval=args.poll)
    costs = job_costs(desc)
    print(describe_costs(costs))
    if desc.get("TrainingJobStatus") != "Completed":
        if desc.get("CheckpointConfig"):
            print(
                f"its checkpoints are on S3; continue the run with: binsight aws train --resume {name} --yes "
                f"--deployment {target.deployment} --bucket {target.bucket} --region {target.region}"
            )
        return 1
    local = args.data if args.data and not args.data.startswith("s3://") else ""
    run = download_run(api, desc, args.out / name, local_data=str(Path(local).resolve()) if local else "")
    print(f"run directory: {run}\n  binsight evaluate --run {run}" + ("" if local else " --data SPLIT"))
    return 0


def handle_tune(args: argparse.Namespace) -> int:
    import time

    from binsight.aws.session import check_instance_type
    from binsight.aws.training import validate_options
    from binsight.aws.tuning import TERMINAL, list_trial_jobs, start_tuning_job, write_results
    from binsight.cli.common import load_stage_config
    from binsight.config.schemas import TuneConfig

    target = _target(args)
    cfg = load_stage_config(TuneConfig, args)
    opts = _job_opts(args)
    validate_options(opts, target.region, "a tuning job")
    check_instance_type(opts.instance_type, "training")
    _check_data(args.data)
    name = f"bs-{target.deployment[:12]}-{time.strftime('%y%m%d%H%M%S', time.gmtime())}"

    def action(api, t, _account):
        start_tuning_job(api, t, cfg, opts, _data_uri(api, t, args.data, cfg.train.name), name)
        return name

    if _create(args, action, _job_estimate(opts, cfg.trials)) is None:
        return 0
    print(f"tuning job {name} created: {cfg.trials} training jobs, {cfg.jobs} at a time")
    if args.no_wait:
        return 0
    from binsight.aws.logs import StatusLine

    api = _api(args, target.region, target.deployment, dry_run=False)
    status = StatusLine(f"tuning job {name}")

    def show(desc: dict) -> None:
        counts = desc.get("TrainingJobStatusCounters", {})
        status.show(f"{desc.get('HyperParameterTuningJobStatus')}  " + " ".join(f"{k} {v}" for k, v in counts.items()))

    api.wait(
        lambda: api.call("sagemaker", "describe_hyper_parameter_tuning_job", HyperParameterTuningJobName=name),
        lambda d: d.get("HyperParameterTuningJobStatus") in TERMINAL,
        interval=args.poll,
        on_poll=show,
    )
    status.done()
    summary = write_results(cfg, name, list_trial_jobs(api, name), args.out / name)
    print(f"results: {args.out / name}/trials.csv, best.yaml; best: {summary['best']}")
    return 0


def handle_deploy(args: argparse.Namespace) -> int:
    import os

    from binsight.aws.endpoint import deploy, smoke
    from binsight.aws.prices import hourly, usd
    from binsight.aws.session import check_instance_type, check_role
    from binsight.inference.artifact import read_meta, resolve_artifact_dir

    role = args.role or os.environ.get("BINSIGHT_AWS_ROLE", "")
    check_role(role, "an endpoint")
    check_instance_type(args.instance_type, "hosting")
    read_meta(resolve_artifact_dir(args.model))
    if args.smoke is not None and not args.smoke.is_file():
        from binsight.aws.errors import AwsInputError

        raise AwsInputError(f"--smoke {args.smoke}: no such image file")

    def action(api, t, _account):
        names = deploy(
            api,
            t,
            args.model,
            role=role,
            instance_type=args.instance_type,
            instance_count=args.instance_count,
            image=args.image,
            interval=args.poll,
        )
        if args.smoke:
            names["smoke"] = smoke(api, names["endpoint"], args.smoke, args.expected_quantity)
        return names

    per_hour = hourly(args.instance_type) * args.instance_count
    estimate = [
        f"  {usd(per_hour)} per hour while it exists ({usd(per_hour * 24 * 30)} per 30 days): "
        f"{args.instance_count} x {args.instance_type}; delete it with binsight aws cleanup"
    ]
    names = _create(args, action, estimate)
    if names:
        print(f"endpoint {names['endpoint']} InService (config {names['endpoint_config']}, model {names['model']})")
        if "smoke" in names:
            import json

            print(f"smoke: {json.dumps(names['smoke'])}")
    return 0


def handle_gateway(args: argparse.Namespace) -> int:
    from binsight.aws.endpoint import endpoint_name
    from binsight.aws.errors import AwsInputError
    from binsight.aws.gateway import GatewayOptions, deploy_gateway
    from binsight.aws.prices import lambda_cost_per_million, usd

    if not 128 <= args.memory <= 10240 or not 1 <= args.timeout <= 900:
        raise AwsInputError("--memory must be 128-10240 MB and --timeout 1-900 s (Lambda's limits)")
    if args.zip is not None and not args.zip.is_file():
        raise AwsInputError(f"--zip {args.zip}: no such file (build it with `binsight gateway package`)")
    opts = GatewayOptions(args.memory, args.timeout, args.s3_prefix, args.s3_suffix)
    zip_bytes = _gateway_zip(args.zip)

    def action(api, t, account):
        return deploy_gateway(api, t, account, endpoint_name(t.deployment), zip_bytes, opts)

    estimate = [
        f"  {usd(lambda_cost_per_million(args.memory, 0.5))} per million requests (Lambda at {args.memory} MB, "
        "0.5 s each, + HTTP API); nothing while idle"
    ]
    out = _create(args, action, estimate)
    if out:
        print(
            f"gateway: function {out['function']}, POST {out['url']}"
            + (f", S3 notification {out['notification']}" if "notification" in out else "")
        )
    return 0


def _gateway_zip(path: Path | None) -> bytes:
    if path is not None:
        return path.read_bytes()
    import tempfile

    from binsight.gateway.package import build_lambda_zip

    with tempfile.TemporaryDirectory(prefix="binsight-aws-") as tmp:
        return build_lambda_zip(Path(tmp) / "gateway.zip").path.read_bytes()


def handle_audit(args: argparse.Namespace) -> int:
    import time

    from binsight.aws.errors import AwsInputError
    from binsight.aws.ledger import Ledger
    from binsight.aws.prices import hourly, usd
    from binsight.aws.session import check_instance_type, resolve_region
    from binsight.aws.transform import audit_prefixes, check_input, start_transform_job

    if bool(args.input) == bool(args.collect):
        raise AwsInputError("give exactly one of --input s3://BUCKET/PREFIX (a new job) or --collect JOB")
    if args.workers < 1:
        raise AwsInputError("--workers must be >= 1")
    if args.collect:
        if args.dry_run:
            raise AwsInputError("--collect creates nothing on AWS; --dry-run plans a new job (--input)")
        name = args.collect
    else:
        check_instance_type(args.instance_type, "hosting")
        _, images = audit_prefixes(args.input)
        if args.output and not args.output.startswith("s3://"):
            raise AwsInputError("--output must be an s3:// URI")
        models = [r for r in Ledger(args.ledger).live(args.deployment) if r.kind == "model"]
        if not models:
            raise AwsInputError(f"deployment {args.deployment!r} has no model: run binsight aws deploy first")
        name = f"binsight-{args.deployment}-audit-{time.strftime('%y%m%d-%H%M%S', time.gmtime())}"

        def action(api, t, _account):
            check_input(api, images)
            output = args.output or t.uri("audits", name) + "/"
            return start_transform_job(
                api,
                t,
                name,
                models[-1].name,
                images,
                output,
                instance_type=args.instance_type,
                instance_count=args.instance_count,
            )

        per_hour = hourly(args.instance_type) * args.instance_count
        request = _create(
            args, action, [f"  {usd(per_hour)} per hour of the job ({args.instance_count} x {args.instance_type})"]
        )
        if not request:
            return 0
        print(f"transform job {name} created; predictions go to {request['TransformOutput']['S3OutputPath']}")
        if args.no_wait:
            print(f"collect the audit when it ends with: binsight aws audit --collect {name} (same --region)")
            return 0
    return _collect_audit(args, resolve_region(args.region), name)


def _collect_audit(args: argparse.Namespace, region: str, name: str) -> int:
    from binsight.aws.transform import collect, wait_transform_job

    api = _api(args, region, args.deployment, dry_run=False)
    desc = wait_transform_job(api, name, logs=not args.no_logs, interval=args.poll)
    status = desc.get("TransformJobStatus")
    if status != "Completed":
        print(
            f"transform job {name} is {status}: {desc.get('FailureReason', 'no reason given')}; the photos it "
            "did not score are reported as unreadable",
            file=sys.stderr,
        )
    out = args.out or Path("runs") / "aws-audit" / name
    try:
        summary = collect(api, desc, out, workers=args.workers)["summary"]
    except KeyboardInterrupt:
        from binsight.errors import Interrupted

        raise Interrupted(
            f"collection interrupted; the predictions read so far are kept in {out / 'results.jsonl'}: continue "
            f"with binsight aws audit --collect {name} --out {out}"
        ) from None
    totals = ", ".join(f"{k} {v}" for k, v in sorted(summary["decisions"].items()))
    print(f"audited {summary['bins']} bins from {name}: {totals}", file=sys.stderr)
    print(f"report: {out / 'audit.html'}", file=sys.stderr)
    print(out)
    return 0 if status == "Completed" else 1


def handle_status(args: argparse.Namespace) -> int:
    from binsight.aws.ledger import Ledger

    resources = Ledger(args.ledger).live(args.deployment)
    if not resources:
        print("the ledger holds no live resources")
        return 0
    for res in resources:
        state = "" if args.offline else _state(args, res)
        print(f"{res.deployment:12s} {res.region:12s} {res.kind:16s} {res.name}  {state}".rstrip())
    return 0


def _state(args: argparse.Namespace, res) -> str:
    from binsight.aws.errors import AwsCallError

    ops = {
        "training_job": ("describe_training_job", "TrainingJobName", "TrainingJobStatus"),
        "tuning_job": (
            "describe_hyper_parameter_tuning_job",
            "HyperParameterTuningJobName",
            "HyperParameterTuningJobStatus",
        ),
        "transform_job": ("describe_transform_job", "TransformJobName", "TransformJobStatus"),
        "endpoint": ("describe_endpoint", "EndpointName", "EndpointStatus"),
    }
    if res.kind not in ops:
        return ""
    op, key, field = ops[res.kind]
    try:
        return str(_api(args, res.region, res.deployment, False).call("sagemaker", op, **{key: res.name}).get(field))
    except AwsCallError as exc:
        return f"({exc})"


def handle_cleanup(args: argparse.Namespace) -> int:
    from binsight.aws.cleanup import REPORT_KEYS, cleanup, plan
    from binsight.aws.ledger import Ledger
    from binsight.cli.cleanup import print_removed

    resources = Ledger(args.ledger).live(args.deployment)
    if args.sweep:
        from binsight.aws.discover import tagged
        from binsight.aws.session import resolve_region

        region = resolve_region(args.region)
        known = {r.key for r in resources}
        search = _api(args, region, args.deployment or "", dry_run=False)
        resources += [r for r in tagged(search, args.deployment, args.bucket or "") if r.key not in known]
    removed: dict[str, list] = {key: [] for key in REPORT_KEYS}
    errors: list[str] = []
    calls = []
    for region in sorted({r.region for r in resources}):
        api = _api(args, region, args.deployment or "", dry_run=args.dry_run)
        mine = [r for r in resources if r.region == region]
        if args.dry_run:
            plan(api, mine, delete_data=args.delete_data)
            calls.extend(api.calls)
            continue
        part, errs = cleanup(api, mine, delete_data=args.delete_data)
        for key, names in part.items():
            removed[key].extend(names)
        errors.extend(errs)
        calls.extend(api.calls)
    if args.dry_run:
        _print_calls(calls)
        print(f"dry run: {len(calls)} calls, nothing deleted")
        return 0
    print_removed(removed, args.json)
    for err in errors:
        print(f"binsight: error: {err}", file=sys.stderr)
    if errors:
        print("binsight: the failed resources stay in the ledger; run binsight aws cleanup again", file=sys.stderr)
    return 1 if errors else 0
