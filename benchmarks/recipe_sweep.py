"""Recipe exploration on the validation split: train one config per experiment and record val macro-F1.

Each experiment is a name plus ``key=value`` overrides of a base TrainConfig YAML. Results are appended to a
JSON file (one entry per experiment and seed), so a sweep can be extended later and re-read by docs. Only the
val split is used here; the test split is for the final recipes (``benchmarks/accuracy.py``).

Example (frozen-backbone heads on the feature cache train in seconds)::

    python benchmarks/recipe_sweep.py --base configs/abid-fast.yaml --data /tmp/binsight-bench/abid-split \\
        --exp "frozen-ce: freeze_backbone=true augment=none loss=ce epochs=30" \\
        --exp "frozen-wce: freeze_backbone=true augment=none loss=weighted_ce epochs=30" --seeds 0,1,2
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import append_result  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BENCH_DIR = Path(os.environ.get("BINSIGHT_BENCH_DIR", "/tmp/binsight-bench"))


def parse_exp(text: str) -> tuple[str, list[str]]:
    """``"name: k=v k=v"`` -> ``(name, ["k=v", ...])``."""
    name, _, rest = text.partition(":")
    return name.strip(), shlex.split(rest)


def run_experiment(base: Path, data: Path, name: str, overrides: list[str], seed: int, out_root: Path) -> dict:
    """Train one experiment and return its best-epoch validation numbers."""
    from dataclasses import replace

    from binsight.config.loader import load_config
    from binsight.config.schemas import TrainConfig
    from binsight.training.run import train
    from binsight.utils.io import next_run_dir

    cfg = load_config(TrainConfig, base, [*overrides, f"seed={seed}"])
    cfg = replace(cfg, data=str(data), name=f"{name}-s{seed}", cache_dir=str(BENCH_DIR / "cache"))
    t0 = time.monotonic()
    result = train(cfg, out=next_run_dir(out_root, "sweep", cfg.name), handle_signals=False)
    seconds = time.monotonic() - t0
    best = result.best_metrics
    return {
        "name": name,
        "overrides": overrides,
        "seed": seed,
        "val_macro_f1": round(best["macro_f1"], 4),
        "val_accuracy": round(best["accuracy"], 4),
        "val_rmse": round(best["rmse"], 4),
        "best_epoch": result.best_epoch,
        "epochs_run": len(result.history),
        "train_seconds": round(seconds, 1),
        "run_dir": str(result.run_dir),
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, default=REPO / "configs" / "abid-fast.yaml", help="base TrainConfig YAML")
    parser.add_argument("--data", type=Path, default=BENCH_DIR / "abid-split", help="split folder")
    parser.add_argument("--exp", action="append", required=True, help='"name: key=value ..." (repeatable)')
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results" / "recipe_sweep_abid.json")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    os.environ.setdefault("BINSIGHT_NO_PROGRESS", "1")
    for text in args.exp:
        name, overrides = parse_exp(text)
        for seed in [int(s) for s in args.seeds.split(",")]:
            row = run_experiment(args.base, args.data, name, overrides, seed, BENCH_DIR / "runs")
            row["base"] = str(args.base.relative_to(REPO)) if args.base.is_relative_to(REPO) else str(args.base)
            append_result(args.results, row)
            print(
                f"{name:<28} seed {seed}  val macro-F1 {row['val_macro_f1']:.4f}  acc {row['val_accuracy']:.4f}  "
                f"epoch {row['best_epoch']}/{row['epochs_run']}  {row['train_seconds']:.0f}s",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
