"""Training throughput: epochs of ``binsight train`` vs the capstone report's loop, measured in the same run.

    .venv/bin/python benchmarks/train_throughput.py [--n 500] [--model resnet18] [--weights none] [--img-size 128]
                                                    [--batch-size 32] [--epochs 3] [--threads 2] [--amp off,auto]
                                                    [--repeats 1]

Data: ``--n`` SynthBins images (seed 0, ABID-sized JPEGs) split 80/10/10 into ``$BINSIGHT_BENCH_DIR``
(default ``/tmp/binsight-bench``), so 400 training images at the default ``--n 500``.

Variants, each in its own subprocess (so peak memory is that variant's own):

- ``seed``: ``benchmarks/seed_style_train.py`` — ImageFolder-like dataset, PIL ``Resize``/``CenterCrop``/
  ``ToTensor``/``Normalize``, ``DataLoader(num_workers=2)``; decodes every image every epoch.
- ``binsight``: ``binsight.training.run.train`` (what ``binsight train`` runs) with the same model, weights,
  resolution, centre-crop preprocessing, batch size, optimiser and no augmentation, starting from an empty
  decode cache. Epoch 1 includes building the cache; epochs 2+ read it (memory-mapped uint8). One variant per
  ``--amp`` value (``off``: float32; ``auto``: what :mod:`binsight.precision` picks here; ``bf16``).

``--repeats`` runs all variants that many times, the order reversed every other time (host drift spreads over
all variants); warm-epoch figures are medians over repeats. Rooflines: the float32 and bf16 matmul peaks
(2048², ``--threads``) are measured at the start and the end of the run (best kept), and each variant's warm
images/s × training FLOP per image (forward + backward, counted by ``torch.utils.flop_counter``) is reported
as a fraction of the peak of the precision it trains in. Epochs include the validation pass, so the fraction
is a lower bound.

Each epoch is train + validation; epoch 1 of both variants includes building the model and data. Every epoch
is timed from the end of the previous one, so checkpoint writes (binsight saves ``last.pt``/``best.pt`` every
epoch) are counted. Peak memory is ``ru_maxrss`` of the variant's process, plus that of its own children
(the DataLoader workers) reported separately; for children it is the largest single child, and in this
environment ``import torch`` itself leaves one ~430 MB helper child, so that much appears for both variants.
Writes ``benchmarks/results/train_throughput.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/machine.py
from machine import machine_info, matmul_peaks  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "train_throughput.json"


def bench_dir() -> Path:
    return Path(os.environ.get("BINSIGHT_BENCH_DIR", "/tmp/binsight-bench"))


def make_data(n: int) -> Path:
    """A SynthBins split of ``n`` images (built once, then reused)."""
    from binsight.config.schemas import SplitConfig, SynthConfig
    from binsight.data.split import split_dataset
    from binsight.data.synth import generate

    root = bench_dir()
    src, out = root / f"synth-{n}", root / f"synth-{n}-split"
    if not (src / "synth.json").is_file():
        generate(src, SynthConfig(n=n, seed=0), show_progress=False, overwrite=True)
    if not (out / "split_summary.json").is_file():
        split_dataset(src, out, SplitConfig(seed=42, val=0.1, test=0.1), show_progress=False)
    return out


def child_binsight(args: argparse.Namespace) -> dict:
    """Run ``train`` for ``args.epochs`` epochs on an empty cache; time each epoch."""
    import torch

    from binsight.config.schemas import TrainConfig
    from binsight.training.run import train

    torch.set_num_threads(args.threads)
    work = bench_dir() / f"throughput-binsight-{args.amp}"
    shutil.rmtree(work, ignore_errors=True)
    cfg = TrainConfig(
        name="throughput",
        data=str(args.data),
        model=args.model,
        weights=args.weights,
        head="softmax",
        loss="ce",
        freeze_backbone=False,  # the seed loop trains the whole network
        warmup_epochs=0.0,
        decision="argmax",
        img_size=args.img_size,
        resize="center_crop",
        epochs=args.epochs,
        batch_size=args.batch_size,
        optimizer="adam",
        lr=2.0e-5,
        weight_decay=1.34e-6,
        scheduler="none",
        patience=0,
        augment="none",
        amp=args.amp,
        cache_dir=str(work / "cache"),
    )
    ends: list[float] = []
    t_start = time.monotonic()
    result = train(cfg, out=work / "run", on_epoch_end=[lambda e, row: ends.append(time.monotonic())])
    t_done = time.monotonic()
    epoch_seconds = [ends[0] - t_start] + [b - a for a, b in zip(ends, ends[1:], strict=False)]
    return {
        "n_train": _count_rows(args.data / "train.csv"),
        "n_val": _count_rows(args.data / "val.csv"),
        "epoch_seconds": epoch_seconds,
        "train_loop_seconds": [row["seconds"] for row in result.history],  # batches + validation, per trainer
        "finish_seconds": t_done - ends[-1],  # artifact export and plots after the last epoch
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_rss_children_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
    }


def _count_rows(csv_path: Path) -> int:
    with open(csv_path, encoding="utf-8") as f:
        return max(0, sum(1 for _ in f) - 1)


def child_seed(args: argparse.Namespace) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from seed_style_train import seed_style_train

    return seed_style_train(
        args.data, args.model, args.img_size, args.batch_size, args.epochs, weights=args.weights, threads=args.threads
    )


def train_gflop_per_image(model_name: str, img_size: int) -> float:
    """Forward + backward GFLOP of one image (convolutions and matmuls, counted by torch's FLOP counter)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from binsight.models import create_model

    model = create_model(model_name, 5).train()
    x = torch.randn(2, 3, img_size, img_size)
    with FlopCounterMode(display=False) as counter:
        model(x).float().sum().backward()
    return counter.get_total_flops() / 2 / 1e9


def run_child(variant: str, args: argparse.Namespace, data: Path, amp: str = "off") -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        variant,
        "--data",
        str(data),
        "--model",
        args.model,
        "--weights",
        args.weights,
        "--img-size",
        str(args.img_size),
        "--batch-size",
        str(args.batch_size),
        "--epochs",
        str(args.epochs),
        "--threads",
        str(args.threads),
        "--amp",
        amp,
    ]
    env = {**os.environ, "BINSIGHT_NO_PROGRESS": "1"}
    load_before = os.getloadavg()[0]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{variant} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    n = out["n_train"]
    if variant == "binsight":
        from binsight.precision import decide

        precision = decide("train", args.model, amp).mode
        variant = f"binsight (amp {amp}: {precision})"
    else:
        precision = "float32"
    out.update(
        variant=variant,
        precision=precision,
        process_wall_seconds=round(wall, 2),
        images_per_s=[round(n / s, 2) for s in out["epoch_seconds"]],
        epoch_seconds=[round(s, 2) for s in out["epoch_seconds"]],
        load_avg_1min_before=round(load_before, 2),
        load_avg_1min_after=round(os.getloadavg()[0], 2),
    )
    return out


def format_table(rows: list[dict]) -> str:
    lines = ["| variant | epoch | seconds | train images/s | peak RSS MB (+ workers) |", "|---|---|---|---|---|"]
    for r in rows:
        for i, (s, ips) in enumerate(zip(r["epoch_seconds"], r["images_per_s"], strict=True), 1):
            mem = f"{r['peak_rss_mb']:.0f}" + (
                f" (+{r['peak_rss_children_mb']:.0f})" if r["peak_rss_children_mb"] > 1 else ""
            )
            lines.append(f"| {r['variant']} | {i}{' (cold)' if i == 1 else ''} | {s:.1f} | {ips:.1f} | {mem} |")
    return "\n".join(lines)


def summarise(runs: list[dict], peaks: dict[str, float], gflop: float) -> list[dict]:
    """One row per variant: medians over repeats of warm images/s and cold epoch seconds, peak RSS, roofline."""
    import statistics

    rows = []
    for variant in dict.fromkeys(r["variant"] for r in runs):
        mine = [r for r in runs if r["variant"] == variant]
        warm = [statistics.median(r["images_per_s"][1:] or r["images_per_s"]) for r in mine]
        ips = statistics.median(warm)
        precision = mine[0]["precision"]
        peak = peaks["bf16" if precision == "bf16" else "float32"]
        rows.append(
            {
                "variant": variant,
                "precision": precision,
                "warm_images_per_s": round(ips, 2),
                "warm_images_per_s_by_repeat": [round(w, 2) for w in warm],
                "cold_epoch_seconds": round(statistics.median(r["epoch_seconds"][0] for r in mine), 2),
                "peak_rss_mb": round(max(r["peak_rss_mb"] for r in mine)),
                "roofline_fraction": round(ips * gflop / peak, 3),
                "load_avg_1min": [
                    min(r["load_avg_1min_before"] for r in mine),
                    max(r["load_avg_1min_after"] for r in mine),
                ],
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500, help="SynthBins images (80%% train)")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--weights", default="none")
    parser.add_argument("--img-size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads per variant")
    parser.add_argument("--amp", default="off,auto", help="binsight variants, one per amp value (off,auto)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of every variant, order alternating")
    parser.add_argument("--child", choices=("binsight", "seed"), help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        out = child_binsight(args) if args.child == "binsight" else child_seed(args)
        print(json.dumps(out))
        return 0

    import torch

    torch.set_num_threads(args.threads)
    data = make_data(args.n)
    peaks = matmul_peaks()
    gflop = train_gflop_per_image(args.model, args.img_size)
    plan = [("seed", "off"), *(("binsight", amp) for amp in args.amp.split(",") if amp)]
    runs: list[dict] = []
    for r in range(args.repeats):
        for variant, amp in plan if r % 2 == 0 else plan[::-1]:
            runs.append(run_child(variant, args, data, amp))
            print(format_table(runs[-1:]), flush=True)
    after = matmul_peaks()
    peaks = {k: max(v, after[k]) for k, v in peaks.items()}
    rows = summarise(runs, peaks, gflop)
    seed, ours = rows[0], rows[1:]
    best_ours = max(ours, key=lambda r: r["warm_images_per_s"])
    report = {
        "benchmark": "train_throughput",
        "command": "python benchmarks/train_throughput.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "setup": {
            "data": f"SynthBins n={args.n} seed 0, split 80/10/10 (seed 42)",
            "model": args.model,
            "weights": args.weights,
            "img_size": args.img_size,
            "batch_size": args.batch_size,
            "resize": "center_crop (both)",
            "optimizer": "adam lr 2e-5, no augmentation",
            "torch_threads": args.threads,
            "epoch": "train split + val pass; epoch 1 includes model and data setup",
            "repeats": args.repeats,
        },
        "matmul_peaks_gflops": peaks,
        "train_gflop_per_image": round(gflop, 3),
        "runs": runs,
        "variants": rows,
        "speedup_warm_epochs": {
            r["variant"]: round(r["warm_images_per_s"] / seed["warm_images_per_s"], 2) for r in ours
        },
        "speedup_epoch1_cold": {
            r["variant"]: round(seed["cold_epoch_seconds"] / r["cold_epoch_seconds"], 2) for r in ours
        },
        "memory_ratio_binsight_over_seed": round(best_ours["peak_rss_mb"] / seed["peak_rss_mb"], 2),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nmatmul peaks {peaks} GFLOP/s; training {gflop:.2f} GFLOP/image")
    for r in rows:
        print(
            f"{r['variant']:<32} warm {r['warm_images_per_s']:6.1f} img/s  "
            f"cold epoch {r['cold_epoch_seconds']:5.1f} s  "
            f"{r['roofline_fraction']:.0%} of the {r['precision']} peak  peak RSS {r['peak_rss_mb']:.0f} MB  "
            f"load {r['load_avg_1min']}"
        )
    print(f"speedup over the seed loop, warm epochs: {report['speedup_warm_epochs']}")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
