"""The torch backend with its precision fixed instead of chosen by the policy (``amp: auto``):
``torch-bf16`` (bf16 autocast, float32 outputs) and ``torch-fp32`` (float32). ``torch`` itself is
:class:`binsight.inference.predictor.TorchBackend`, whose precision :func:`binsight.precision.decide` picks.
"""

from __future__ import annotations

from binsight.inference.predictor import TorchBackend


class TorchBf16Backend(TorchBackend):
    """Torch in bf16 autocast, also on a CPU where ``auto`` would choose float32."""

    name = "torch-bf16"
    amp = "bf16"


class TorchFp32Backend(TorchBackend):
    """Torch in float32, also on a CPU where ``auto`` would choose bf16."""

    name = "torch-fp32"
    amp = "off"
