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


def matmul_peaks(n: int = 2048, seconds: float = 1.5) -> dict[str, float]:
    """float32 and bf16 matmul GFLOP/s (``n``² × ``n``², the torch threads set now), measured interleaved.

    The peak of each precision is the roofline its systems are measured against: a bf16 forward pass is
    judged against the bf16 peak, a float32 one against the float32 peak. Best of three ~``seconds/3`` bursts.
    """
    import time

    import torch

    a32, b32 = torch.randn(n, n), torch.randn(n, n)
    pairs = {"float32": (a32, b32), "bf16": (a32.bfloat16(), b32.bfloat16())}
    best = dict.fromkeys(pairs, 0.0)
    for a, b in pairs.values():
        a @ b  # warm-up
    for _ in range(3):
        for name, (a, b) in pairs.items():
            reps, t0 = 0, time.perf_counter()
            while (elapsed := time.perf_counter() - t0) < seconds / 3 or reps == 0:
                a @ b
                reps += 1
            best[name] = max(best[name], 2 * n**3 * reps / elapsed / 1e9)
    return {name: round(value, 1) for name, value in best.items()}
