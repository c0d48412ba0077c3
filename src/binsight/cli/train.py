"""``binsight train``: train a bin-count model on a split folder, or resume a run."""

from __future__ import annotations

import argparse
from pathlib import Path

from binsight.cli.common import add_config_args

EPILOG = """examples:
  binsight train --data splits/demo model=tiny_cnn img_size=64 epochs=5
  binsight train --data splits/abid --config configs/train-default.yaml lr=3e-4 --out runs/train/abid-r18
  binsight train --resume runs/train/exp            # continue after SIGTERM, Ctrl-C or max_runtime
  binsight train --resume runs/train/exp epochs=20  # resume and train longer

Every key is documented in configs/train-default.yaml. Exit codes: 0 done, 1 error, 2 config error,
3 stopped with a checkpoint saved (resume with --resume)."""


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train",
        help="train a model on a split (resumable)",
        description="Train a bin-count classifier on split manifests. Writes runs/train/<name>[N]/ with "
        "config.yaml, metrics.csv, weights/{last,best}.pt, artifact/, curves.png and confusion_matrix.png. "
        "SIGTERM, Ctrl-C and max_runtime save a checkpoint and exit with code 3.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", type=Path, help="split folder with train.csv/val.csv/test.csv (binsight data split)")
    add_config_args(parser)
    parser.add_argument("--out", type=Path, help="run directory (default: PROJECT/train/NAME, auto-numbered)")
    parser.add_argument(
        "--resume",
        type=Path,
        metavar="RUN",
        help="continue the run directory RUN from weights/last.pt (its config.yaml is used; "
        "key=value may change epochs, patience, max_runtime, device, amp, cache_dir, num_workers)",
    )
    parser.add_argument("--project", type=Path, default=Path("runs"), help="root of run directories (default: runs)")
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    import time

    start = time.monotonic()
    from dataclasses import replace

    from binsight.cli.common import load_stage_config
    from binsight.config import ConfigError
    from binsight.config.schemas import TrainConfig
    from binsight.training.run import resume_config, train

    if args.resume is not None:
        if args.config is not None:
            raise ConfigError("--config cannot be combined with --resume: a resumed run keeps its own config.yaml")
        if args.out is not None:
            raise ConfigError("--out cannot be combined with --resume: the run continues in its own directory")
        cfg = resume_config(args.resume, args.overrides, data=args.data)
    else:
        cfg = load_stage_config(TrainConfig, args)
        if args.data is not None:
            cfg = replace(cfg, data=str(args.data))
    result = train(cfg, out=args.out, project=args.project, resume=args.resume, start_time=start)
    best = result.best_metrics
    print(f"run: {result.run_dir}")
    print(f"artifact: {result.artifact_dir}")
    print(
        f"best epoch {result.best_epoch}: val macro-F1 {best['macro_f1']:.4f}, accuracy {best['accuracy']:.4f}"
        + (" (stopped early)" if result.stopped_early else "")
    )
    return 0
