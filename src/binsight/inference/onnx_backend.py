"""ONNX Runtime backends for the Predictor: ``onnx`` (``model.onnx``, float32) and ``onnx-int8``
(``model.int8.onnx``, statically quantized). Both files are written by ``binsight export``.

The session runs on the CPU execution provider with ``threads`` intra-op threads and one inter-op thread
(the server's single inference worker is the only caller), full graph optimizations, and sequential
execution. Inputs and outputs are those of the export: ``input`` float32 NCHW → ``outputs`` raw head outputs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from binsight.errors import BinsightError
from binsight.inference.artifact import ArtifactMeta, run_dir_of

ONNX_FILE = "model.onnx"
ONNX_INT8_FILE = "model.int8.onnx"
_FILES = {"onnx": ONNX_FILE, "onnx-int8": ONNX_INT8_FILE}


def onnx_file_for(folder: str | Path, backend: str = "onnx") -> Path:
    """The ONNX file a backend needs in an artifact folder.

    Raises:
        BinsightError: the backend is unknown or its file is missing (the message says how to create it).
    """
    if backend not in _FILES:
        raise BinsightError(f"unknown ONNX backend {backend!r}; expected one of {', '.join(_FILES)}")
    path = Path(folder) / _FILES[backend]
    if not path.is_file():
        flag = " --int8" if backend == "onnx-int8" else ""
        raise BinsightError(
            f"{path} is missing: backend {backend!r} needs it; create it with "
            f"`binsight export --run {run_dir_of(folder)[0]} "
            f"--format onnx{flag}`"
        )
    return path


def make_session(path: str | Path, threads: int | None = None):
    """An ONNX Runtime CPU inference session for ``path`` with ``threads`` intra-op threads."""
    import onnxruntime as ort

    from binsight.inference.predictor import resolve_threads

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = resolve_threads(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle intra-op threads sleep instead of spinning: a server decodes JPEGs on the same cores, and spinning
    # threads took that CPU from it (serving benchmark, 2 cores: 19.7 vs 17.1 req/s at saturation, mean of 3).
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
        raise BinsightError(
            f"{path} is not a loadable ONNX model ({exc}); re-create it with `binsight export`"
        ) from None


class OnnxBackend:
    """Run the artifact's ``model.onnx`` in ONNX Runtime.

    Args:
        meta: The artifact's metadata (unused beyond checks; preprocessing is the Predictor's).
        folder: The artifact folder.
        threads: Intra-op threads (default: ``OMP_NUM_THREADS`` or all CPUs).
        device: Only ``cpu`` is supported.
    """

    name = "onnx"
    file_name = ONNX_FILE

    def __init__(self, meta: ArtifactMeta, folder: Path, threads: int | None = None, device: str = "cpu") -> None:
        if device not in ("cpu", "auto"):
            raise BinsightError(f"the {self.name} backend runs on the CPU only, not on {device!r}")
        self.meta = meta
        self.path = onnx_file_for(folder, self.name)
        self.session = make_session(self.path, threads)
        self.input_name = self.session.get_inputs()[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(batch, dtype=np.float32)
        return np.asarray(self.session.run(None, {self.input_name: x})[0], dtype=np.float32)


class OnnxInt8Backend(OnnxBackend):
    """Run the statically quantized ``model.int8.onnx`` (QDQ) in ONNX Runtime."""

    name = "onnx-int8"
    file_name = ONNX_INT8_FILE
