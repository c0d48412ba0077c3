"""The one Predictor: artifact → preprocessing → backend → probabilities → prediction JSON.

``binsight predict``, ``binsight evaluate``, the HTTP server and the pipeline's smoke test all go through
:class:`Predictor`, so preprocessing (the artifact's eval preset), test-time augmentation (flip averaging),
ensembles, temperature scaling, decision thresholds and the inventory check are defined here once.

The raw outputs of a batch are the mean over the artifact's ``members`` (an ensemble: each an artifact
folder with its own weights; without members, the artifact's own weights) and, with ``tta_flip``, over each
image and its mirror. Probabilities are ``outputs_to_probs(outputs / temperature)`` shifted by the
artifact's ``class_bias`` (:func:`binsight.evaluation.decision.apply_class_bias`), so the arg-max of what
every caller sees is the fitted decision.

The network runs in a *backend*: any object with ``run(batch) -> outputs`` taking a float32 NCHW numpy
array and returning the head's raw outputs as a numpy array. :class:`TorchBackend` lives here; other
backends (ONNX Runtime) are named in the registry :mod:`binsight.inference.backends`.

Example::

    p = Predictor("runs/train/exp")
    print(p.predict_bytes(open("bin.jpg", "rb").read(), expected_quantity=3))
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from PIL import Image

from binsight.data.transforms import EvalPreset, eval_transform
from binsight.errors import BinsightError, DataError
from binsight.inference.artifact import ArtifactMeta, load_weights, read_meta, resolve_artifact_dir
from binsight.utils.cpu import available_cores

# Refuse images above this many pixels before decoding them (a 40 MP image is ~120 MB as RGB; bin photos
# are well under 1 MP). Checked from the header, so a decompression bomb never allocates its pixels.
DEFAULT_MAX_PIXELS = 40_000_000


class Backend(Protocol):
    """What a Predictor needs from an inference engine."""

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Raw head outputs for a float32 NCHW batch: (N, K) logits or (N, K-1) cumulative logits."""
        ...


def resolve_threads(threads: int | None) -> int:
    """``threads`` if given, else ``OMP_NUM_THREADS`` when set, else the number of CPUs."""
    if threads:
        return max(1, int(threads))
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return available_cores()


class TorchBackend:
    """Run the artifact's network in PyTorch (eval mode, inference mode, channels-last), in the precision
    :func:`binsight.precision.decide` picks for serving it under the artifact's training ``amp`` (a model
    trained and calibrated with ``amp: off`` is served in float32; ``torch-bf16``/``torch-fp32`` force one).

    Args:
        meta: The artifact's metadata (architecture, classes, head).
        folder: The artifact folder holding ``model.safetensors``.
        threads: Intra-op threads (see :func:`resolve_threads`); set process-wide by torch.
        device: ``cpu`` or a CUDA device string.
    """

    name = "torch"
    amp = ""  # "" = the artifact's amp; the fixed-precision subclasses set "bf16" / "off"

    def __init__(self, meta: ArtifactMeta, folder: Path, threads: int | None = None, device: str = "cpu") -> None:
        import torch

        from binsight.models import create_model
        from binsight.precision import decide

        torch.set_num_threads(resolve_threads(threads))
        self.device = torch.device(device)
        try:
            model = create_model(meta.architecture, meta.num_classes, weights="none", head=meta.head)
        except (KeyError, ValueError) as exc:
            raise BinsightError(f"{folder}/model.json names a model this binsight cannot build: {exc}") from None
        try:
            model.load_state_dict(load_weights(folder))
        except RuntimeError as exc:
            raise BinsightError(
                f"{folder}/model.safetensors does not match architecture {meta.architecture!r} "
                f"with {meta.num_classes} classes and head {meta.head!r}: {str(exc).splitlines()[0]}"
            ) from None
        self.model = model.to(self.device, memory_format=torch.channels_last).eval()
        self.precision = decide("serve", meta.architecture, self.amp or meta.amp, device=self.device)

    def run(self, batch: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode(), self.precision.autocast():
            x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device)
            out = self.model(x.contiguous(memory_format=torch.channels_last))
            return out.float().cpu().numpy()


def make_backend(name: str, meta: ArtifactMeta, folder: Path, threads: int | None, device: str) -> Backend:
    """Build backend ``name`` from the registry (:mod:`binsight.inference.backends`)."""
    from binsight.inference.backends import backend_class

    return backend_class(name)(meta, folder, threads=threads, device=device)  # type: ignore[no-any-return]


def outputs_to_probs_np(outputs: np.ndarray, head: str, temperature: float = 1.0) -> np.ndarray:
    """Raw head outputs (numpy) → (N, K) float64 class probabilities with the model's own conversion."""
    import torch

    from binsight.models.heads import outputs_to_probs

    probs = outputs_to_probs(torch.from_numpy(np.asarray(outputs, dtype=np.float32)), head, float(temperature))
    return probs.double().numpy()


def label_count(label: str) -> int | None:
    """The item count a class label stands for, or None for a non-numeric label."""
    try:
        return int(str(label))
    except ValueError:
        return None


def check_decision(prob_predicted: float, prob_expected: float, match: bool, thresholds: dict[str, float]) -> str:
    """The inventory-check decision for one image.

    ``confirmed`` when the predicted count equals the expected one and its probability is at least
    ``review_high``; ``mismatch`` when the probability of the expected count is below ``review_low``;
    ``review`` otherwise.
    """
    high = float(thresholds.get("review_high", 0.5))
    low = float(thresholds.get("review_low", 0.2))
    if match and prob_predicted >= high:
        return "confirmed"
    if prob_expected < low:
        return "mismatch"
    return "review"


class Predictor:
    """Load a model artifact once and predict item counts for images.

    Args:
        model_path: A run directory, an artifact folder, or a ``model.json`` path.
        backend: ``torch`` (default) or another registered backend name (e.g. ``onnx``).
        threads: Intra-op threads; default ``OMP_NUM_THREADS`` or all CPUs.
        device: ``cpu`` (default) or a CUDA device.
        max_pixels: Images with more pixels than this are refused before decoding.
        max_batch: Largest batch handed to the backend at once by :meth:`predict_images`.
    """

    def __init__(
        self,
        model_path: str | Path,
        backend: str = "torch",
        threads: int | None = None,
        device: str = "cpu",
        max_pixels: int = DEFAULT_MAX_PIXELS,
        max_batch: int = 64,
    ) -> None:
        self.artifact_dir = resolve_artifact_dir(model_path)
        self.meta = read_meta(self.artifact_dir)
        if max_batch < 1 or max_pixels < 1:
            raise ValueError("max_batch and max_pixels must be >= 1")
        self.max_pixels = int(max_pixels)
        self.max_batch = int(max_batch)
        self.class_labels = [str(label) for label in self.meta.class_labels]
        self.counts = [label_count(label) for label in self.class_labels]
        self.preset = EvalPreset(
            size=int(self.meta.input_size),
            resize=self.meta.resize,
            mean=list(self.meta.mean),
            std=list(self.meta.std),
        )
        self._transform = eval_transform(self.preset)
        self.backend_name = backend
        self.backends: list[Backend] = [
            make_backend(backend, member_meta, folder, threads, device) for folder, member_meta in self._members()
        ]
        self.backend: Backend = self.backends[0]

    def _members(self) -> list[tuple[Path, ArtifactMeta]]:
        """(folder, meta) of each network to run: the ensemble members, or the artifact itself.

        Members may differ in architecture but must share the head, the classes and the preprocessing, since
        one preprocessed batch and one temperature serve them all.
        """
        if not self.meta.members:
            return [(self.artifact_dir, self.meta)]

        def contract(m: ArtifactMeta) -> tuple:
            return m.head, [str(c) for c in m.class_labels], m.input_size, m.resize, list(m.mean), list(m.std)

        out = []
        for name in self.meta.members:
            folder = (self.artifact_dir / name).resolve()
            meta = read_meta(folder)
            if contract(meta) != contract(self.meta):
                raise BinsightError(
                    f"ensemble member {folder} does not match {self.artifact_dir / 'model.json'}: members must share "
                    "the head, the classes and the preprocessing (input size, resize, mean, std)"
                )
            out.append((folder, meta))
        return out

    # -- decode / preprocess -------------------------------------------------------------------------------
    def decode(self, data: bytes) -> Image.Image:
        """Decode image bytes into an RGB PIL image.

        Raises:
            DataError: the bytes are not a readable image, are truncated, or the image has more than
                ``max_pixels`` pixels (checked from the header before any pixel is decoded).
        """
        if not data:
            raise DataError("empty image: expected JPEG or PNG bytes")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(data))
                width, height = img.size
                if width * height > self.max_pixels:
                    raise DataError(
                        f"image is {width}x{height} = {width * height / 1e6:.1f} MP, over the limit of "
                        f"{self.max_pixels / 1e6:.0f} MP; refusing to decode it (resize it first)"
                    )
                img.load()
                return img.convert("RGB")
        except DataError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise DataError(f"image refused as a decompression bomb: {exc}") from None
        except Image.UnidentifiedImageError:
            raise DataError("not an image in a format PIL can read; expected a JPEG or PNG file") from None
        except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, ... for damaged files
            raise DataError(
                f"not a readable image ({type(exc).__name__}: {exc}); expected a JPEG or PNG file"
            ) from None

    def open_image(self, path: str | Path) -> Image.Image:
        """Read and :meth:`decode` an image file; errors name the file."""
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DataError(f"{path}: cannot read file: {exc.strerror or exc}") from None
        try:
            return self.decode(data)
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from None

    def preprocess(self, img: Image.Image):
        """PIL image → float32 CHW tensor, exactly the artifact's eval preset (:func:`eval_transform`)."""
        return self._transform(img)

    # -- predict ---------------------------------------------------------------------------------------------
    def predict_outputs(self, batch) -> np.ndarray:
        """Raw head outputs for a float32 NCHW batch (tensor or array), before temperature scaling.

        The mean over the ensemble members and, with ``tta_flip``, over the batch and its mirror.
        """
        if hasattr(batch, "detach"):
            batch = batch.detach().cpu().numpy()
        views = [np.asarray(batch, dtype=np.float32)]
        if self.meta.tta_flip:
            views.append(np.ascontiguousarray(views[0][..., ::-1]))
        outs = [np.asarray(b.run(view)) for b in self.backends for view in views]
        return outs[0] if len(outs) == 1 else np.mean(outs, axis=0, dtype=np.float64).astype(np.float32)

    def probabilities(
        self, outputs: np.ndarray, temperature: float | None = None, class_bias: Sequence[float] | None = None
    ) -> np.ndarray:
        """Raw outputs → (N, K) probabilities: temperature, then the decision offsets (artifact's by default)."""
        from binsight.evaluation.decision import apply_class_bias

        t = self.meta.temperature if temperature is None else temperature
        bias = self.meta.class_bias if class_bias is None else class_bias
        return apply_class_bias(outputs_to_probs_np(outputs, self.meta.head, t), bias or None)

    def predict_proba(self, batch) -> np.ndarray:
        """(N, K) class probabilities for a float32 NCHW batch (temperature and decision offsets applied)."""
        return self.probabilities(self.predict_outputs(batch))

    def predict_images(
        self, images: Sequence[Image.Image], expected_quantities: Sequence[int | None] | None = None
    ) -> list[dict[str, Any]]:
        """Predict a list of PIL images (in batches of at most ``max_batch``); one prediction dict each."""
        import torch

        if expected_quantities is not None and len(expected_quantities) != len(images):
            raise ValueError(f"{len(expected_quantities)} expected quantities for {len(images)} images")
        expected = list(expected_quantities) if expected_quantities is not None else [None] * len(images)
        results: list[dict[str, Any]] = []
        for start in range(0, len(images), self.max_batch):
            chunk = images[start : start + self.max_batch]
            probs = self.predict_proba(torch.stack([self.preprocess(img) for img in chunk]))
            results.extend(self.format_prediction(row, exp) for row, exp in zip(probs, expected[start:], strict=False))
        return results

    def predict_bytes(self, data: bytes, expected_quantity: int | None = None) -> dict[str, Any]:
        """Decode one encoded image and predict it (raises :class:`DataError` for bad bytes)."""
        return self.predict_images([self.decode(data)], [expected_quantity])[0]

    def format_prediction(self, probs_row: Sequence[float], expected_quantity: int | None = None) -> dict[str, Any]:
        """One row of probabilities → the prediction JSON of ARCHITECTURE.md.

        Keys: ``predicted_label``, ``predicted_count`` (``int(label)``, None for a non-numeric label),
        ``confidence``, ``probabilities`` {label: p} (6 digits), ``class_labels``, ``model`` {name, version},
        and ``check`` {expected_quantity, match, decision} only when ``expected_quantity`` is given.
        """
        row = np.asarray(probs_row, dtype=np.float64)
        if row.shape != (len(self.class_labels),):
            raise ValueError(f"expected {len(self.class_labels)} probabilities, got shape {row.shape}")
        idx = int(row.argmax())
        out: dict[str, Any] = {
            "predicted_label": self.class_labels[idx],
            "predicted_count": self.counts[idx],
            "confidence": round(float(row[idx]), 6),
            "probabilities": {label: round(float(p), 6) for label, p in zip(self.class_labels, row, strict=True)},
            "class_labels": list(self.class_labels),
            "model": {"name": self.meta.name, "version": self.meta.version},
        }
        if expected_quantity is not None:
            expected = int(expected_quantity)
            # An expected count that is not one of the classes (e.g. 9 for classes 1-5) has probability 0.
            prob_expected = float(sum(p for c, p in zip(self.counts, row, strict=True) if c == expected))
            match = self.counts[idx] == expected
            decision = check_decision(float(row[idx]), prob_expected, match, self.meta.decision_thresholds)
            out["check"] = {"expected_quantity": expected, "match": match, "decision": decision}
        return out
