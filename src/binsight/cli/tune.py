"""``binsight tune``: an Optuna study over training hyperparameters, with pruning and parallel workers."""

from __future__ import annotations

import argparse
from pathlib import Path

from binsight.cli.common import add_config_args, add_hidden_alias

EPILOG = """examples:
  binsight tune --data splits/demo --config configs/tune-demo.yaml
  binsight tune --data splits/abid --config configs/tune-report.yaml --trials 16 --workers 2
  binsight tune --resume runs/tune/report --trials 24       # the same study grows to 24 trials
  # one study shared by several machines (run the same line on each):
  binsight tune --data splits/abid --config configs/tune-report.yaml --trials 32 \\
      --storage postgresql+psycopg2://USER:PASSWORD@DBHOST:5432/binsight --study-name report

--trials is the study's total over all workers and machines. Results: trials.csv, summary.json, best.yaml
(train it with `binsight train --config RUNDIR/best.yaml`), optimization_history.png, param_importances.png.
Every key is documented in configs/tune-report.yaml. Exit codes: 0 done, 1 error, 2 config error,
3 stopped with checkpoints saved (continue with --resume)."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "tune",
        help="tune hyperparameters with Optuna (pruning, parallel and multi-machine workers)",
        description="Search training hyperparameters with an Optuna study (TPE sampler, median/Hyperband "
        "pruning on validation macro-F1 per epoch). Writes runs/tune/<name>[N]/ with trials/<n>/ run "
        "directories, trials.csv, summary.json, best.yaml and plots.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", type=Path, help="split folder with train.csv/val.csv (binsight data split)")
    add_config_args(parser)
    parser.add_argument("--trials", type=int, help="total trials of the study, over all workers (config: trials)")
    parser.add_argument(
        "--time-budget",
        dest="time_budget",
        type=float,
        metavar="S",
        help="stop starting new trials after S seconds; a running one finishes (config: timeout)",
    )
    add_hidden_alias(parser, "--timeout", "time_budget", float)
    parser.add_argument(
        "--workers",
        dest="workers",
        type=int,
        metavar="J",
        help="parallel worker processes on this machine (config: jobs)",
    )
    add_hidden_alias(parser, "--jobs", "workers", int)
    parser.add_argument(
        "--storage",
        metavar="URL",
        help="study storage: an RDB URL (postgresql+psycopg2://user:pw@host:5432/db) shared by several "
        "machines, or a journal file path; default: journal.log in the tuning run directory",
    )
    parser.add_argument("--study-name", metavar="NAME", help="the study's name in the storage (default: name)")
    parser.add_argument(
        "--resume",
        type=Path,
        metavar="RUNDIR",
        help="continue the study of tuning run RUNDIR (more trials; stopped trials resume from their checkpoints)",
    )
    parser.add_argument("--keep", choices=["all", "best"], help="keep every trial's weights, or the best one's only")
    parser.add_argument("--out", type=Path, help="tuning run directory (default: PROJECT/tune/NAME, auto-numbered)")
    parser.add_argument("--project", type=Path, default=Path("runs"), help="root of run directories (default: runs)")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)  # internal: one worker of --workers
    parser.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    parser.set_defaults(func=handle)


def handle(args: argparse.Namespace) -> int:
    from binsight.config import ConfigError
    from binsight.tuning.study import resume_tune_config, run_study, run_worker

    if args.worker is not None:
        run_worker(args.worker, args.worker_index)
        return 0
    flags = {
        "trials": args.trials,
        "timeout": args.time_budget,
        "jobs": args.workers,
        "storage": args.storage,
        "study_name": args.study_name,
        "keep": args.keep,
    }
    if args.resume is not None:
        if args.config is not None or args.out is not None:
            raise ConfigError("--config and --out cannot be combined with --resume: the study keeps its own")
        if args.study_name is not None:
            raise ConfigError("--study-name cannot be changed when resuming")
        overrides = [f"{k}={v}" for k, v in flags.items() if v is not None] + list(args.overrides)
        cfg = resume_tune_config(args.resume, overrides)
        tune_dir = args.resume
    else:
        from binsight.cli.common import load_stage_config
        from binsight.config.schemas import TuneConfig
        from binsight.utils.io import next_run_dir

        cfg = load_stage_config(TuneConfig, args, flags)
        if args.data is None and not cfg.train.data:
            raise ConfigError("no training data: pass --data SPLITDIR (a folder made by `binsight data split`)")
        tune_dir = args.out if args.out is not None else next_run_dir(args.project, "tune", cfg.name)
    summary = run_study(cfg, args.data, tune_dir, resume=args.resume is not None)
    print(summary["table"])
    for note in summary["notes"]:
        print(f"note: {note}")
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(summary["states"].items()))
    print(f"study {summary['study_name']} ({summary['storage']}): {summary['trials']} trials ({states})")
    print(
        f"best trial {summary['best_trial']}: val macro-F1 {summary['best_value']:.4f} "
        f"after {summary['time_to_best_s']:.0f}s; params {summary['best_params']}"
    )
    print(f"best config: {summary['best_yaml']}  (binsight train --config {summary['best_yaml']})")
    print(f"results: {tune_dir}")
    return 0
