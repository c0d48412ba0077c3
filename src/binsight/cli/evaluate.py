"""``binsight evaluate``: metrics, calibration and plots of a trained run on one split."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "evaluate",
        help="evaluate a run on a split: metrics, calibration, confusion matrices, mistakes",
        description="Predict every image of a split with the run's artifact, fit the calibration temperature "
        "and the inventory-check review band on val, and write metrics.json, predictions.csv, "
        "confusion_matrix_<split>[_normalized].png and mistakes_<split>.png into the run directory.",
    )
    parser.add_argument("--run", required=True, help="run directory from `binsight train` (or its artifact/)")
    parser.add_argument("--split", default="test", choices=["train", "val", "test"], help="split to evaluate")
    parser.add_argument("--data", default=None, help="split folder (default: the run's config.yaml `data:`)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per forward pass (default 32)")
    parser.add_argument(
        "--no-calibrate",
        action="store_true",
        help="keep the artifact's temperature and review band instead of fitting them on val",
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: $OMP_NUM_THREADS, else all CPUs)"
    )
    parser.add_argument(
        "--backend",
        default="torch",
        help="inference backend: torch (precision by `amp: auto`), torch-bf16, torch-fp32, onnx, onnx-int8",
    )
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from binsight.evaluation.evaluate import evaluate_run, format_report, run_dir_of

    metrics = evaluate_run(
        args.run,
        split=args.split,
        data=args.data,
        batch_size=args.batch_size,
        calibrate=not args.no_calibrate,
        threads=args.threads,
        backend=args.backend,
    )
    print(format_report(metrics))
    print(f"wrote metrics.json, predictions.csv and plots to {run_dir_of(args.run)[0]}")
    return 0
