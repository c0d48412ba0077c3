"""``binsight evaluate``: metrics, calibration and plots of a trained run on one split."""

from __future__ import annotations

import argparse

from binsight.cli.common import add_config_args, load_stage_config
from binsight.inference.backends import backend_names


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "evaluate",
        help="evaluate a run on a split: metrics, calibration, confusion matrices, mistakes",
        description="Predict every image of a split with the run's artifact, fit the calibration temperature "
        "and the inventory-check review band on val, and write metrics.json, predictions.csv, "
        "confusion_matrix_<split>[_normalized].png and mistakes_<split>.png into the run directory (for the "
        "run's own data) or into RUN/evaluations/<data>-<split>/ (for other data, so nothing of the run is "
        "overwritten). A calibration that would change an already calibrated artifact is saved as a new "
        "artifact version instead of changing the served one silently.",
    )
    parser.add_argument(
        "--model", "--run", dest="run", required=True, help="run directory from `binsight train` (or its artifact/)"
    )
    parser.add_argument("--split", choices=["train", "val", "test"], help="split to evaluate (default test)")
    parser.add_argument("--data", default=None, help="split folder (default: the run's config.yaml `data:`)")
    parser.add_argument("--batch-size", type=int, help="images per forward pass (default 32)")
    parser.add_argument(
        "--no-calibrate",
        action="store_true",
        help="keep the artifact's temperature and review band instead of fitting them on val",
    )
    parser.add_argument("--threads", type=int, help="torch threads (default: $OMP_NUM_THREADS, else all CPUs)")
    parser.add_argument(
        "--backend",
        choices=backend_names(),
        help="inference backend (default torch, in the precision `amp: auto` picks; torch-bf16/torch-fp32 fix it)",
    )
    add_config_args(parser)
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from binsight.config.schemas import EvaluateConfig
    from binsight.evaluation.evaluate import evaluate_run, format_report

    flags = {k: getattr(args, k) for k in ("split", "data", "batch_size", "threads", "backend")}
    cfg = load_stage_config(EvaluateConfig, args, {**flags, "calibrate": False if args.no_calibrate else None})
    metrics = evaluate_run(
        args.run,
        split=cfg.split,
        data=cfg.data or None,
        batch_size=cfg.batch_size,
        calibrate=cfg.calibrate,
        threads=cfg.threads or None,
        backend=cfg.backend,
    )
    print(format_report(metrics))
    print(f"wrote metrics.json, predictions.csv and plots to {metrics['evaluation_dir']}")
    if metrics["artifact_written"]:
        from binsight.inference.artifact import read_meta

        written = metrics["artifact_written"]
        print(f"artifact updated: {written} (version {read_meta(written).version})")
    return 0
