"""``binsight aws`` against moto's real AWS server on loopback (S3, SageMaker, Lambda, IAM, API Gateway, logs).

moto records what each API received but runs no container, so the test plays the containers itself, in
SageMaker's directory layout: the training entry point runs on the channel the service was given with the
hyperparameters it received, and the inference entry runs inside the unpacked ``model.tar.gz``.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import tarfile
import time
import urllib.request
import zipfile
from pathlib import Path

import boto3
import pytest

from binsight.aws.ledger import TAG_KEY, Ledger, Resource
from binsight.aws.training import METRIC_DEFINITIONS
from binsight.cli.main import main as cli_main
from binsight.utils.io import extract_tar
from tests.conftest import cli_env
from tests.integration.gateway_servers import moto_s3

REGION = "us-east-1"
BUCKET = "binsight-test"
ROLE = "arn:aws:iam::123456789012:role/sagemaker-exec"
TRAIN_OVERRIDES = [
    "model=tiny_cnn", "weights=none", "freeze_backbone=false", "img_size=32", "batch_size=4", "epochs=1",
    "augment=none", "patience=0",
]  # fmt: skip


@pytest.fixture(scope="module")
def moto_url():
    with moto_s3() as url:
        yield url


@pytest.fixture
def aws(moto_url, tmp_path, monkeypatch):
    """Fresh moto state, dummy credentials, moto as every client's endpoint, a bucket; yields client factory."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST")).read()
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE", "AWS_REGION"):
        monkeypatch.delenv(key, raising=False)
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": str(tmp_path / "none"),
        "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ENDPOINT_URL": moto_url,
        "BINSIGHT_HOME": str(tmp_path / "home"),
        "BINSIGHT_NO_PROGRESS": "1",
        "BINSIGHT_CACHE_DIR": str(tmp_path / "cache"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)

    def client(service: str, region: str = REGION):
        return boto3.client(service, region_name=region, endpoint_url=moto_url)

    client("s3").create_bucket(Bucket=BUCKET)
    client.url = moto_url
    return client


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli_main(["aws", *argv])
    logging.getLogger().handlers.clear()  # main() logs to the stderr capsys is about to close
    out = capsys.readouterr()
    return code, out.out, out.err


def common(deployment: str = "demo") -> list[str]:
    return ["--region", REGION, "--bucket", BUCKET, "--deployment", deployment]


def s3_download_prefix(s3, uri: str, dest: Path) -> Path:
    bucket, _, prefix = uri[5:].partition("/")
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            target = dest / obj["Key"][len(prefix) :].lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            s3.download_file(bucket, obj["Key"], str(target))
    return dest


def play_training_container(aws, job: dict, root: Path) -> subprocess.CompletedProcess:
    """What SageMaker does with the job: channel → /opt/ml/input/data/train, hyperparameters (minus the
    toolkit's sagemaker_*) → arguments of the entry point, then model/ and output/ → tarballs on S3."""
    s3 = aws("s3")
    channel = job["InputDataConfig"][0]["DataSource"]["S3DataSource"]["S3Uri"]
    train_dir = s3_download_prefix(s3, channel, root / "input" / "data" / "train")
    args = []
    for key, value in job["HyperParameters"].items():
        if not key.startswith("sagemaker_"):
            args += [f"--{key}", value]
    (root / "checkpoints").mkdir(parents=True)
    env = cli_env(
        SM_HOSTS='["algo-1"]',
        SM_CURRENT_HOST="algo-1",
        SM_NUM_GPUS="0",
        SM_CHANNEL_TRAIN=str(train_dir),
        SM_MODEL_DIR=str(root / "model"),
        SM_OUTPUT_DATA_DIR=str(root / "output" / "data"),
        BINSIGHT_SM_CHECKPOINT_DIR=str(root / "checkpoints"),
        TRAINING_JOB_NAME=job["TrainingJobName"],
        BINSIGHT_CACHE_DIR=os.environ["BINSIGHT_CACHE_DIR"],
    )
    code = "from binsight.training.sagemaker import main; raise SystemExit(main())"
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    bucket, _, key = job["ModelArtifacts"]["S3ModelArtifacts"][5:].partition("/")
    for folder, name in ((root / "model", "model.tar.gz"), (root / "output" / "data", "output.tar.gz")):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for f in sorted(folder.iterdir()):
                tar.add(f, arcname=f.name)
        s3.put_object(Bucket=bucket, Key=key[: -len("model.tar.gz")] + name, Body=buf.getvalue())
    return done


def play_inference_container(model_tar: bytes, root: Path, body: bytes, content_type: str) -> dict:
    """AWS's PyTorch inference toolkit: model.tar.gz → /opt/ml/model, code/ on sys.path, the four handlers."""
    model_dir = root / "opt" / "ml" / "model"
    model_dir.mkdir(parents=True)
    archive = root / "model.tar.gz"
    archive.write_bytes(model_tar)
    extract_tar(archive, model_dir)  # as the container unpacks it (checked members; any Python 3.11)
    script = root / "toolkit.py"
    script.write_text(
        "import sys, inference\n"
        "m = inference.model_fn(sys.argv[1])\n"
        "data = inference.input_fn(open(sys.argv[2], 'rb').read(), sys.argv[3])\n"
        "print(inference.output_fn(inference.predict_fn(data, m), 'application/json'))\n"
    )
    (root / "body").write_bytes(body)
    env = dict(os.environ, PYTHONPATH=str(model_dir / "code"))  # the vendored code, not this checkout's
    cmd = [sys.executable, str(script), str(model_dir), str(root / "body"), content_type]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120, cwd=root)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def tar_names(data: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getnames()


def binsight_made(aws) -> dict[str, list]:
    """Everything on the (moto) account that binsight made and that would still cost or act."""
    sm, lam, apigw, iam, s3 = aws("sagemaker"), aws("lambda"), aws("apigatewayv2"), aws("iam"), aws("s3")
    notifications = s3.get_bucket_notification_configuration(Bucket=BUCKET).get("LambdaFunctionConfigurations", [])
    return {
        "endpoints": [e["EndpointName"] for e in sm.list_endpoints()["Endpoints"]],
        "endpoint_configs": [c["EndpointConfigName"] for c in sm.list_endpoint_configs()["EndpointConfigs"]],
        "models": [m["ModelName"] for m in sm.list_models()["Models"]],
        "tuning_jobs": [
            j["HyperParameterTuningJobName"]
            for j in sm.list_hyper_parameter_tuning_jobs()["HyperParameterTuningJobSummaries"]
        ],
        "running_jobs": [
            j["TrainingJobName"] for j in sm.list_training_jobs()["TrainingJobSummaries"]
            if j["TrainingJobStatus"] in ("InProgress", "Stopping")
        ],
        "functions": [f["FunctionName"] for f in lam.list_functions()["Functions"]],
        "apis": [a["Name"] for a in apigw.get_apis()["Items"]],
        "roles": [r["RoleName"] for r in iam.list_roles(PathPrefix="/binsight/")["Roles"]],
        "notifications": [n["Id"] for n in notifications],
    }  # fmt: skip


def test_train_tune_deploy_gateway_audit_cleanup(aws, capsys, tmp_path, split):
    sm, s3, iam, lam, apigw = aws("sagemaker"), aws("s3"), aws("iam"), aws("lambda"), aws("apigatewayv2")

    # -- training job: spot, 2 instances, the local training config's keys as hyperparameters --------------
    code, out, err = run(
        capsys, "train", *common(), "--role", ROLE, "--data", str(split), "--spot", "--instance-count", "2",
        "--max-runtime", "3600", "--yes", "--no-wait", *TRAIN_OVERRIDES,
    )  # fmt: skip
    assert code == 0, err
    job_name = out.split("training job ")[1].split()[0]
    job = sm.describe_training_job(TrainingJobName=job_name)
    assert job["EnableManagedSpotTraining"] is True
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200}
    assert job["CheckpointConfig"] == {
        "S3Uri": f"s3://{BUCKET}/binsight/demo/checkpoints/{job_name}",
        "LocalPath": "/opt/ml/checkpoints",
    }
    assert job["ResourceConfig"] == {"InstanceType": "ml.m5.xlarge", "InstanceCount": 2, "VolumeSizeInGB": 30}
    hp = job["HyperParameters"]
    assert (hp["model"], hp["img_size"], hp["epochs"], hp["patience"]) == ("tiny_cnn", "32", "1", "0")
    assert float(hp["max_runtime"]) == 3300.0  # the trainer stops (with a checkpoint) 5 min before SageMaker would
    assert hp["sagemaker_program"] == "train_entry.py" and "data" not in hp
    assert job["AlgorithmSpecification"]["TrainingImage"] == (
        "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5.1-cpu-py311-ubuntu22.04-sagemaker"
    )
    channel = job["InputDataConfig"][0]
    assert channel["ChannelName"] == "train"
    assert channel["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{BUCKET}/binsight/demo/data/exp/"
    assert channel["DataSource"]["S3DataSource"]["S3DataDistributionType"] == "FullyReplicated"
    tags = sm.list_tags(ResourceArn=job["TrainingJobArn"])["Tags"]
    assert {"Key": TAG_KEY, "Value": "demo"} in tags
    sourcedir = s3.get_object(Bucket=BUCKET, Key=f"binsight/demo/code/{job_name}/sourcedir.tar.gz")["Body"].read()
    names = tar_names(sourcedir)
    assert {"train_entry.py", "requirements.txt", "binsight/training/sagemaker.py"} <= set(names)

    # -- the container side, then --attach waits, reports the cost and downloads a usable run directory ----
    done = play_training_container(aws, job, tmp_path / "container")
    f1 = re.search(METRIC_DEFINITIONS[0]["Regex"], done.stderr)
    assert f1 and 0.0 <= float(f1.group(1)) <= 1.0, "val_macro_f1 metric regex does not match the trainer's log"
    logs = aws("logs")  # SageMaker writes the container's output to CloudWatch, one stream per host
    logs.create_log_group(logGroupName="/aws/sagemaker/TrainingJobs")
    stream = f"{job_name}/algo-1-1766600000"
    logs.create_log_stream(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=stream)
    lines = [line for line in done.stderr.splitlines() if line.strip()][-20:]
    now = int(time.time() * 1000)
    events = [{"timestamp": now + i, "message": line} for i, line in enumerate(lines)]
    logs.put_log_events(logGroupName="/aws/sagemaker/TrainingJobs", logStreamName=stream, logEvents=events)
    code, out, err = run(
        capsys, "train", *common(), "--attach", job_name, "--poll", "0.1", "--out", str(tmp_path / "runs")
    )
    assert code == 0, err
    assert "status Completed" in out and "cost $" in out
    assert f"training job {job_name}: Completed" in err  # the status line
    epoch_line = next(line for line in lines if f1.group(0) in line)
    assert f"[algo-1-1766600000] {epoch_line}" in out  # the job's log, streamed
    run_dir = tmp_path / "runs" / job_name
    assert (run_dir / "artifact" / "model.safetensors").is_file() and (run_dir / "metrics.csv").is_file()
    image = sorted((split.parent / "images").glob("*.png"))[0]
    assert cli_main(["predict", "--model", str(run_dir), str(image)]) == 0
    prediction = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert prediction["predicted_label"] in prediction["class_labels"]

    # -- resume a stopped run: same checkpoint location and run name in a new job ------------------------------
    code, out, err = run(capsys, "train", *common(), "--resume", job_name, "--yes", "--no-wait")
    assert code == 0, err
    resumed = sm.describe_training_job(TrainingJobName=out.split("training job ")[1].split()[0])
    assert resumed["CheckpointConfig"] == job["CheckpointConfig"] and resumed["HyperParameters"] == hp

    # -- tuning job: the report's space from configs/tune-report.yaml --------------------------------------------
    code, out, err = run(
        capsys, "tune", *common(), "--role", ROLE, "--data", f"s3://{BUCKET}/binsight/demo/data/exp/",
        "--yes", "--no-wait", "--config", "configs/tune-report.yaml", "jobs=2", "train.model=tiny_cnn",
    )  # fmt: skip
    assert code == 0, err
    tuning_name = out.split("tuning job ")[1].split()[0]
    tuning = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=tuning_name)
    config = tuning["HyperParameterTuningJobConfig"]
    assert config["HyperParameterTuningJobObjective"] == {"Type": "Maximize", "MetricName": "val_macro_f1"}
    assert config["ResourceLimits"] == {"MaxNumberOfTrainingJobs": 8, "MaxParallelTrainingJobs": 2}
    assert config["TrainingJobEarlyStoppingType"] == "Auto" and config["Strategy"] == "Bayesian"
    ranges = config["ParameterRanges"]
    assert {"Name": "lr", "MinValue": "1e-05", "MaxValue": "0.003", "ScalingType": "Logarithmic"} in ranges[
        "ContinuousParameterRanges"
    ]
    assert {"Name": "patience", "MinValue": "2", "MaxValue": "5", "ScalingType": "Linear"} in ranges[
        "IntegerParameterRanges"
    ]
    assert {"Name": "freeze_backbone", "Values": ["true", "false"]} in ranges["CategoricalParameterRanges"]
    static = tuning["TrainingJobDefinition"]["StaticHyperParameters"]
    assert static["model"] == "tiny_cnn" and "lr" not in static and "batch_size" not in static

    # -- endpoint: the uploaded model.tar.gz answers in SageMaker's layout; the smoke test goes through it ----
    code, out, err = run(capsys, "deploy", *common(), "--role", ROLE, "--model", str(run_dir), "--dry-run")
    assert code == 0 and "create_endpoint" in out
    from binsight.aws.package import build_model_tar

    tar_bytes = build_model_tar(run_dir, tmp_path / "model.tar.gz").read_bytes()
    answer = play_inference_container(tar_bytes, tmp_path / "serving", image.read_bytes(), "image/png")
    assert answer == {k: v for k, v in prediction.items() if k != "image"}  # binsight predict's answer
    body = json.dumps(
        {"image_b64": __import__("base64").b64encode(image.read_bytes()).decode(), "expected_quantity": 2}
    )
    checked = play_inference_container(tar_bytes, tmp_path / "serving2", body.encode(), "application/json")
    assert checked["check"]["expected_quantity"] == 2
    urllib.request.urlopen(
        urllib.request.Request(
            f"{aws.url}/moto-api/static/sagemaker/endpoint-results",
            data=json.dumps({"results": [{"Body": json.dumps(checked), "ContentType": "application/json"}]}).encode(),
            method="POST",
        )
    ).read()
    code, out, err = run(
        capsys, "deploy", *common(), "--role", ROLE, "--model", str(run_dir), "--smoke", str(image),
        "--expected-quantity", "2", "--yes", "--poll", "0.1",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out.split("smoke: ")[1].splitlines()[0]) == checked
    endpoint = sm.describe_endpoint(EndpointName="binsight-demo")
    assert endpoint["EndpointStatus"] == "InService"
    variant = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])["ProductionVariants"][0]
    assert (variant["InstanceType"], variant["InitialInstanceCount"]) == ("ml.m5.large", 1)
    model = sm.describe_model(ModelName=variant["ModelName"])
    model_key = model["PrimaryContainer"]["ModelDataUrl"][len(f"s3://{BUCKET}/") :]
    uploaded = s3.get_object(Bucket=BUCKET, Key=model_key)["Body"].read()
    assert "code/inference.py" in tar_names(uploaded)
    assert model["PrimaryContainer"]["Environment"]["SAGEMAKER_PROGRAM"] == "inference.py"

    # -- gateway: least-privilege role, function, HTTP API route, S3 notification ----------------------------------
    from binsight.gateway.package import build_lambda_zip

    gw_zip = build_lambda_zip(tmp_path / "gateway.zip", deps=False).path
    code, out, err = run(
        capsys, "gateway", *common(), "--zip", str(gw_zip), "--s3-prefix", "incoming/", "--memory", "256",
        "--timeout", "20", "--yes",
    )  # fmt: skip
    assert code == 0, err
    fn = lam.get_function_configuration(FunctionName="binsight-demo-gateway")
    assert fn["Environment"]["Variables"] == {"BINSIGHT_SAGEMAKER_ENDPOINT": "binsight-demo"}
    assert (fn["Timeout"], fn["MemorySize"], fn["Handler"]) == (20, 256, "binsight.gateway.handler.lambda_handler")
    policy = iam.get_role_policy(RoleName="binsight-demo-gateway", PolicyName="binsight-demo-gateway")["PolicyDocument"]
    allowed = {s["Sid"]: (s["Action"], s["Resource"]) for s in policy["Statement"]}
    assert allowed["InvokeEndpoint"] == (
        "sagemaker:InvokeEndpoint",
        "arn:aws:sagemaker:us-east-1:123456789012:endpoint/binsight-demo",
    )
    assert allowed["ReadBucket"] == ("s3:GetObject", f"arn:aws:s3:::{BUCKET}/*")
    assert set(allowed) == {"InvokeEndpoint", "ReadBucket", "CreateLogGroup", "WriteLogs"}
    assert all("*" not in str(a) for a, _ in allowed.values())  # no wildcard actions
    api = apigw.get_apis()["Items"][0]
    routes = apigw.get_routes(ApiId=api["ApiId"])["Items"]
    assert [r["RouteKey"] for r in routes] == ["POST /predict"]
    statements = json.loads(lam.get_policy(FunctionName="binsight-demo-gateway")["Policy"])["Statement"]
    assert {s["Principal"]["Service"] for s in statements} == {"apigateway.amazonaws.com", "s3.amazonaws.com"}
    notes = s3.get_bucket_notification_configuration(Bucket=BUCKET)["LambdaFunctionConfigurations"]
    assert notes[0]["Id"] == "binsight-demo" and notes[0]["Events"] == ["s3:ObjectCreated:*"]
    assert {"Name": "prefix", "Value": "incoming/"} in notes[0]["Filter"]["Key"]["FilterRules"]

    # -- audit: Batch Transform with the deployed model ------------------------------------------------------------
    code, out, err = run(capsys, "audit", *common(), "--input", f"s3://{BUCKET}/incoming/", "--yes")
    assert code == 2 and "no photos under s3://binsight-test/incoming/bin-images/" in err  # checked first
    s3.put_object(Bucket=BUCKET, Key="incoming/bin-images/a.png", Body=image.read_bytes())
    code, out, err = run(capsys, "audit", *common(), "--input", f"s3://{BUCKET}/incoming/", "--yes", "--no-wait")
    assert code == 0, err
    assert "binsight aws audit --collect" in out
    transform_name = out.split("transform job ")[1].split()[0]
    transform = sm.describe_transform_job(TransformJobName=transform_name)
    assert transform["ModelName"] == variant["ModelName"]
    assert transform["TransformInput"]["ContentType"] == "image/jpeg"
    assert transform["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{BUCKET}/incoming/bin-images/"

    # -- status, then cleanup: nothing binsight made is left; again: nothing to clean up ---------------------------
    code, out, err = run(capsys, "status")
    assert code == 0 and "binsight-demo-gateway" in out and "InService" in out
    before = binsight_made(aws)
    assert all(before[k] for k in ("endpoints", "functions", "apis", "roles", "notifications", "tuning_jobs"))
    code, out, err = run(capsys, "cleanup", "--dry-run", "--delete-data")
    assert code == 0 and "lambda.delete_function(" in out and "nothing deleted" in out
    assert binsight_made(aws) == before
    code, out, err = run(capsys, "cleanup", "--delete-data")
    assert code == 0, err
    assert "deleted endpoint binsight-demo" in out and "deleted function binsight-demo-gateway" in out
    assert "deleted role binsight-demo-gateway" in out and "deleted notification" in out
    assert binsight_made(aws) == {k: [] for k in binsight_made(aws)}
    assert s3.list_objects_v2(Bucket=BUCKET, Prefix="binsight/demo/").get("KeyCount", 0) == 0
    assert Ledger().live() == []
    code, out, err = run(capsys, "cleanup")
    assert code == 0 and out.strip() == "nothing to clean up"


def test_a_deploy_that_fails_half_way_is_finished_by_cleanup(aws, capsys, tmp_path):
    """The HTTP API call fails after the role, its policy and the function exist: cleanup removes them."""
    from botocore.exceptions import EndpointConnectionError

    from binsight.aws.api import Api
    from binsight.aws.errors import AwsCallError
    from binsight.aws.gateway import GatewayOptions, deploy_gateway
    from binsight.aws.session import resolve_target
    from binsight.gateway.package import build_lambda_zip

    session = boto3.Session(region_name=REGION)

    def fail(**kwargs):
        raise EndpointConnectionError(endpoint_url="https://apigateway.us-east-1.amazonaws.com")

    session.events.register("before-call.apigatewayv2.CreateApi", fail)
    api = Api(REGION, "half", Ledger(), session=session)
    target = resolve_target(REGION, BUCKET, "binsight", "half")
    zip_bytes = build_lambda_zip(tmp_path / "gw.zip", deps=False).path.read_bytes()
    with pytest.raises(AwsCallError, match="create_api"):
        deploy_gateway(api, target, "123456789012", "binsight-half", zip_bytes, GatewayOptions(s3_prefix="in/"))
    assert {r.kind for r in Ledger().live("half")} == {"role", "role_policy", "function"}
    assert binsight_made(aws)["functions"] == ["binsight-half-gateway"]
    code, out, err = run(capsys, "cleanup", "--deployment", "half")
    assert code == 0, err
    assert out.splitlines() == [
        "deleted function binsight-half-gateway",
        "deleted role policy binsight-half-gateway/binsight-half-gateway",
        "deleted role binsight-half-gateway",
    ]
    assert binsight_made(aws) == {k: [] for k in binsight_made(aws)}


def test_dry_run_creates_nothing_and_prints_calls_and_cost(aws, capsys, tmp_path, split):
    for argv in (
        ["train", "--role", ROLE, "--data", str(split), "--spot", *TRAIN_OVERRIDES],
        ["tune", "--role", ROLE, "--data", str(split)],
        ["gateway", "--zip", str(build_zip(tmp_path)), "--s3-prefix", "in/"],
    ):
        code, out, err = run(capsys, *argv, *common("dry"), "--dry-run")
        assert code == 0, err
        assert "estimated cost" in out and "nothing created" in out
    assert binsight_made(aws) == {k: [] for k in binsight_made(aws)}
    assert aws("s3").list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0
    assert not Ledger().path.exists()


def build_zip(tmp_path: Path) -> Path:
    out = tmp_path / "gw.zip"
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("binsight/__init__.py", "")
    return out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--spot", "--no-checkpoint"], "--spot needs a checkpoint location"),
        (["--spot", "--max-runtime", "3600", "--max-wait", "600"], "must be >= --max-runtime"),
        (["--instance-type", "ml.m5.xlarg"], "did you mean ml.m5.xlarge"),
        (["--role", "sagemaker-exec"], "not a role ARN"),
    ],
)
def test_bad_job_options_fail_before_anything_exists(aws, capsys, split, argv, message):
    code, out, err = run(capsys, "train", *common(), "--role", ROLE, "--data", str(split), "--yes", *argv)
    assert code == 2 and message in err
    assert not Ledger().path.exists()
    assert aws("s3").list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0


def test_bad_account_settings_fail_before_anything_exists(aws, capsys, split, monkeypatch):
    train = ["train", "--role", ROLE, "--data", str(split), "--yes", "--deployment", "x", *TRAIN_OVERRIDES]
    aws("s3", "eu-west-1").create_bucket(
        Bucket="elsewhere", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    code, _, err = run(capsys, *train, "--region", REGION, "--bucket", "elsewhere")
    assert code == 2 and "is in eu-west-1, not in us-east-1" in err
    code, _, err = run(capsys, *train, "--region", REGION, "--bucket", "no-such-bucket")
    assert code == 2 and "does not exist" in err
    code, _, err = run(capsys, *train, "--region", REGION, "--bucket", BUCKET, "--no-wait")
    assert code == 0  # the same command with a good bucket goes through
    Ledger().path.unlink()
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    code, _, err = run(capsys, *train, "--region", REGION, "--bucket", BUCKET)
    assert code == 2 and "no AWS credentials" in err
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    code, _, err = run(capsys, *train, "--bucket", BUCKET)
    assert code == 2 and "no AWS region" in err
    assert not Ledger().path.exists()


def test_without_yes_and_without_a_terminal_nothing_is_created(aws, capsys, split):
    code, out, err = run(capsys, "train", *common(), "--role", ROLE, "--data", str(split), *TRAIN_OVERRIDES)
    assert code == 2 and "add --yes" in err and "training_job: sagemaker.create_training_job" in out
    assert not Ledger().path.exists()


def test_cleanup_counts_what_is_already_gone_as_done(aws, capsys, tmp_path):
    from binsight.gateway.package import build_lambda_zip

    gw_zip = build_lambda_zip(tmp_path / "gateway.zip", deps=False).path
    code, out, err = run(capsys, "gateway", *common("gone"), "--zip", str(gw_zip), "--yes")
    assert code == 0, err
    aws("lambda").delete_function(FunctionName="binsight-gone-gateway")  # removed by hand in the console
    aws("iam").delete_role_policy(RoleName="binsight-gone-gateway", PolicyName="binsight-gone-gateway")
    code, out, err = run(capsys, "cleanup", "--deployment", "gone")
    assert code == 0, err
    assert out.splitlines() == ["deleted api binsight-gone-gateway", "deleted role binsight-gone-gateway"]
    assert binsight_made(aws) == {k: [] for k in binsight_made(aws)} and Ledger().live() == []


def test_upload_writes_a_split_channel_once(aws, capsys, split):
    code, out, err = run(capsys, "upload", *common("up"), "--data", str(split), "--yes")
    assert code == 0, err
    s3 = aws("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="binsight/up/data/split/")["Contents"]]
    images = [k for k in keys if "/images/" in k]
    assert len(images) == len({line.split(",")[2] for f in ("train", "val", "test")
                               for line in (split / f"{f}.csv").read_text().splitlines()[1:]})  # fmt: skip
    train_csv = s3.get_object(Bucket=BUCKET, Key="binsight/up/data/split/train.csv")["Body"].read().decode()
    assert all(line.startswith("images/") for line in train_csv.splitlines()[1:])
    code, out, err = run(capsys, "upload", *common("up"), "--data", str(split), "--yes")  # again: nothing new
    assert code == 0 and f"uploaded: s3://{BUCKET}/binsight/up/data/split/" in out


def test_the_confirmation_prompt_creates_nothing_on_no(aws, tmp_path, split):
    import pty

    primary, secondary = pty.openpty()
    os.write(primary, b"n\n")
    cmd = [sys.executable, "-m", "binsight", "aws", "train", *common("ask"), "--role", ROLE, "--data", str(split)]
    done = subprocess.run(cmd + TRAIN_OVERRIDES, stdin=secondary, capture_output=True, text=True, timeout=120,
                          env=cli_env())  # fmt: skip
    os.close(primary)
    os.close(secondary)
    assert done.returncode == 0, done.stderr
    assert "training_job: sagemaker.create_training_job" in done.stdout and "nothing created" in done.stdout
    assert not Ledger().path.exists() and binsight_made(aws) == {k: [] for k in binsight_made(aws)}


def test_cleanup_sweep_finds_by_tag_what_the_ledger_lost(aws, capsys, tmp_path):
    from binsight.gateway.package import build_lambda_zip

    gw_zip = build_lambda_zip(tmp_path / "gateway.zip", deps=False).path
    assert run(capsys, "gateway", *common("lost"), "--zip", str(gw_zip), "--s3-prefix", "in/", "--yes")[0] == 0
    tune = ["tune", *common("lost"), "--role", ROLE, "--data", f"s3://{BUCKET}/data/", "--yes", "--no-wait"]
    assert run(capsys, *tune)[0] == 0
    Ledger().path.unlink()  # lost: deleted by hand, or the deploy ran on another machine
    code, out, err = run(capsys, "cleanup")
    assert code == 0 and out.strip() == "nothing to clean up"
    code, out, err = run(capsys, "cleanup", "--sweep", "--region", REGION, "--bucket", BUCKET)
    assert code == 0, err
    assert "deleted notification" in out and "deleted tuning job bs-lost-" in out
    assert "deleted function binsight-lost-gateway" in out and "deleted role binsight-lost-gateway" in out
    assert binsight_made(aws) == {k: [] for k in binsight_made(aws)}


def _audit_files(out: Path) -> dict[str, object]:
    """An audit folder's outputs with its own path taken out (the photo copies live under each folder)."""
    report = json.loads((out / "audit.json").read_text())
    for row in report["rows"]:
        row["photo"] = row["photo"] and str(Path(row["photo"]).relative_to(out))
    return {
        "csv": (out / "audit.csv").read_text(),
        "json": report,
        "html": (out / "audit.html").read_text(),
        "photos": sorted(str(p.relative_to(out)) for p in (out / "photos").rglob("*.jpg")),
    }


def test_a_transform_audit_writes_what_the_local_audit_writes(aws, capsys, tmp_path):
    """Photos and records under s3://…/day1 (ABID layout); the job's `.out` files are what the inference entry
    answers for each photo (moto runs no job); the collected audit equals `binsight audit s3://…/day1` against
    an endpoint serving the same artifact, i.e. the same probabilities."""
    from binsight.aws import container
    from tests.e2e.test_serve import start_server
    from tests.integration.audit_helpers import make_abid_folder, make_artifact

    artifact = make_artifact(tmp_path / "artifact")
    abid = make_abid_folder(tmp_path / "abid", n_good=8)
    (abid / "bin-images" / "corrupt.jpg").unlink()  # SageMaker fails a job on a photo it cannot score
    s3 = aws("s3")
    for sub in ("bin-images", "metadata"):
        for path in sorted((abid / sub).iterdir()):
            s3.put_object(Bucket=BUCKET, Key=f"day1/{sub}/{path.name}", Body=path.read_bytes())

    code, out, err = run(
        capsys, "deploy", *common(), "--role", ROLE, "--model", str(artifact), "--yes", "--poll", "0.1"
    )
    assert code == 0, err
    model = aws("sagemaker").list_models()["Models"][0]["ModelName"]
    env = aws("sagemaker").describe_model(ModelName=model)["PrimaryContainer"]["Environment"]
    assert json.loads(env["BINSIGHT_REVIEW_BAND"]) == {"review_low": 0.2, "review_high": 0.5}  # the artifact's

    # what the job writes: the inference entry's answer for each photo, at OUTPUT/<key under bin-images/>.out
    predictor = container.model_fn(str(artifact))
    for path in sorted((abid / "bin-images").iterdir()):
        request = container.input_fn(path.read_bytes(), "image/jpeg")
        body = container.output_fn(container.predict_fn(request, predictor), "application/json")
        s3.put_object(Bucket=BUCKET, Key=f"audits/day1/{path.name}.out", Body=body.encode())

    cloud = tmp_path / "cloud"
    code, out, err = run(
        capsys, "audit", *common(), "--input", f"s3://{BUCKET}/day1", "--output", f"s3://{BUCKET}/audits/day1/",
        "--yes", "--poll", "0.1", "--out", str(cloud), "--workers", "2",
    )  # fmt: skip
    assert code == 0, err
    job_name = out.split("transform job ")[1].split()[0]
    job = aws("sagemaker").describe_transform_job(TransformJobName=job_name)
    assert job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"] == f"s3://{BUCKET}/day1/bin-images/"
    assert job["ModelName"] == model and f"transform job {job_name}: Completed" in err

    # the local audit of the same prefix, scored by an endpoint serving the same artifact
    server = start_server(artifact, tmp_path, "--threads", "1")
    try:
        server.wait_ready()
        local = tmp_path / "local"
        argv = ["audit", f"s3://{BUCKET}/day1", "--endpoint", server.url, "--endpoint-url", aws.url, "--out"]
        assert cli_main([*argv, str(local), "--workers", "2"]) == 0
        logging.getLogger().handlers.clear()
        capsys.readouterr()
    finally:
        server.stop()
    cloud_files, local_files = _audit_files(cloud), _audit_files(local)
    summary = cloud_files["json"]["summary"]  # type: ignore[index]
    assert summary["bins"] == 12 and summary["statuses"] == {"ok": 8, "no_record": 2, "out_of_range": 2}
    assert summary["source"] == f"s3://{BUCKET}/day1" and len(cloud_files["photos"]) > 0  # type: ignore[arg-type]
    assert cloud_files == local_files  # rows, ranking, summary, report page, photo copies
    assert len(cloud_files["csv"].splitlines()) == 13  # type: ignore[union-attr]

    # --collect alone: again into the same folder reuses every score; a photo without a .out is reported
    code, out, err = run(capsys, "audit", *common(), "--collect", job_name, "--out", str(cloud), "--poll", "0.1")
    assert code == 0, err
    assert json.loads((cloud / "audit.json").read_text())["summary"]["reused"] == 12
    s3.delete_object(Bucket=BUCKET, Key="audits/day1/003.jpg.out")
    again = tmp_path / "again"
    code, out, err = run(capsys, "audit", *common(), "--collect", job_name, "--out", str(again), "--poll", "0.1")
    assert code == 0, err
    rows = {r["bin_id"]: r for r in json.loads((again / "audit.json").read_text())["rows"]}
    assert rows["003"]["status"] == "unreadable" and "no prediction in the transform output" in rows["003"]["reason"]
    before = {r["bin_id"]: r for r in cloud_files["json"]["rows"]}  # type: ignore[index]
    assert all(rows[b]["p_wrong"] == before[b]["p_wrong"] for b in rows if b != "003")


def test_a_transform_audit_needs_photos_and_a_model(aws, capsys, tmp_path):
    code, out, err = run(capsys, "audit", *common(), "--input", f"s3://{BUCKET}/day1", "--yes")
    assert code == 2 and "has no model: run binsight aws deploy first" in err
    code, out, err = run(capsys, "audit", *common(), "--input", "day1/", "--yes")
    assert code == 2 and "expected s3://BUCKET/PREFIX" in err
    code, out, err = run(capsys, "audit", *common(), "--yes")
    assert code == 2 and "exactly one of --input" in err
    code, out, err = run(capsys, "audit", *common(), "--collect", "job", "--dry-run")
    assert code == 2 and "--collect creates nothing" in err
    Ledger().created(Resource("demo", "model", "binsight-demo-1", REGION))  # as a deploy leaves it
    code, out, err = run(capsys, "audit", *common(), "--input", f"s3://{BUCKET}/day1/", "--dry-run")
    assert code == 0, err
    assert "sagemaker.create_transform_job(" in out and f'"S3Uri": "s3://{BUCKET}/day1/bin-images/"' in out
    assert '"ModelName": "binsight-demo-1"' in out and "nothing created" in out
    assert aws("sagemaker").list_transform_jobs()["TransformJobSummaries"] == []
    code, out, err = run(capsys, "audit", *common(), "--input", f"s3://{BUCKET}/day1/", "--yes")
    assert code == 2 and f"no photos under s3://{BUCKET}/day1/bin-images/" in err
    assert aws("sagemaker").list_transform_jobs()["TransformJobSummaries"] == []


def test_an_update_that_fails_at_update_endpoint_leaves_a_ledger_cleanup_finishes(aws, capsys, tmp_path):
    """A second deploy is the blue/green update. moto has no UpdateEndpoint, which makes it the failure: the
    new model and config exist and are ledgered, the endpoint keeps serving the old ones. Retiring the old pair
    (what a finished update does next) and cleanup then run against the service."""
    from binsight.aws.api import Api
    from binsight.aws.endpoint import current_config, retire
    from tests.integration.audit_helpers import make_artifact

    artifact = make_artifact(tmp_path / "artifact")
    deploy = ["deploy", *common("bg"), "--role", ROLE, "--model", str(artifact), "--yes", "--poll", "0.1"]
    code, out, err = run(capsys, *deploy)
    assert code == 0, err
    old = current_config(Api(REGION, "bg", Ledger()), "binsight-bg")
    time.sleep(1.1)  # versions are named to the second
    code, out, err = run(capsys, *deploy)
    assert code != 0 and "update_endpoint failed" in err, err
    sm = aws("sagemaker")
    assert sm.describe_endpoint(EndpointName="binsight-bg")["EndpointConfigName"] == old["endpoint_config"]
    live = {(r.kind, r.name) for r in Ledger().live("bg")}
    models = {m["ModelName"] for m in sm.list_models()["Models"]}
    assert len(models) == 2 and {("model", m) for m in models} <= live
    assert {("endpoint_config", c["EndpointConfigName"]) for c in sm.list_endpoint_configs()["EndpointConfigs"]} <= live

    api = Api(REGION, "bg", Ledger())
    retire(api, old)
    assert old["model"] not in {m["ModelName"] for m in sm.list_models()["Models"]}
    assert ("model", old["model"]) not in {(r.kind, r.name) for r in Ledger().live("bg")}
    code, out, err = run(capsys, "cleanup", "--deployment", "bg", "--delete-data")
    assert code == 0, err
    assert binsight_made(aws) == {k: [] for k in binsight_made(aws)} and Ledger().live("bg") == []
