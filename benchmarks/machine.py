"""What every benchmark records about the machine it ran on (shared by the scripts in this folder)."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict[str, Any]:
    """Cores, CPU model and matrix features (bf16 engine, VNNI), Python version and the load average now
    (benchmarks are only comparable when quiet)."""
    from binsight.precision import cpu_features

    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu_model(),
        "cpu_features": cpu_features().to_json(),
        "python": platform.python_version(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
    }


def append_result(path: Path, row: dict[str, Any]) -> None:
    """Append ``row`` to the JSON list in ``path``, re-read first: several sweeps may share one results file."""
    import json

    entries = json.loads(path.read_text()) if path.is_file() else []
    entries.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(entries, indent=2) + "\n")


def matmul_peaks(n: int = 2048, seconds: float = 1.5) -> dict[str, float]:
    """float32 and bf16 matmul peaks in GFLOP/s for the torch threads set now, measured interleaved.

    The peak of each precision is the roofline its systems are measured against: a bf16 forward pass is
    judged against the bf16 peak, a float32 one against the float32 peak. Each peak is the larger of two
    estimates, best of three ~``seconds/3`` bursts each: wall-clock GFLOP/s on all threads, and GFLOP per
    CPU-second of one thread times the thread count. On a quiet host they agree; on a shared one a busy
    measuring loop gets less CPU than request-driven servers do, and only the second estimate still shows
    what the cores can do (so fractions of it stay below 100 %).
    """
    import time

    import torch

    threads = torch.get_num_threads()
    a32, b32 = torch.randn(n, n), torch.randn(n, n)
    pairs = {"float32": (a32, b32), "bf16": (a32.bfloat16(), b32.bfloat16())}
    best = dict.fromkeys(pairs, 0.0)
    for a, b in pairs.values():
        a @ b  # warm-up
    for burst in range(6):
        one_thread = burst % 2 == 1
        torch.set_num_threads(1 if one_thread else threads)
        for name, (a, b) in pairs.items():
            clock = time.process_time if one_thread else time.perf_counter
            reps, t0 = 0, clock()
            while (elapsed := clock() - t0) < seconds / 3 or reps == 0:
                a @ b
                reps += 1
            gflops = 2 * n**3 * reps / max(elapsed, 1e-9) / 1e9
            best[name] = max(best[name], gflops * threads if one_thread else gflops)
    torch.set_num_threads(threads)
    return {name: round(value, 1) for name, value in best.items()}
