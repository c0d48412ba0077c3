"""What bf16 (and int8) do to real-photo accuracy: the frozen-Lite0 ``abid-fast`` recipe in float32 vs bf16.

    .venv/bin/python benchmarks/precision_accuracy.py [--seeds 0,1,2] [--recipe abid-fast] [--int8] [--threads 1]

On the accuracy benchmark's fixed abid-sample split (``benchmarks/accuracy.py``: stratified 80/10/10, seed 42,
under ``$BINSIGHT_BENCH_DIR``), for every seed:

- ``float32``: trained with ``amp=off`` (float32 features, head, validation), tested with ``torch-fp32``;
- ``bf16``: trained with ``amp=bf16`` (bf16 feature cache, head and validation), tested with ``torch-bf16``;
- ``float32 model, bf16 inference``: the float32 run tested with ``torch-bf16`` (inference rounding alone);
- with ``--int8`` (first seed): the float32 run exported to ``model.int8.onnx`` (``binsight export --int8``'s
  calibration: 128 validation images) and tested with ``onnx-int8``.

Test metrics come from ``evaluate_run(..., calibrate=False)``: macro-F1 and accuracy do not depend on the
temperature. Writes ``benchmarks/results/precision_accuracy.json`` and prints the table with the mean
difference to float32.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from accuracy import bench_dir, make_split, recipe_path  # noqa: E402
from machine import machine_info  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "precision_accuracy.json"


def test_metrics(run_dir: Path, backend: str, threads: int) -> dict:
    from binsight.evaluation.evaluate import evaluate_run

    t0 = time.monotonic()
    m = evaluate_run(run_dir, split="test", calibrate=False, threads=threads, backend=backend)
    return {
        "backend": backend,
        "precision": m.get("precision", backend),
        "macro_f1": round(m["macro_f1"], 4),
        "accuracy": round(m["accuracy"], 4),
        "n": m["n"],
        "seconds": round(time.monotonic() - t0, 1),
        "load_avg_1min": round(os.getloadavg()[0], 2),
    }


def train_run(recipe: str, split_dir: Path, root: Path, amp: str, seed: int) -> tuple[Path, dict]:
    from binsight.config.loader import load_config
    from binsight.config.schemas import TrainConfig
    from binsight.training.run import train

    cfg = load_config(TrainConfig, recipe_path(recipe), [f"amp={amp}", f"seed={seed}"])
    cfg = replace(cfg, data=str(split_dir), cache_dir=str(root / "cache"))
    run_dir = root / "runs" / "precision-accuracy" / f"{Path(recipe).stem}-{amp}-seed{seed}"
    t0 = time.monotonic()
    result = train(cfg, out=run_dir, handle_signals=False)
    info = {
        "train_seconds": round(time.monotonic() - t0, 1),
        "best_epoch": result.best_epoch,
        "val_macro_f1": round(result.best_metrics["macro_f1"], 4),
    }
    return run_dir, info


def int8_metrics(run_dir: Path, threads: int) -> dict:
    from binsight.data.manifest import load_split
    from binsight.evaluation.evaluate import split_dir_of
    from binsight.inference.export import export_onnx, preprocess_rows, quantize_int8
    from binsight.inference.predictor import Predictor

    artifact = run_dir / "artifact"
    export_onnx(artifact)
    reference = Predictor(artifact, backend="torch-fp32", threads=threads)
    val_rows = load_split(split_dir_of(run_dir, None))["val"]
    calibration, _ = preprocess_rows(reference, val_rows, 128, desc="calibration")
    quantize_int8(artifact, calibration)
    return test_metrics(run_dir, "onnx-int8", threads)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds (0,1,2)")
    parser.add_argument(
        "--recipe", default="abid-fast", help="configs/ name or YAML path (abid-fast: frozen Lite0 head)"
    )
    parser.add_argument("--int8", action="store_true", help="also test the first seed's float32 run in onnx-int8")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1)")
    args = parser.parse_args(argv)

    import logging

    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("BINSIGHT_NO_PROGRESS", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    root = bench_dir()
    split_dir, _ = make_split("abid", root)
    seeds = [int(s) for s in args.seeds.split(",") if s]
    rows = []
    for i, seed in enumerate(seeds):
        fp32_dir, fp32_info = train_run(args.recipe, split_dir, root, "off", seed)
        bf16_dir, bf16_info = train_run(args.recipe, split_dir, root, "bf16", seed)
        row = {
            "seed": seed,
            "train": {"float32": fp32_info, "bf16": bf16_info},
            "float32": test_metrics(fp32_dir, "torch-fp32", args.threads),
            "bf16": test_metrics(bf16_dir, "torch-bf16", args.threads),
            "float32 model, bf16 inference": test_metrics(fp32_dir, "torch-bf16", args.threads),
        }
        if args.int8 and i == 0:
            row["float32 model, int8 inference"] = int8_metrics(fp32_dir, args.threads)
        rows.append(row)
        print(json.dumps(row), flush=True)

    paths = [k for k in rows[0] if k not in ("seed", "train")]
    summary = {}
    for path in paths:
        have = [r for r in rows if path in r]
        diffs = [r[path]["macro_f1"] - r["float32"]["macro_f1"] for r in have]
        summary[path] = {
            "macro_f1_mean": round(statistics.mean(r[path]["macro_f1"] for r in have), 4),
            "accuracy_mean": round(statistics.mean(r[path]["accuracy"] for r in have), 4),
            "macro_f1_minus_float32_mean": round(statistics.mean(diffs), 4),
            "macro_f1_minus_float32_by_seed": [round(d, 4) for d in diffs],
            "seeds": [r["seed"] for r in have],
        }
    report = {
        "benchmark": "precision_accuracy",
        "command": "python benchmarks/precision_accuracy.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "recipe": args.recipe,
        "split": str(split_dir),
        "runs": rows,
        "summary": summary,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print("| path | test macro-F1 (mean) | accuracy (mean) | macro-F1 − float32, per seed |")
    print("|---|---|---|---|")
    for path, s in summary.items():
        print(
            f"| {path} | {s['macro_f1_mean']:.3f} | {s['accuracy_mean']:.3f} | "
            f"{', '.join(f'{d:+.3f}' for d in s['macro_f1_minus_float32_by_seed'])} |"
        )
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
