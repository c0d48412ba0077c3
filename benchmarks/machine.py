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
    """Cores, CPU model, Python version and the load average now (benchmarks are only comparable when quiet)."""
    return {
        "cores": os.cpu_count(),
        "cpu_model": cpu_model(),
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
