"""The inference engine registry: backend name → the class that runs the network.

Light on purpose (no torch, no onnxruntime): config validation and the CLI's ``--backend`` choices read
:func:`backend_names`, and the class is imported only when a Predictor builds it. A backend class takes
``(meta, folder, threads=, device=)`` and has ``run(batch) -> outputs`` (see ``predictor.Backend``).

Example::

    register_backend("tensorrt", "my_package.trt:TensorRTBackend")
"""

from __future__ import annotations

import importlib

from binsight.errors import BinsightError

_REGISTRY: dict[str, str] = {
    "torch": "binsight.inference.predictor:TorchBackend",
    "torch-bf16": "binsight.inference.torch_backend:TorchBf16Backend",
    "torch-fp32": "binsight.inference.torch_backend:TorchFp32Backend",
    "onnx": "binsight.inference.onnx_backend:OnnxBackend",
    "onnx-int8": "binsight.inference.onnx_backend:OnnxInt8Backend",
}


def register_backend(name: str, target: str) -> None:
    """Register backend ``name`` as ``"module:Class"`` (imported when first used)."""
    if ":" not in target:
        raise ValueError(f"backend target must look like 'module:Class', got {target!r}")
    _REGISTRY[name] = target


def backend_names() -> tuple[str, ...]:
    """Every registered backend name, in registration order."""
    return tuple(_REGISTRY)


def check_backend(name: str) -> str:
    """``name`` when registered, else a ValueError listing the registered names."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown backend {name!r}; expected one of {', '.join(_REGISTRY)}")
    return name


def backend_class(name: str) -> type:
    """Import and return the class of backend ``name``.

    Raises:
        BinsightError: unknown name, or its module cannot be imported (e.g. onnxruntime not installed).
    """
    target = _REGISTRY.get(name)
    if target is None:
        raise BinsightError(f"unknown inference backend {name!r}; available: {', '.join(_REGISTRY)}")
    module_name, _, class_name = target.partition(":")
    try:
        cls: type = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise BinsightError(f"inference backend {name!r} is unavailable: {exc}") from None
    return cls
