"""Data-parallel scaling on this machine: 1 worker vs N workers of ``binsight train --nproc``, same global batch.

    .venv/bin/python benchmarks/ddp_scaling.py [--n 300] [--model resnet18] [--img-size 112] [--batch-size 32]
                                               [--epochs 2] [--workers 1 2]

Data: ``--n`` SynthBins images (seed 0) split 80/10/10 into ``$BINSIGHT_BENCH_DIR/ddp`` (default
``/tmp/binsight-bench/ddp``), decoded once into a shared decode cache before the timed runs.

Each variant is one ``binsight train --nproc W`` command (torchrun's agent, gloo on CPU) with the same config,
seed and global batch; the launcher gives each worker ``cores // W`` torch threads. Measured: images/s of the
last epoch (training images / the epoch's seconds from ``metrics.csv``, which include that epoch's validation;
later epochs exclude start-up and model building), the command's wall time (start-up included) and the CPU
seconds of the command's whole process tree (launcher + workers), which stays meaningful on a shared machine.
Variants run in the given order, e.g. ``--workers 1 2 2 1`` (ABBA) so load drift cancels out; the table
shows each variant's median. Writes ``benchmarks/results/ddp_scaling.json``; the first variant is the baseline.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/machine.py
from binsight.utils.cpu import threads_per_worker  # noqa: E402
from machine import machine_info  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "ddp_scaling.json"


def make_data(root: Path, n: int) -> Path:
    """SynthBins images and a split folder under ``root`` (reused when already there)."""
    from binsight.config.schemas import SplitConfig, SynthConfig
    from binsight.data.split import split_dataset
    from binsight.data.synth import generate

    split = root / "split"
    if (split / "train.csv").is_file():
        return split
    generate(root / "synth", SynthConfig(n=n, seed=0), show_progress=False, overwrite=True)
    split_dataset(root / "synth", split, SplitConfig(), show_progress=False)
    return split


def run_variant(workers: int, split: Path, keys: list[str], out: Path, env: dict[str, str]) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "binsight", "train", "--nproc", str(workers), "--data", str(split), "--out", str(out)]
    t0 = time.monotonic()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run(cmd + keys, env=env, capture_output=True, text=True)
    wall = time.monotonic() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"{workers} worker(s) failed:\n{proc.stderr[-3000:]}")
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    n_train = sum(1 for _ in (split / "train.csv").open()) - 1
    last = rows[-1]
    return {
        "workers": workers,
        "threads_per_worker": threads_per_worker(workers),
        "last_epoch_seconds": float(last["seconds"]),
        "images_per_s": n_train / float(last["seconds"]),
        "wall_seconds": round(wall, 2),
        "cpu_seconds": round(cpu, 2),
        "final_train_loss": float(last["train_loss"]),
        "final_val_macro_f1": float(last["val_macro_f1"]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--img-size", type=int, default=112)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()

    root = Path(os.environ.get("BINSIGHT_BENCH_DIR", "/tmp/binsight-bench")) / "ddp"
    split = make_data(root, args.n)
    keys = [f"model={args.model}", "weights=none", "freeze_backbone=false", "head=softmax", "loss=ce"]
    keys += [f"img_size={args.img_size}", f"batch_size={args.batch_size}", "warmup_epochs=0", "decision=argmax"]
    keys += [f"epochs={args.epochs}", "augment=light", "patience=0", "seed=0", f"cache_dir={root / 'cache'}"]
    env = dict(os.environ, BINSIGHT_NO_PROGRESS="1")
    env.pop("OMP_NUM_THREADS", None)  # the launcher sets threads per worker

    # Warm the decode cache so that no variant pays for decoding.
    from binsight.training.data import load_split_data

    load_split_data(split, args.img_size, "letterbox", root / "cache")

    runs = [run_variant(w, split, keys, root / f"run-{w}", env) for w in args.workers]
    results = []
    for w in dict.fromkeys(args.workers):
        mine = [r for r in runs if r["workers"] == w]
        results.append(
            {
                "workers": w,
                "threads_per_worker": mine[0]["threads_per_worker"],
                "runs": len(mine),
                **{k: statistics.median(r[k] for r in mine) for k in ("images_per_s", "wall_seconds", "cpu_seconds")},
            }
        )
    base = results[0]["images_per_s"]
    for r in results:
        r["speedup_vs_first"] = round(r["images_per_s"] / base, 3)
    load = os.getloadavg()
    print(f"{args.model} {args.img_size}px, global batch {args.batch_size}, {args.n} SynthBins images")
    print(f"{'workers':>7} {'threads':>7} {'runs':>4} {'img/s':>8} {'speedup':>8} {'wall s':>7} {'CPU s':>7}")
    for r in results:
        print(
            f"{r['workers']:>7} {r['threads_per_worker']:>7} {r['runs']:>4} {r['images_per_s']:>8.1f} "
            f"{r['speedup_vs_first']:>8.2f} {r['wall_seconds']:>7.1f} {r['cpu_seconds']:>7.1f}"
        )
    print(f"load average at the end: {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {len(os.sched_getaffinity(0))} cores")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "benchmark": "ddp_scaling",
                "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "machine": machine_info(),
                "config": vars(args),
                "load_average_at_end": load,
                "results": results,
                "runs": runs,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
