"""Benchmark: `binsight tune` against the capstone report's way of tuning, in the same run.

* ours: ``binsight tune`` — TPE sampler, median pruning on the per-epoch validation macro-F1, decode and
  feature caches shared by every trial, ``--jobs 2`` worker processes (one thread each).
* baseline (the report's SageMaker tuning): the same number of trials, run one after another, each a full
  training job (``binsight train`` in its own process with its own empty cache, as every SageMaker job
  downloaded and decoded the data again), parameters drawn at random, no pruning.

Both search the report's space (lr, weight decay, batch size, frozen backbone, patience) with the same base
training config and the same per-trial epoch budget on a SynthBins split. Reported: wall time to the best
trial (from the start of each method), total wall time, best validation macro-F1.

    .venv/bin/python benchmarks/tuning.py [--n 400] [--trials 8] [--epochs 8] [--model tiny_cnn] [--weights none]

Writes ``benchmarks/results/tuning.json`` and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

from machine import machine_info  # noqa: E402


def make_split(work: Path, n: int) -> Path:
    from binsight.config.schemas import SplitConfig, SynthConfig
    from binsight.data.split import split_dataset
    from binsight.data.synth import generate

    data, split = work / "synth", work / "split"
    if not (split / "train.csv").is_file():
        shutil.rmtree(data, ignore_errors=True)
        generate(data, SynthConfig(n=n, seed=0, width_min=96, width_max=128, workers=2), show_progress=False)
        split_dataset(data, split, SplitConfig(val=0.2, test=0.1, check_images=False), show_progress=False)
    return split


MODEL = ["model=tiny_cnn", "weights=none", "img_size=64"]


def base_train(epochs: int) -> list[str]:
    return [
        *MODEL,
        f"epochs={epochs}",
        "head=softmax",  # the seed-style tuner this is compared with trains a softmax head with cross-entropy
        "loss=ce",
        "warmup_epochs=0",
        "optimizer=adam",
        "augment=none",
        "seed=0",
    ]


def env(threads: int) -> dict[str, str]:
    e = dict(os.environ)
    e.update({"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "BINSIGHT_NO_PROGRESS": "1"})
    return e


def run_ours(work: Path, split: Path, trials: int, epochs: int, jobs: int) -> dict:
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    out, cache = work / "ours", work / "ours-cache"
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)
    cmd = [sys.executable, "-m", "binsight", "tune", "--data", str(split), "--trials", str(trials)]
    cmd += ["--jobs", str(jobs), "--out", str(out), "startup_trials=4", "pruner=median", "pruner_startup=2"]
    cmd += ["pruner_warmup=1", f"train.cache_dir={cache}", *(f"train.{kv}" for kv in base_train(epochs))]
    t0 = time.time()
    proc = subprocess.run(cmd, env=env(1 if jobs > 1 else 2), capture_output=True, text=True)
    total = time.time() - t0
    if proc.returncode != 0:
        raise SystemExit(f"binsight tune failed:\n{proc.stderr[-3000:]}")
    study = optuna.load_study(study_name="study", storage=JournalStorage(JournalFileBackend(str(out / "journal.log"))))
    best = study.best_trial
    states = {}
    for t in study.trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    return {
        "method": f"binsight tune (TPE + median pruning + shared caches, --jobs {jobs})",
        "command": " ".join(cmd[1:]),
        "trials": len(study.trials),
        "states": states,
        "epochs_trained": sum(len(t.intermediate_values) for t in study.trials),
        "best_value": best.value,
        "best_params": best.params,
        "time_to_best_s": round(best.datetime_complete.timestamp() - t0, 1),
        "total_s": round(total, 1),
    }


def run_baseline(work: Path, split: Path, trials: int, epochs: int) -> dict:
    """The report's way: sequential full training jobs with random parameters, each with a cold cache."""
    import optuna

    from binsight.config.schemas import SearchSpace
    from binsight.tuning.space import suggest

    root = work / "baseline"
    shutil.rmtree(root, ignore_errors=True)
    sampler = optuna.study.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    space = SearchSpace()  # the report's space
    t0 = time.time()
    results = []
    for i in range(trials):
        trial = sampler.ask()
        params = suggest(trial, space)
        run = root / f"trial{i}"
        cmd = [sys.executable, "-m", "binsight", "train", "--data", str(split), "--out", str(run)]
        cmd += [*base_train(epochs), f"cache_dir={root / f'cache{i}'}", *(f"{k}={v}" for k, v in params.items())]
        proc = subprocess.run(cmd, env=env(2), capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"binsight train failed:\n{proc.stderr[-3000:]}")
        import csv

        rows = list(csv.DictReader((run / "metrics.csv").open()))
        value = max(float(r["val_macro_f1"]) for r in rows)
        sampler.tell(trial, value)
        results.append({"trial": i, "value": value, "params": params, "epochs": len(rows), "end_s": time.time() - t0})
    best = max(results, key=lambda r: r["value"])
    return {
        "method": "report's way (sequential full jobs, random sampler, no pruning, cold cache per job)",
        "trials": trials,
        "epochs_trained": sum(r["epochs"] for r in results),
        "best_value": best["value"],
        "best_params": best["params"],
        "time_to_best_s": round(best["end_s"], 1),
        "total_s": round(time.time() - t0, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400, help="SynthBins images")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--model", default="tiny_cnn", help="backbone (efficientnet_lite0: slow on 2 cores)")
    parser.add_argument("--weights", default="none", help="starting weights: none or imagenet")
    parser.add_argument("--img-size", type=int, default=64, help="input side in pixels")
    parser.add_argument("--work", type=Path, default=Path("/tmp/binsight-bench-tune"))
    args = parser.parse_args()
    MODEL[:] = [f"model={args.model}", f"weights={args.weights}", f"img_size={args.img_size}"]
    args.work.mkdir(parents=True, exist_ok=True)
    split = make_split(args.work, args.n)
    baseline = run_baseline(args.work, split, args.trials, args.epochs)
    ours = run_ours(args.work, split, args.trials, args.epochs, args.jobs)
    result = {
        "benchmark": "tuning",
        "machine": machine_info(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "data": {"synthbins_images": args.n, "img_size": args.img_size, "model": args.model, "weights": args.weights},
        "epochs_per_trial": args.epochs,
        "load_average_1m": os.getloadavg()[0],
        "ours": ours,
        "baseline": baseline,
        "speedup_time_to_best": round(baseline["time_to_best_s"] / max(ours["time_to_best_s"], 1e-9), 2),
        "speedup_total": round(baseline["total_s"] / max(ours["total_s"], 1e-9), 2),
    }
    out = REPO / "benchmarks" / "results" / "tuning.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'method':<90} {'trials':>6} {'epochs':>6} {'best F1':>8} {'to best s':>9} {'total s':>8}")
    for r in (baseline, ours):
        print(
            f"{r['method']:<90} {r['trials']:>6} {r['epochs_trained']:>6} {r['best_value']:>8.4f} "
            f"{r['time_to_best_s']:>9.1f} {r['total_s']:>8.1f}"
        )
    print(f"time to best: {result['speedup_time_to_best']}x faster; total: {result['speedup_total']}x; wrote {out}")


if __name__ == "__main__":
    main()
