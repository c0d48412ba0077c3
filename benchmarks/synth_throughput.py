"""SynthBins throughput: images/s of ``binsight data synth`` at ABID sizes, one process vs all cores.

    .venv/bin/python benchmarks/synth_throughput.py [--n 400] [--seed 0]

Generates the same ``--n`` images (default config: width 300–550 px, JPEG quality 70–95) twice into a temp
folder, first with ``workers=1`` (the baseline: a plain serial loop) and then with ``workers=cpu_count``,
checks that both runs wrote identical bytes, and writes ``benchmarks/results/synth_throughput.json``.

Wall-clock rates depend on what else runs on the machine, so the CPU seconds per image (which do not) and
the load average are recorded too; ``idle_projection`` is cores × 1 / (CPU seconds per image).
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("BINSIGHT_NO_PROGRESS", "1")

from binsight.config.schemas import SynthConfig  # noqa: E402
from binsight.data.synth import SYNTH_VERSION, generate  # noqa: E402
from machine import cpu_model  # noqa: E402  (benchmarks/machine.py)

RESULTS = Path(__file__).resolve().parent / "results" / "synth_throughput.json"


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != "synth.json":
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def _run(out: Path, n: int, seed: int, workers: int) -> dict:
    cfg = SynthConfig(n=n, seed=seed, workers=workers)
    load0 = os.getloadavg()[0]
    cpu0 = time.process_time()
    child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = generate(out, cfg, show_progress=False)
    child1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time() - cpu0
    cpu += (child1.ru_utime - child0.ru_utime) + (child1.ru_stime - child0.ru_stime)
    jpeg_bytes = sum(p.stat().st_size for p in (out / "bin-images").iterdir())
    return {
        "workers": summary["workers"],
        "seconds": summary["seconds"],
        "images_per_s": summary["images_per_s"],
        "cpu_ms_per_image": round(1000 * cpu / n, 2),
        "mean_jpeg_kb": round(jpeg_bytes / n / 1024, 1),
        "load_avg_1min_before": round(load0, 2),
        "load_avg_1min_after": round(os.getloadavg()[0], 2),
        "digest": _digest(out),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="synth-bench-") as tmp:
        # Warm up imports and the texture bank outside the timed runs.
        generate(Path(tmp) / "warm", SynthConfig(n=4, workers=1), show_progress=False)
        serial = _run(Path(tmp) / "serial", args.n, args.seed, 1)
        parallel = _run(Path(tmp) / "parallel", args.n, args.seed, cores)
    identical = serial.pop("digest") == parallel.pop("digest")
    result = {
        "benchmark": "synth_throughput",
        "command": f"{Path(sys.executable).name} benchmarks/synth_throughput.py --n {args.n} --seed {args.seed}",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"cores": cores, "cpu_model": cpu_model(), "python": platform.python_version()},
        "synth_version": SYNTH_VERSION,
        "n": args.n,
        "config": "defaults: width 300-550 px, aspect 0.55-1.4, JPEG quality 70-95",
        "baseline_workers_1": serial,
        "ours_workers_all": parallel,
        "speedup": round(parallel["images_per_s"] / serial["images_per_s"], 2) if serial["images_per_s"] else None,
        "idle_projection_images_per_s": round(cores * 1000 / parallel["cpu_ms_per_image"], 1),
        "parallel_equals_serial_bytes": identical,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(
        f"\nworkers=1: {serial['images_per_s']} images/s ({serial['cpu_ms_per_image']} CPU ms/image)   "
        f"workers={cores}: {parallel['images_per_s']} images/s   speedup {result['speedup']}x   "
        f"identical bytes: {identical}   -> {RESULTS}"
    )
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
