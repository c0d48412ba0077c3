"""Inference: the model artifact format and the one :class:`Predictor` (imported lazily, so importing
``binsight.inference`` stays cheap)."""

from __future__ import annotations

from typing import Any

__all__ = ["Predictor"]


def __getattr__(name: str) -> Any:
    if name == "Predictor":
        from binsight.inference.predictor import Predictor

        return Predictor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
