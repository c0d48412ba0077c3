"""The pure parts of ``binsight aws``: one vocabulary with ``binsight train``, tuning results, the ledger."""

from __future__ import annotations

import csv
import datetime as dt
import json

import pytest

from binsight.aws.ledger import Ledger, Resource
from binsight.aws.training import hyperparameters, trainer_budget
from binsight.aws.tuning import write_results
from binsight.config import TrainConfig, TuneConfig, load_config, read_yaml


def test_hyperparameters_are_the_training_config_binsight_train_reads_back():
    from binsight.cli.main import build_parser
    from binsight.cli.train import hyperparameter_overrides

    cfg = load_config(TrainConfig, None, ["model=tiny_cnn", "lr=0.0003", "freeze_backbone=true", "augment=none"])
    hp = hyperparameters(cfg, max_runtime=7200)
    argv = ["train", "--data", "split"] + [x for k, v in hp.items() for x in (f"--{k}", v)]
    args = build_parser().parse_args(argv)
    back = load_config(TrainConfig, None, hyperparameter_overrides(args))
    assert back == load_config(TrainConfig, None, ["model=tiny_cnn", "lr=0.0003", "freeze_backbone=true",
                                                   "augment=none", f"max_runtime={7200 - 360}"])  # fmt: skip


def test_the_trainer_stops_a_margin_before_sagemakers_limit():
    assert trainer_budget(3600) == 3300  # 5 min: enough to save and sync a checkpoint
    assert trainer_budget(86400) == 86400 - 1200  # 5%, capped at 20 min
    assert trainer_budget(86400, configured=600) == 600  # a smaller configured budget wins


def test_tuning_results_are_written_as_the_local_tuner_writes_them(tmp_path):
    cfg = load_config(TuneConfig, "configs/tune-report.yaml")
    t0 = dt.datetime(2025, 12, 25, 9, 59, tzinfo=dt.UTC)

    def job(i: int, value: float | None, status: str, **tuned: str) -> dict:
        return {
            "TrainingJobName": f"bs-hpo-{i:03d}",
            "CreationTime": t0 + dt.timedelta(minutes=i),
            "TrainingStartTime": t0 + dt.timedelta(minutes=i),
            "TrainingEndTime": t0 + dt.timedelta(minutes=i + 8),
            "TrainingJobStatus": status,
            "TunedHyperParameters": tuned,
            **({"FinalHyperParameterTuningJobObjectiveMetric": {"MetricName": "val_macro_f1", "Value": value}}
               if value is not None else {}),
        }  # fmt: skip

    base = {"weight_decay": "1e-06", "patience": "5", "freeze_backbone": "false"}
    jobs = [
        job(2, 0.301, "Completed", lr="0.001", batch_size="32", **base),
        job(1, 0.3875, "Completed", lr="2.0128e-05", batch_size="64", **base),
        job(3, None, "Stopped", lr="0.003", batch_size="16", **base),
    ]
    summary = write_results(cfg, "bs-hpo", jobs, tmp_path)
    with open(tmp_path / "trials.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[:5] == ["trial", "state", "value", "epochs", "duration_s"]
    assert [r["state"] for r in rows] == ["COMPLETE", "COMPLETE", "PRUNED"]  # ordered by creation
    assert rows[0]["lr"] == "2.0128e-05" and rows[0]["duration_s"] == "480.0"
    best = load_config(TrainConfig, tmp_path / "best.yaml")
    assert (best.lr, best.batch_size, best.freeze_backbone, best.patience) == (2.0128e-05, 64, False, 5)
    assert best.model == cfg.train.model and summary["best"]["value"] == 0.3875
    assert json.loads((tmp_path / "summary.json").read_text())["trials"] == 3
    assert read_yaml(tmp_path / "best.yaml")["name"] == "report-best"


def test_the_ledger_keeps_what_was_created_and_not_deleted_and_survives_a_cut_line(tmp_path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    role = Resource("a", "role", "r1", "us-east-1", "arn:aws:iam::1:role/r1")
    fn = Resource("a", "function", "f1", "us-east-1")
    other = Resource("b", "model", "m1", "eu-west-1")
    for res in (role, fn, other):
        ledger.created(res)
    ledger.deleted(fn)
    with open(ledger.path, "a") as fh:
        fh.write('{"event": "created", "kind": "endp')  # a crash in the middle of a write
    assert ledger.live() == [role, other]
    assert ledger.live("a") == [role] and ledger.deployments() == ["a", "b"]


def test_a_resumed_run_keeps_its_name_across_jobs(tmp_path, monkeypatch):
    from binsight.training.sagemaker import sagemaker_env, sagemaker_train_args
    from tests.integration.train_helpers import make_split

    split = make_split(tmp_path / "data", n_train=2, n_val=1, n_test=1, size=16)
    (tmp_path / "ckpt").mkdir()
    env = {
        "SM_HOSTS": '["algo-1"]',
        "SM_CHANNEL_TRAIN": str(split),
        "BINSIGHT_SM_CHECKPOINT_DIR": str(tmp_path / "ckpt"),
    }
    monkeypatch.setenv("TRAINING_JOB_NAME", "job-2")
    monkeypatch.setenv("BINSIGHT_RUN_NAME", "job-1")
    args = sagemaker_train_args(sagemaker_env(env), [])
    assert args[args.index("--out") + 1] == str(tmp_path / "ckpt" / "job-1")


@pytest.mark.parametrize(
    ("removed", "lines"),
    [
        ({"role_policies": ["r/p"], "jobs": ["j1"]}, ["deleted role policy r/p", "stopped job j1"]),
        ({"endpoints": [], "processes": []}, ["nothing to clean up"]),
    ],
)
def test_one_report_format_for_local_and_aws_cleanup(capsys, removed, lines):
    from binsight.cli.cleanup import print_removed

    print_removed(removed)
    assert capsys.readouterr().out.splitlines() == lines


def test_the_inference_entry_reads_the_expected_quantity_from_the_custom_attributes_header():
    from binsight.aws.container import CUSTOM_ATTRIBUTES, input_fn

    class Context:  # the serving toolkit's request context: headers of request 0
        def get_request_header(self, idx: int, key: str) -> str | None:
            return {CUSTOM_ATTRIBUTES: "expected_quantity=3"}.get(key) if idx == 0 else None

    assert input_fn(b"\xff\xd8jpeg", "image/jpeg", Context()).expected == [3]
    assert input_fn(b"\xff\xd8jpeg", "image/jpeg").expected == [None]
    with pytest.raises(ValueError, match="415 unsupported_media_type"):
        input_fn(b"x", "text/plain")


def test_the_reports_spot_job_costs_what_sagemaker_billed():
    from binsight.aws.training import describe_costs, job_costs

    desc = {  # cbc-spot-251225133313 in the capstone report
        "TrainingJobStatus": "Stopped",
        "ResourceConfig": {"InstanceType": "ml.m5.2xlarge", "InstanceCount": 1},
        "TrainingTimeInSeconds": 5445,
        "BillableTimeInSeconds": 1896,
    }
    costs = job_costs(desc)
    assert costs["cost_usd"] == pytest.approx(1896 * 0.461 / 3600, abs=1e-4)
    assert costs["spot_saving"] == 0.652  # SageMaker showed ~65.2%
    assert "spot saving 65%" in describe_costs(costs)
    two = job_costs({**desc, "ResourceConfig": {"InstanceType": "ml.g4dn.xlarge", "InstanceCount": 2}})
    assert two["cost_usd"] == pytest.approx(2 * 1896 * 0.736 / 3600, abs=1e-4)  # billable time is per instance


def test_a_second_deploy_plans_a_blue_green_update_from_the_ledger(tmp_path):
    """moto implements no UpdateEndpoint: the update is checked as the plan of every call, in order, that a dry
    run makes when the ledger holds the deployment's endpoint (no call reaches AWS)."""
    from binsight.aws.api import Api
    from binsight.aws.endpoint import deploy
    from binsight.aws.session import Target
    from tests.integration.audit_helpers import make_artifact

    artifact = make_artifact(tmp_path / "artifact")
    ledger = Ledger(tmp_path / "ledger.jsonl")
    for kind, name in (("model", "binsight-bg-old"), ("endpoint_config", "binsight-bg-old"),
                       ("endpoint", "binsight-bg")):  # fmt: skip
        ledger.created(Resource("bg", kind, name, "us-east-1"))
    api = Api("us-east-1", "bg", ledger, dry_run=True)
    names = deploy(api, Target("us-east-1", "b", "binsight", "bg"), artifact, role="arn:aws:iam::1:role/r",
                   instance_type="ml.m5.large")  # fmt: skip
    new = names["endpoint_config"]
    assert new != "binsight-bg-old" and names["model"] == new
    assert [(c.service, c.operation, c.params) for c in api.calls[1:]] == [
        ("sagemaker", "create_model", api.calls[1].params),
        ("sagemaker", "create_endpoint_config", api.calls[2].params),
        ("sagemaker", "update_endpoint", {"EndpointName": "binsight-bg", "EndpointConfigName": new}),
        ("sagemaker", "describe_endpoint", {"EndpointName": "binsight-bg"}),
        ("sagemaker", "delete_endpoint_config", {"EndpointConfigName": "binsight-bg-old"}),
        ("sagemaker", "delete_model", {"ModelName": "binsight-bg-old"}),
    ]
    assert (api.calls[0].operation, api.calls[0].params["Key"]) == (
        "put_object",
        f"binsight/bg/models/{new}/model.tar.gz",
    )
    assert api.calls[1].params["ModelName"] == new and api.calls[1].params["PrimaryContainer"]["ModelDataUrl"] == (
        f"s3://b/binsight/bg/models/{new}/model.tar.gz"
    )
    variant = api.calls[2].params["ProductionVariants"][0]
    assert (api.calls[2].params["EndpointConfigName"], variant["ModelName"]) == (new, new)
    assert [c.creates for c in api.calls] == ["", "model", "endpoint_config", "", "", "", ""]  # no new endpoint
    assert [(r.kind, r.name) for r in ledger.live("bg")] == [
        ("model", "binsight-bg-old"), ("endpoint_config", "binsight-bg-old"), ("endpoint", "binsight-bg"),
    ]  # fmt: skip

    first = Api("us-east-1", "fresh", ledger, dry_run=True)  # no endpoint in the ledger: a create, no retire
    deploy(first, Target("us-east-1", "b", "binsight", "fresh"), artifact, role="arn:aws:iam::1:role/r",
           instance_type="ml.m5.large")  # fmt: skip
    assert [c.operation for c in first.calls][-2:] == ["create_endpoint", "describe_endpoint"]
