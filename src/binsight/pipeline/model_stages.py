"""Model stages of ``binsight pipeline`` (train, evaluate, …), registered on demand so the data stages
work before the model code is imported."""

from __future__ import annotations


def register_all() -> None:
    """Import the modules that register model stages (idempotent)."""
