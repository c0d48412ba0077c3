"""The audit's per-bin results file: what makes ``binsight audit`` resumable and idempotent.

``results.jsonl`` holds one JSON line per scored photo, keyed by (sha256 of the photo bytes, model version),
with the calibrated probabilities. A re-run over the same (or a larger) prefix scores only photos it has not
seen with this model; a changed record is re-checked from the stored probabilities without re-scoring, and a
new model version scores everything again. Lines are appended and flushed per batch; a line cut by a crash is
ignored on the next run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

RESULTS_FILE = "results.jsonl"


class ResultsStore:
    """Probabilities already computed, by (sha256, model version)."""

    def __init__(self, folder: Path) -> None:
        self.path = Path(folder) / RESULTS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._probs: dict[tuple[str, str], tuple[list[str], np.ndarray]] = {}
        self.torn_lines = 0
        if self.path.is_file():
            with self.path.open(encoding="utf-8", errors="replace") as f:
                for line in f:
                    try:
                        entry = json.loads(line)
                        key = (entry["sha256"], entry["model_version"])
                        self._probs[key] = (list(entry["class_labels"]), np.asarray(entry["probabilities"], float))
                    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                        self.torn_lines += 1
        self._file = self.path.open("a", encoding="utf-8")

    def __len__(self) -> int:
        return len(self._probs)

    def get(self, sha256: str, version: str, class_labels: list[str]) -> np.ndarray | None:
        """The stored probabilities for this photo and model, or None."""
        hit = self._probs.get((sha256, version))
        if hit is None or hit[0] != list(class_labels):
            return None
        return hit[1]

    def add(self, sha256: str, version: str, class_labels: list[str], probs: np.ndarray) -> None:
        entry = {
            "sha256": sha256,
            "model_version": version,
            "class_labels": list(class_labels),
            "probabilities": [float(p) for p in probs],  # exact: a re-run gives the same rows
        }
        self._file.write(json.dumps(entry) + "\n")
        self._probs[(sha256, version)] = (list(class_labels), np.asarray(probs, float))

    def flush(self) -> None:
        """Make the lines written so far durable (called once per batch)."""
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if not self._file.closed:
            self.flush()
            self._file.close()
