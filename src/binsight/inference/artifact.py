"""The model artifact: ``model.json`` (everything needed to rebuild and feed the network) plus
``model.safetensors`` (the weights of the unwrapped model). Optional ``model.onnx`` / ``model.int8.onnx``.

This module is the single definition of the artifact format; training writes it, every predictor reads it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from binsight.errors import BinsightError
from binsight.utils.io import atomic_write_json, atomic_write_with

FORMAT_VERSION = 1
META_FILE = "model.json"
WEIGHTS_FILE = "model.safetensors"


@dataclass
class ArtifactMeta:
    """The contents of ``model.json``."""

    name: str
    architecture: str
    class_labels: list[str]
    head: str = "softmax"
    input_size: int = 224
    resize: str = "letterbox"
    mean: list[float] = field(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = field(default_factory=lambda: [0.229, 0.224, 0.225])
    temperature: float = 1.0
    # Inventory check: a prediction whose probability for the expected count lies in [low, high) is "review".
    decision_thresholds: dict[str, float] = field(default_factory=lambda: {"review_low": 0.2, "review_high": 0.5})
    # Per-class offsets on log-probabilities after the temperature (binsight.evaluation.decision); [] = none.
    class_bias: list[float] = field(default_factory=list)
    # "argmax", or "macro_f1": evaluate fits class_bias for macro-F1 on val when it calibrates.
    decision_rule: str = "argmax"
    # Average the raw outputs of each image and its horizontal mirror.
    tta_flip: bool = False
    # The training config's amp: the torch backend serves in the precision the model was validated and
    # calibrated in (off: float32 everywhere; auto: the precision policy's pick for this CPU).
    amp: str = "auto"
    # Ensemble: artifact folders (relative to this one) whose raw outputs are averaged; [] = this folder's weights.
    members: list[str] = field(default_factory=list)
    training_data_hash: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    version: str = ""
    created_at: str = ""
    binsight_version: str = ""
    format_version: int = FORMAT_VERSION

    @property
    def num_classes(self) -> int:
        return len(self.class_labels)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def resolve_artifact_dir(path: str | Path) -> Path:
    """Accept a run directory or an artifact folder (or a model.json path) and return the artifact folder."""
    path = Path(path)
    if path.is_file() and path.name == META_FILE:
        return path.parent
    for candidate in (path, path / "artifact"):
        if (candidate / META_FILE).is_file():
            return candidate
    raise BinsightError(
        f"no model artifact at {path}: expected {path}/{META_FILE} or {path}/artifact/{META_FILE} "
        "(pass a run directory from `binsight train` or its artifact/ folder)"
    )


def run_dir_of(path: str | Path) -> tuple[Path, Path]:
    """(run directory, artifact folder) for a run directory, its artifact folder or a model.json path."""
    artifact = resolve_artifact_dir(path)
    return (artifact.parent if artifact.name == "artifact" else artifact), artifact


def read_meta(path: str | Path) -> ArtifactMeta:
    """Read and validate ``model.json`` from an artifact or run directory."""
    folder = resolve_artifact_dir(path)
    try:
        data = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise BinsightError(f"{folder / META_FILE} is unreadable: {exc}") from None
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise BinsightError(f"{folder / META_FILE}: format_version {version!r} is not supported (expected 1)")
    known = set(ArtifactMeta.__dataclass_fields__)
    try:
        return ArtifactMeta(**{k: v for k, v in data.items() if k in known})
    except TypeError as exc:
        raise BinsightError(f"{folder / META_FILE} is missing fields: {exc}") from None


def write_meta(folder: str | Path, meta: ArtifactMeta) -> Path:
    return atomic_write_json(Path(folder) / META_FILE, meta.to_json())


def save_artifact(folder: str | Path, state_dict: dict[str, Any], meta: ArtifactMeta) -> Path:
    """Write weights (safetensors) and ``model.json`` atomically into ``folder``."""
    from safetensors.torch import save

    folder = Path(folder)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    blob = save(tensors, metadata={"architecture": meta.architecture, "format_version": str(FORMAT_VERSION)})
    atomic_write_with(folder / WEIGHTS_FILE, lambda f: f.write(blob))
    write_meta(folder, meta)
    return folder


def load_weights(path: str | Path) -> dict[str, Any]:
    """Load the state dict of an artifact; a truncated or corrupt file gives a clear error."""
    from safetensors.torch import load_file

    folder = resolve_artifact_dir(path)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise BinsightError(f"{weights} is missing")
    try:
        return load_file(str(weights))
    except Exception as exc:  # safetensors raises several types for damaged files
        raise BinsightError(f"{weights} is corrupt or truncated: {exc}") from None
