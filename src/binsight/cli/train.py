"""``binsight train``: train a bin-count model on a split folder, or resume a run."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from binsight.cli.common import add_config_args
from binsight.config.schemas import TrainConfig

if TYPE_CHECKING:
    from binsight.training.launch import Launch

EPILOG = """examples:
  binsight train --data splits/abid --config abid   # the real-photo recipe: SynthBins start, then fine-tune
  binsight train --data splits/abid                 # the defaults: the same from ImageNet
  binsight train --data splits/abid --config abid-fast   # head only, cached features: minutes
  binsight train --data splits/demo model=tiny_cnn weights=none freeze_backbone=false img_size=64 epochs=5
  binsight train --data splits/abid teacher=models/ens   # distil a `binsight ensemble` into one network
  binsight train --resume runs/train/exp            # continue after SIGTERM, Ctrl-C or max_runtime
  binsight train --resume runs/train/exp epochs=20  # resume and train longer
  binsight train --nproc 2 --data splits/demo freeze_backbone=false augment=light   # 2 data-parallel workers
  binsight train --nnodes 2 --nproc 1 --rdzv-endpoint node1:29400 --out /shared/runs/r18 --data …  # each node
  torchrun --nnodes 2 --nproc-per-node 1 --rdzv-backend c10d --rdzv-endpoint node1:29400 \\
      -m binsight train --data … --out /shared/runs/r18 --auto-resume

batch_size is the GLOBAL batch: each of W workers trains on its share of every batch. Hyperparameters may
also be given as --key value (SageMaker style): --lr 0.001 --epochs 3 equals lr=0.001 epochs=3.

The defaults are the cross-validated real-photo recipe less its SynthBins start: the whole ImageNet
EfficientNet-Lite0 fine-tuned (light augmentation, up to 8 epochs; about 20 CPU minutes for 3,000 photos on 2
cores) with an ordinal head, early-stopped on the thresholded val macro-F1, and decision thresholds that
`binsight evaluate` fits for macro-F1 on val. --config abid adds synth_pretrain=3: the run starts from Lite0
first trained on generated bins (built once, about 7-11 CPU minutes, then cached; +0.026 macro-F1 over 5 folds).
--config abid-fast trains only the head on cached frozen features (minutes).
Every key is documented in configs/train-default.yaml (binsight cfg train-default).
Exit codes: 0 done, 1 error, 2 config error, 3 stopped with a checkpoint saved (resume with --resume)."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "train",
        allow_abbrev=False,  # `--epoch 3` must not silently mean an unrelated option
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
    ddp = parser.add_argument_group("data-parallel training (see docs/distributed.md)")
    ddp.add_argument(
        "--nproc",
        "--nproc-per-node",
        type=int,
        metavar="N",
        help="start N workers on this machine through torchrun's agent (one per GPU; on CPU the cores are shared)",
    )
    ddp.add_argument("--nnodes", metavar="N|MIN:MAX", help="machines in the job (default 1); run the command on each")
    ddp.add_argument(
        "--max-restarts", type=int, default=0, help="restart all workers up to this often after a failure (default 0)"
    )
    ddp.add_argument("--rdzv-endpoint", metavar="HOST:PORT", help="rendezvous address for --nnodes > 1")
    ddp.add_argument(
        "--rdzv-timeout", type=float, default=900, metavar="S", help="seconds to wait for all machines (default 900)"
    )
    ddp.add_argument(
        "--rdzv-backend",
        choices=["c10d", "static"],
        default="c10d",
        help="c10d (default; machine ranks by arrival) or static (fixed ranks from --node-rank)",
    )
    ddp.add_argument("--node-rank", type=int, default=0, help="this machine's rank with --rdzv-backend static")
    ddp.add_argument(
        "--auto-resume",
        action="store_true",
        help="if --out already holds this run with a checkpoint, continue it (restarted workers, spot instances)",
    )
    # Launchers that still pass --local_rank / --local-rank (torch.distributed.launch): LOCAL_RANK is read from
    # the environment instead.
    parser.add_argument("--local_rank", "--local-rank", dest="legacy_local_rank", help=argparse.SUPPRESS)
    # Set by the SageMaker entry point: rank 0 copies the artifact to SM_MODEL_DIR and metrics to SM_OUTPUT_DATA_DIR.
    parser.add_argument("--publish-sagemaker", action="store_true", help=argparse.SUPPRESS)
    _add_hyperparameter_flags(parser)
    parser.set_defaults(func=handle)


def _add_hyperparameter_flags(parser: argparse.ArgumentParser) -> None:
    """Hidden ``--key value`` / ``--key=value`` spellings of every config key (SageMaker passes hyperparameters
    this way); ``--batch-size`` and ``--batch_size`` both work."""
    taken = {"data"}  # --data is a real option
    for field in dataclasses.fields(TrainConfig):
        if field.name in taken:
            continue
        flags = {f"--{field.name}", f"--{field.name.replace('_', '-')}"}
        parser.add_argument(*sorted(flags), dest=f"hp_{field.name}", metavar="VALUE", help=argparse.SUPPRESS)


def hyperparameter_overrides(args: argparse.Namespace) -> list[str]:
    """``key=value`` overrides from the ``--key value`` flags that were given."""
    out = []
    for name, value in sorted(vars(args).items()):
        if name.startswith("hp_") and value is not None:
            out.append(f"{name[3:]}={_clean_value(value)}")
    return out


def _clean_value(value: str) -> str:
    # SageMaker's SDK JSON-encodes hyperparameters; a toolkit that does not decode them passes '"tiny_cnn"'.
    text = value.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1]
    return text


def handle(args: argparse.Namespace) -> int:
    from binsight.training.job import run_training_job
    from binsight.training.protocol import WorkerEnv

    cfg = _config(args)
    worker = WorkerEnv.from_env()
    result = run_training_job(
        cfg,
        _launch(args),
        out=args.out,
        project=args.project,
        resume=args.resume,
        auto_resume=args.auto_resume,
        publish_sagemaker=args.publish_sagemaker,
        verbose=getattr(args, "verbose", False),
        worker=worker,
    )
    if not worker.reports_result:
        return 0  # rank > 0, or a worker whose launcher prints the result
    if result is None:
        print(f"workers finished; the run is written by rank 0 (in {args.out or args.resume} on its machine)")
        return 0
    best = result.best_metrics
    print(f"run: {result.run_dir}")
    print(f"artifact: {result.artifact_dir}")
    print(
        f"best epoch {result.best_epoch}: val macro-F1 {best['macro_f1']:.4f}, accuracy {best['accuracy']:.4f}"
        + (" (stopped early)" if result.stopped_early else "")
    )
    return 0


def _config(args: argparse.Namespace) -> TrainConfig:
    """The training config the arguments describe: a run's own config for ``--resume``, else ``--config``,
    the ``--key value`` hyperparameters and ``key=value`` overrides, and ``--data``."""
    from dataclasses import replace

    from binsight.cli.common import load_stage_config
    from binsight.config import ConfigError
    from binsight.training.run import resume_config

    args.overrides = hyperparameter_overrides(args) + list(args.overrides or [])
    if args.resume is None:
        cfg = load_stage_config(TrainConfig, args)
        return replace(cfg, data=str(args.data)) if args.data is not None else cfg
    if args.config is not None:
        raise ConfigError("--config cannot be combined with --resume: a resumed run keeps its own config.yaml")
    if args.out is not None:
        raise ConfigError("--out cannot be combined with --resume: the run continues in its own directory")
    return resume_config(args.resume, args.overrides, data=args.data)


def _launch(args: argparse.Namespace) -> Launch | None:
    """Worker-launch options, when ``--nproc`` or ``--nnodes`` was given."""
    from binsight.training.launch import Launch

    if args.nproc is None and args.nnodes is None:
        return None
    return Launch(
        nproc=args.nproc or 1,
        nnodes=str(args.nnodes or 1),
        max_restarts=args.max_restarts,
        rdzv_endpoint=args.rdzv_endpoint,
        rdzv_timeout=args.rdzv_timeout,
        rdzv_backend=args.rdzv_backend,
        node_rank=args.node_rank,
    )
