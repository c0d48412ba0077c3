"""Model stages of ``binsight pipeline``: train, evaluate, ddp_train, tune, final. Each imports what it needs
(torch, Optuna) when it runs, so listing stages and the data stages stay light."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from binsight.config import TrainConfig
from binsight.errors import BinsightError
from binsight.pipeline.context import Section, StageContext, StageResult

METRIC_ROWS = [
    ("accuracy", "accuracy"),
    ("macro_f1", "macro-F1"),
    ("macro_precision", "macro precision"),
    ("macro_recall", "macro recall"),
    ("weighted_f1", "weighted F1"),
    ("rmse", "RMSE (count)"),
    ("mae", "MAE (count)"),
    ("off_by_one", "off-by-one accuracy"),
    ("ece_before", "ECE before calibration"),
    ("ece_after", "ECE after calibration"),
]


def _fresh(path: Path) -> Path:
    """Re-running a stage starts its folder over, so --from/--only never mix two runs' files."""
    if path.exists():
        shutil.rmtree(path)
    return path


def _stage_dir(ctx: StageContext, folder: str) -> Path:
    """The stage's folder: emptied when the stage is asked for again, kept (to continue) otherwise."""
    path = ctx.path(folder)
    return _fresh(path) if ctx.restart else path


def train_into(
    ctx: StageContext, folder: str, cfg: TrainConfig | None = None, nproc: int = 0, max_restarts: int = 0
) -> tuple[dict[str, Any], Section]:
    """Train ``cfg`` (default: the pipeline's train section) into ``run_dir/folder``, in this process or with
    ``nproc`` data-parallel workers; shared by the train stages (baseline, distributed, final)."""
    split_dir = ctx.require("split", "split_dir")
    cfg = replace(cfg or ctx.cfg.train, data=str(split_dir), name=folder)
    from binsight.training.job import run_training_job
    from binsight.training.launch import Launch

    launch = Launch(nproc=nproc, max_restarts=max_restarts) if nproc else None
    # An interrupted stage continues from its last checkpoint when the pipeline is resumed.
    result = run_training_job(cfg, launch, out=_stage_dir(ctx, folder), auto_resume=True)
    if result is None:  # pragma: no cover - one machine: the run is always on this disk
        raise BinsightError(f"training {folder} left no result in {ctx.path(folder)}")
    best = result.best_metrics
    rows = [
        [r["epoch"], r["train_loss"], r["train_acc"], r["val_loss"], r["val_acc"], r["val_macro_f1"], r["seconds"]]
        for r in result.history
    ]
    workers = f"{nproc} data-parallel workers (gloo), global batch {cfg.batch_size}; " if nproc else ""
    sec = Section(
        f"Training ({folder})",
        summary=f"{workers}{cfg.model} ({cfg.weights} weights, {cfg.head} head, {cfg.loss_kind} loss) "
        f"at {cfg.img_size} px, "
        f"{len(result.history)} epochs{' (stopped early)' if result.stopped_early else ''}; best epoch "
        f"{result.best_epoch}: validation macro-F1 {best['macro_f1']:.3f}, accuracy {best['accuracy']:.3f}.",
        tables=[
            {
                "caption": "per epoch",
                "columns": ["epoch", "train loss", "train acc", "val loss", "val acc", "val macro-F1", "seconds"],
                "rows": rows,
            }
        ],
        figures=[
            ("training curves", ctx.rel(result.run_dir / "curves.png")),
            ("validation confusion matrix (best epoch)", ctx.rel(result.run_dir / "confusion_matrix.png")),
        ],
    )
    out = {
        "run_dir": str(result.run_dir),
        "artifact": str(result.artifact_dir),
        "best_epoch": result.best_epoch,
        "val_macro_f1": best["macro_f1"],
        "val_accuracy": best["accuracy"],
    }
    return out, sec


def evaluate_section(ctx: StageContext, run_dir: str, title: str) -> tuple[dict[str, Any], Section]:
    from binsight.evaluation.evaluate import evaluate_run

    metrics = evaluate_run(run_dir, split="test")
    run = Path(run_dir)
    table = {
        "caption": f"test split, {metrics['n']} images",
        "columns": ["metric", "value"],
        "rows": [[label, metrics[key]] for key, label in METRIC_ROWS if key in metrics],
    }
    per_class = {
        "caption": "per class (test)",
        "columns": ["class", "precision", "recall", "F1", "support"],
        "rows": [[k, v["precision"], v["recall"], v["f1"], v["support"]] for k, v in metrics["per_class"].items()],
    }
    figures = [
        (caption, ctx.rel(run / name))
        for caption, name in [
            ("test confusion matrix", "confusion_matrix_test.png"),
            ("test confusion matrix, normalized by row", "confusion_matrix_test_normalized.png"),
            ("most confident mistakes", "mistakes_test.png"),
        ]
        if (run / name).is_file()
    ]
    sec = Section(
        title,
        summary=f"Temperature {metrics['temperature']:.3f} fitted on the validation split.",
        tables=[table, per_class],
        figures=figures,
    )
    keys = ("accuracy", "macro_f1", "rmse", "off_by_one", "ece_after")
    return {"metrics": {k: metrics[k] for k in keys if k in metrics}}, sec


def stage_train(ctx: StageContext) -> StageResult:
    return train_into(ctx, "train")


def stage_evaluate(ctx: StageContext) -> StageResult:
    return evaluate_section(ctx, ctx.require("train", "run_dir"), "Evaluation (test split)")


def stage_ddp(ctx: StageContext) -> StageResult:
    ddp = ctx.cfg.ddp
    out, sec = train_into(ctx, "ddp_train", ddp.train, nproc=ddp.nproc, max_restarts=ddp.max_restarts)
    return _with_evaluation(ctx, out, sec, "Distributed model on the test split")


def _with_evaluation(ctx: StageContext, out: dict[str, Any], sec: Section, title: str) -> StageResult:
    """A training stage's outputs and section, with its model evaluated on the test split added."""
    ev_out, ev_sec = evaluate_section(ctx, out["run_dir"], title)
    sec.tables += ev_sec.tables
    sec.figures += ev_sec.figures
    sec.summary += " " + ev_sec.summary
    return {**out, **ev_out}, sec


def stage_audit(ctx: StageContext) -> StageResult:
    from binsight.audit.stage import run_audit_stage

    return run_audit_stage(ctx)


def stage_tune(ctx: StageContext) -> StageResult:
    return tune_section(ctx)


def stage_final(ctx: StageContext) -> StageResult:
    from binsight.config import TrainConfig, load_config

    best = load_config(TrainConfig, ctx.require("tune", "best_yaml"))
    out, sec = train_into(ctx, "final", best)
    return _with_evaluation(ctx, out, sec, "Final model on the test split")


def _number(text: str) -> Any:
    """A trials.csv cell as a number where it is one (so the report formats it), else the text."""
    try:
        return int(text) if text.lstrip("-").isdigit() else float(text)
    except ValueError:
        return text


def tune_section(ctx: StageContext) -> tuple[dict[str, Any], Section]:
    from binsight.tuning.study import run_study

    split_dir = ctx.require("split", "split_dir")
    cfg = replace(ctx.cfg.tune, train=replace(ctx.cfg.tune.train, data=str(split_dir)))
    tune_dir = _stage_dir(ctx, "tune")
    summary = run_study(cfg, split_dir, tune_dir, resume=(tune_dir / "study.json").exists(), show_progress=True)
    trials = []
    csv_path = tune_dir / "trials.csv"
    if csv_path.is_file():
        import csv

        with csv_path.open(newline="") as f:
            reader = csv.reader(f)
            header = next(reader, [])
            trials = [header, *([_number(v) for v in row] for row in reader)]
    figures = [
        (caption, ctx.rel(tune_dir / name))
        for caption, name in [
            ("optimization history", "optimization_history.png"),
            ("parameter importance", "param_importances.png"),
        ]
        if (tune_dir / name).is_file()
    ]
    sec = Section(
        "Tuning",
        summary=f"{cfg.trials} trials ({cfg.pruner} pruner, {cfg.jobs} worker(s)); best validation macro-F1 "
        f"{summary.get('best_value', float('nan')):.3f} with {summary.get('best_params')}.",
        tables=[{"caption": "trials", "columns": trials[0], "rows": trials[1:]}] if trials else [],
        figures=figures,
    )
    keys = ("best_value", "best_params", "best_yaml", "best_run_dir", "time_to_best_s")
    return {k: (str(summary[k]) if k == "best_yaml" else summary.get(k)) for k in keys if k in summary}, sec
