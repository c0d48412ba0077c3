"""float32 vs bf16 autocast per model family and job, on this CPU: the data behind ``amp: auto``.

    .venv/bin/python benchmarks/precision.py [--threads 2] [--rounds 3] [--only resnet18-train,lite0-infer]

Each case is a tiny synthetic workload (random inputs, no data loading), run in float32 and in bf16 autocast
*interleaved* step by step (so host drift hits both alike), channels-last, ``--threads`` torch threads:

- ``<model>-infer``: ``inference_mode`` forward, batch 8, 224 px (serving / evaluation / feature caching);
- ``<model>-train``: forward + float32 loss + backward + AdamW step (float32 master weights).

It reports the median images/s, the median and quartiles of the per-round ratio bf16/float32 (also per
CPU-second of the process), the float32 and bf16 matmul peaks (2048²)
measured the same way, the CPU features :mod:`binsight.precision` detected and the decision ``amp: auto``
takes for each case. Writes ``benchmarks/results/precision.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/machine.py
from machine import machine_info, matmul_peaks  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "precision.json"

# name -> (model, job, batch, img_size)
CASES = {
    "resnet18-train": ("resnet18", "train", 32, 128),
    "resnet18-infer": ("resnet18", "infer", 8, 224),
    "resnet50-infer": ("resnet50", "infer", 8, 224),
    "lite0-infer": ("efficientnet_lite0", "infer", 8, 224),
    "lite0-train": ("efficientnet_lite0", "train", 32, 224),
    "mobilenet_v3-infer": ("mobilenet_v3_large", "infer", 8, 224),
    "convnext_tiny-infer": ("convnext_tiny", "infer", 8, 224),
}


def make_step(model_name: str, job: str, batch: int, size: int, bf16: bool):
    """A closure running one step of ``job`` in the given precision; returns (step, images per step)."""
    from binsight.models import create_model

    torch.manual_seed(0)
    model = create_model(model_name, 5).to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 5, (batch,))
    ctx = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else None

    if job == "infer":
        model.eval()

        def step() -> None:
            with torch.inference_mode():
                if ctx is None:
                    model(x)
                else:
                    with ctx():
                        model(x)

        return step, batch

    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        if ctx is None:
            out = model(x)
        else:
            with ctx():
                out = model(x)
        loss = loss_fn(out.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step, batch


def run_case(name: str, rounds: int) -> dict:
    """``rounds`` rounds of one step per precision, the order alternating, so drift hits both alike.

    Throughput is reported per wall second and per CPU second of this process (``time.process_time``): on a
    shared host the second is the steadier measure of what the kernels cost.
    """
    model_name, job, batch, size = CASES[name]
    runners = {prec: make_step(model_name, job, batch, size, prec == "bf16") for prec in ("float32", "bf16")}
    for step, _ in runners.values():  # warm-up: oneDNN primitive creation, allocator
        step()
        step()
    wall: dict[str, list[float]] = {"float32": [], "bf16": []}
    cpu: dict[str, list[float]] = {"float32": [], "bf16": []}
    loads = []
    for r in range(rounds):
        for prec in ("float32", "bf16") if r % 2 == 0 else ("bf16", "float32"):
            step, n = runners[prec]
            t0, c0 = time.perf_counter(), time.process_time()
            step()
            wall[prec].append(n / (time.perf_counter() - t0))
            cpu[prec].append(n / max(1e-9, time.process_time() - c0))
        loads.append(round(os.getloadavg()[0], 2))
    ratios = [b / f for f, b in zip(wall["float32"], wall["bf16"], strict=True)]
    cpu_ratios = [b / f for f, b in zip(cpu["float32"], cpu["bf16"], strict=True)]
    return {
        "model": model_name,
        "job": job,
        "batch": batch,
        "img_size": size,
        "rounds": rounds,
        "median_float32": round(statistics.median(wall["float32"]), 2),
        "median_bf16": round(statistics.median(wall["bf16"]), 2),
        "ratio_median": round(statistics.median(ratios), 3),
        "ratio_quartiles": [round(q, 3) for q in statistics.quantiles(ratios, n=4)] if rounds > 1 else [],
        "cpu_median_float32": round(statistics.median(cpu["float32"]), 2),
        "cpu_median_bf16": round(statistics.median(cpu["bf16"]), 2),
        "cpu_ratio_median": round(statistics.median(cpu_ratios), 3),
        "load_avg_1min": [min(loads), max(loads)],
    }


def main(argv: list[str] | None = None) -> int:
    from binsight.precision import cpu_features, decide

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=9, help="steps per precision, alternating")
    parser.add_argument("--only", default="", help="comma-separated case names (default: all)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="result JSON (default results/precision.json)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    names = [n for n in args.only.split(",") if n] or list(CASES)
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")

    features = cpu_features()
    report: dict = {
        "benchmark": "precision",
        "command": "python benchmarks/precision.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "torch": torch.__version__,
        "threads": args.threads,
        "matmul_peaks_gflops": matmul_peaks(),
        "cases": {},
    }
    print(f"cpu: {features.summary()}  matmul peaks {report['matmul_peaks_gflops']}", flush=True)
    for name in names:
        case = run_case(name, args.rounds)
        job = "train" if case["job"] == "train" else "serve"
        case["auto_decision"] = decide(job, case["model"], "auto", features).mode
        report["cases"][name] = case
        print(
            f"{name:20s} float32 {case['median_float32']:6.1f} img/s  bf16 {case['median_bf16']:6.1f} img/s  "
            f"ratio {case['ratio_median']:.2f} (quartiles {case['ratio_quartiles']}, per CPU-s "
            f"{case['cpu_ratio_median']:.2f})  auto -> {case['auto_decision']}  load {case['load_avg_1min']}",
            flush=True,
        )
    report["machine"]["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
