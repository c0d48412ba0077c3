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
  binsight train --nproc 2 --data splits/demo model=tiny_cnn batch_size=32   # 2 data-parallel workers
  binsight train --nnodes 2 --nproc 1 --rdzv-endpoint node1:29400 --out /shared/runs/r18 --data …  # each node
  torchrun --nnodes 2 --nproc-per-node 1 --rdzv-backend c10d --rdzv-endpoint node1:29400 \\
      -m binsight train --data … --out /shared/runs/r18 --auto-resume

batch_size is the GLOBAL batch: each of W workers trains on its share of every batch. Hyperparameters may
also be given as --key value (SageMaker style): --lr 0.001 --epochs 3 equals lr=0.001 epochs=3.

Every key is documented in configs/train-default.yaml. Exit codes: 0 done, 1 error, 2 config error,
3 stopped with a checkpoint saved (resume with --resume)."""


def register(sub: argparse._SubParsersAction) -> None:
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
    import dataclasses

    from binsight.config.schemas import TrainConfig

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
    import os
    import time

    start = time.monotonic()
    job_start = os.environ.get("BINSIGHT_JOB_START")  # set by the launcher: max_runtime spans worker restarts
    if job_start:
        start -= max(0.0, time.time() - float(job_start))
    from dataclasses import replace

    from binsight.cli.common import load_stage_config
    from binsight.config import ConfigError
    from binsight.config.schemas import TrainConfig
    from binsight.training.distributed import launched_by_torchrun
    from binsight.training.run import resume_config, train

    args.overrides = hyperparameter_overrides(args) + list(args.overrides or [])
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
    worker = launched_by_torchrun()
    if (args.nproc is not None or args.nnodes is not None) and not worker:
        return _launch(args, cfg)
    threads = os.environ.get("BINSIGHT_WORKER_THREADS")
    if worker and threads:
        import torch

        torch.set_num_threads(int(threads))
    restarted = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") or 0) > 0
    auto_resume = args.auto_resume or (restarted and args.out is not None)
    from binsight.training.stopfile import WorkerStopped

    try:
        result = train(
            cfg, out=args.out, project=args.project, resume=args.resume, start_time=start, auto_resume=auto_resume
        )
    except WorkerStopped:
        return 0  # a deliberate stop under `binsight train --nproc`: the launcher reports it (exit 3) once
    if int(os.environ.get("RANK", "0")) != 0:
        return 0
    if args.publish_sagemaker:
        from binsight.training.sagemaker import publish, sagemaker_env

        sm = sagemaker_env()
        if sm is not None:
            publish(result.run_dir, sm)
    if os.environ.get("BINSIGHT_LAUNCHED") == "1":
        return 0  # the launcher prints the result
    best = result.best_metrics
    print(f"run: {result.run_dir}")
    print(f"artifact: {result.artifact_dir}")
    print(
        f"best epoch {result.best_epoch}: val macro-F1 {best['macro_f1']:.4f}, accuracy {best['accuracy']:.4f}"
        + (" (stopped early)" if result.stopped_early else "")
    )
    return 0


def _launch(args: argparse.Namespace, cfg) -> int:
    """``--nproc`` / ``--nnodes``: start the workers (each re-enters ``binsight train``) and wait for them."""
    from binsight.errors import BinsightError
    from binsight.training.launch import launch_workers, parse_nnodes, read_run_result
    from binsight.training.run import resolve_run_dir
    from binsight.utils.io import next_run_dir

    _, max_nodes = parse_nnodes(args.nnodes or 1)
    nproc = args.nproc or 1
    worker = ["-m", "binsight"] + (["-v"] if getattr(args, "verbose", False) else []) + ["train"]
    if args.resume is not None:
        run_dir = resolve_run_dir(args.resume)
        worker += ["--resume", str(run_dir.resolve())]
        if args.data is not None:
            worker += ["--data", str(args.data.resolve())]
        worker += list(args.overrides)  # e.g. max_runtime=, epochs= (checked by resume_config above)
    else:
        if args.out is not None:
            run_dir = args.out
            if not args.auto_resume and ((run_dir / "config.yaml").exists() or (run_dir / "weights").exists()):
                raise BinsightError(
                    f"{run_dir} already holds a training run; continue it with `binsight train --nproc {nproc} "
                    f"--resume {run_dir}` or choose another --out"
                )
        elif max_nodes > 1:
            raise BinsightError(
                "--nnodes > 1 needs --out RUNDIR (the same path on every machine, ideally shared storage) so that "
                "restarted workers find the run's checkpoint"
            )
        else:
            run_dir = next_run_dir(args.project, "train", cfg.name)  # fixed now, so restarts resume it
        # The resolved config travels as the worker's --config: every worker (and every restart) trains the
        # same thing, and the hyperparameter flags have been applied once.
        run_dir = Path(run_dir).resolve()
        run_dir.mkdir(parents=True, exist_ok=True)
        config = run_dir / "launch-config.yaml"
        from binsight.config.loader import dump_yaml
        from binsight.utils.io import atomic_write_text

        atomic_write_text(config, dump_yaml(replace_data(cfg)))
        worker += ["--config", str(config), "--out", str(run_dir), "--auto-resume"]
    if args.publish_sagemaker:
        worker.append("--publish-sagemaker")
    launch_workers(
        worker,
        nproc,
        nnodes=args.nnodes or 1,
        max_restarts=args.max_restarts,
        rdzv_endpoint=args.rdzv_endpoint,
        rdzv_timeout=args.rdzv_timeout,
        rdzv_backend=args.rdzv_backend,
        node_rank=args.node_rank,
        run_dir=run_dir,
    )
    if not (Path(run_dir) / "weights" / "last.pt").is_file():
        # Several machines without shared storage: rank 0 wrote the run on another machine.
        print(f"workers finished; the run is written by rank 0 (in {run_dir} on its machine)")
        return 0
    result = read_run_result(Path(run_dir))
    best = result["best_metrics"]
    print(f"run: {result['run_dir']}")
    print(f"artifact: {result['artifact_dir']}")
    print(
        f"best epoch {result['best_epoch']}: val macro-F1 {best['macro_f1']:.4f}, accuracy {best['accuracy']:.4f}"
        + (" (stopped early)" if result["stopped_early"] else "")
    )
    return 0


def replace_data(cfg):
    """``cfg`` with ``data`` made absolute (workers may start in another directory)."""
    from dataclasses import replace

    return replace(cfg, data=str(Path(cfg.data).resolve())) if cfg.data else cfg
