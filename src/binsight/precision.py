"""The precision policy: which numeric mode (float32 or bf16 autocast) each job runs in, on this machine.

One decision for every torch path — training, validation/evaluation, feature caching and the torch serving
backend — from three inputs:

- the CPU's matrix features, detected once (:func:`cpu_features`: ``/proc/cpuinfo`` flags and
  ``torch.backends.cpu.get_cpu_capability()``): ``amx`` (AMX-BF16 tiles), ``avx512_bf16`` (bf16 dot products
  in AVX-512) or ``none`` (bf16 would be emulated: always slower);
- the job's phase (``train`` vs inference: ``eval``/``features``/``serve``) and the model family;
- the config's ``amp``: ``auto`` (the measured table :data:`AUTO_BF16`), ``off`` (float32) or ``bf16``
  (forced, also where it is emulated — useful to check accuracy on any machine; a warning says it is slow).

bf16 here is *autocast*: weights stay float32 (the optimizer updates float32 master weights), matmuls and
convolutions run in bf16, and callers compute the loss and probabilities on ``.float()`` outputs.
On CUDA, ``auto`` means bf16 when the GPU supports it. On a CPU without bf16 instructions ``auto`` is float32,
so nothing changes there. The table's numbers are in BENCHMARKS.md ("Precision") and docs/train.md.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

log = logging.getLogger(__name__)

AMP_MODES = ("auto", "off", "bf16")
JOBS = ("train", "eval", "features", "serve")
Engine = Literal["amx", "avx512_bf16", "none"]
Phase = Literal["train", "infer"]

# ``amp: auto`` → bf16 for (engine, phase, family) in this set; float32 otherwise (also for families nobody
# measured). The rows and their bf16/float32 speed-ups are in docs/train.md ("Precision"), measured with
# benchmarks/precision.py; a row is here only where bf16 won in every quartile of the interleaved rounds.
AUTO_BF16: frozenset[tuple[str, str, str]] = frozenset(
    {
        # AMX (issue #17, 2-core Xeon): ResNet-50 inference 2.3x, ResNet-18 training 2.5x, Lite0 inference
        # 2.0x; Lite0 training only 1.05x, so it stays float32.
        ("amx", "train", "resnet"),
        ("amx", "infer", "resnet"),
        ("amx", "infer", "efficientnet"),
        # AVX-512 BF16 without AMX (AMD EPYC, benchmarks/results/precision*.json, per CPU-second): ResNet-18
        # training 1.73x, ResNet-18/50 inference 1.72x/2.82x, Lite0 inference 2.97x, MobileNetV3 inference
        # 1.82x, ConvNeXt-T inference 2.89x. Lite0 training (1.23x on 1 thread, 0.72x in a noisy 2-thread
        # run) stays float32: its gain is not safe.
        ("avx512_bf16", "train", "resnet"),
        ("avx512_bf16", "infer", "resnet"),
        ("avx512_bf16", "infer", "efficientnet"),
        ("avx512_bf16", "infer", "mobilenet"),
        ("avx512_bf16", "infer", "convnext"),
    }
)


@dataclass(frozen=True)
class CpuFeatures:
    """The matrix-relevant features of a CPU.

    Args:
        flags: the ``flags`` of ``/proc/cpuinfo`` (empty where unknown).
        capability: ``torch.backends.cpu.get_cpu_capability()`` (``AVX512``, ``AVX2``, ``DEFAULT`` …).
        model: the CPU's model name.
    """

    flags: frozenset[str] = frozenset()
    capability: str = "DEFAULT"
    model: str = "unknown"

    @property
    def amx(self) -> bool:
        return "amx_bf16" in self.flags and "amx_tile" in self.flags

    @property
    def avx512_bf16(self) -> bool:
        # torch's bf16 kernels need its AVX-512 build path; the flag alone (with an AVX2 torch) does not help.
        return "avx512_bf16" in self.flags and self.capability.upper().startswith("AVX512")

    @property
    def vnni(self) -> bool:
        return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & self.flags)

    @property
    def engine(self) -> Engine:
        """The best bf16 engine: ``amx``, ``avx512_bf16`` or ``none``."""
        if self.amx:
            return "amx"
        if self.avx512_bf16:
            return "avx512_bf16"
        return "none"

    def summary(self) -> str:
        return f"{self.model}: bf16 engine {self.engine}, vnni {'yes' if self.vnni else 'no'}, torch {self.capability}"

    def to_json(self) -> dict:
        return {
            "model": self.model,
            "capability": self.capability,
            "engine": self.engine,
            "vnni": self.vnni,
            "flags": sorted(f for f in self.flags if f.startswith(("amx", "avx512", "avx_vnni"))),
        }

    @classmethod
    def from_cpuinfo(cls, text: str, capability: str) -> CpuFeatures:
        """Parse ``/proc/cpuinfo`` text (the first processor's ``flags`` and ``model name``)."""
        flags: frozenset[str] = frozenset()
        model = "unknown"
        for line in text.splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "flags" and not flags:
                flags = frozenset(value.split())
            elif key == "model name" and model == "unknown":
                model = value.strip()
        return cls(flags, capability, model)


@functools.cache
def cpu_features() -> CpuFeatures:
    """This machine's :class:`CpuFeatures`, read once per process."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""  # not Linux: no flags, so ``auto`` stays float32
    return CpuFeatures.from_cpuinfo(text, torch.backends.cpu.get_cpu_capability())


def model_family(model: str) -> str:
    """The family a registered model belongs to (``resnet50`` → ``resnet``, ``efficientnet_lite0`` →
    ``efficientnet``); the table is per family because the layer mix (dense 3×3 convolutions vs depthwise
    convolutions and BatchNorm) decides whether bf16 pays."""
    for family in ("resnet", "efficientnet", "mobilenet", "convnext"):
        if model.startswith(family):
            return family
    return model


@dataclass(frozen=True)
class Precision:
    """A decision: ``mode`` (``bf16`` or ``float32``), the device it is for and why.

    ``autocast()`` is the context to run forwards in; outputs should be ``.float()``-ed before the loss or
    probabilities (float32 loss, float32 master weights).
    """

    mode: Literal["bf16", "float32"]
    reason: str
    device_type: str = "cpu"

    @property
    def dtype(self) -> torch.dtype | None:
        return torch.bfloat16 if self.mode == "bf16" else None

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        return autocast(torch.device(self.device_type), self.dtype)


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager[Any]:
    """An autocast context for ``dtype`` on ``device``, or a no-op when ``dtype`` is None (float32)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def amp_dtype(job: str, model: str, amp: str, device: torch.device | str = "cpu") -> torch.dtype | None:
    """The autocast dtype of :func:`decide` (None for float32), logging the decision and its reason."""
    decision = decide(job, model, amp, device=device)
    log.info("precision of %s for %s: %s (%s)", job, model, decision.mode, decision.reason)
    return decision.dtype


def decide(
    job: str,
    model: str,
    amp: str = "auto",
    features: CpuFeatures | None = None,
    device: torch.device | str = "cpu",
) -> Precision:
    """The precision ``job`` (``train``/``eval``/``features``/``serve``) of ``model`` runs in.

    Args:
        job: what runs: training, evaluation/validation, feature caching or serving.
        model: a registered model name (its family selects the row of :data:`AUTO_BF16`).
        amp: ``auto``, ``off`` or ``bf16`` (the config's ``amp``).
        features: the CPU's features (default: this machine's, :func:`cpu_features`).
        device: the torch device the job runs on.

    Raises:
        ValueError: an unknown ``amp`` or ``job``.
    """
    if amp not in AMP_MODES:
        raise ValueError(f"amp must be one of {', '.join(AMP_MODES)}, got {amp!r}")
    if job not in JOBS:
        raise ValueError(f"job must be one of {', '.join(JOBS)}, got {job!r}")
    device = torch.device(device)
    if amp == "off":
        return Precision("float32", "amp: off", device.type)
    if device.type == "cuda":
        if amp == "bf16" or torch.cuda.is_bf16_supported():
            return Precision("bf16", f"amp: {amp} on CUDA", "cuda")
        return Precision("float32", "amp: auto, this GPU has no bf16", "cuda")
    features = features or cpu_features()
    phase: Phase = "train" if job == "train" else "infer"
    family = model_family(model)
    if amp == "bf16":
        if features.engine == "none":
            log.warning(
                "amp: bf16 on a CPU without bf16 instructions (%s): emulated, slower than float32", features.model
            )
            return Precision("bf16", "amp: bf16 (forced; emulated on this CPU)", device.type)
        return Precision("bf16", f"amp: bf16 (forced; {features.engine})", device.type)
    if (features.engine, phase, family) in AUTO_BF16:
        return Precision("bf16", f"amp: auto, {features.engine} {phase} {family}: bf16 measured faster", device.type)
    if features.engine == "none":
        return Precision("float32", "amp: auto, no bf16 instructions on this CPU", device.type)
    return Precision("float32", f"amp: auto, {features.engine} {phase} {family}: bf16 not measured faster", device.type)
