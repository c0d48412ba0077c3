"""The feature cache: backbone features of decoded images, for runs that train only the head.

With ``freeze_backbone: true`` and ``augment: none`` every epoch would push the same images through the same
frozen backbone; instead the features are computed once and stored beside the decode cache, keyed by the
decode-cache key, the model name and a digest of the backbone's weights (so a random-init backbone of another
seed, or other pretrained weights, never reuses them), plus the normalisation, the flip used for TTA and the
precision (:func:`binsight.precision.decide` for ``features``: bf16 features are not float32 features).

Features are also kept per image in a *store* (``features/by-image/<key>/``, keyed by the model, its weights
digest, normalisation, flip, precision and the decode size and resize; rows are identified by the sha256 of their
image), so a manifest whose images were featurised for another manifest (the folds of a cross-validation, a
re-split, a tuning trial on a subset) computes only the images never seen before. Float32 keys carry no precision
field, so stores and caches written before the precision policy stay valid.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import torch

from binsight.data.cache import DecodedImages, cache_root
from binsight.utils.io import atomic_write_with

if TYPE_CHECKING:
    from binsight.models.registry import BinCounter

log = logging.getLogger(__name__)

FEATURE_FORMAT = 1


def weights_digest(module: torch.nn.Module) -> str:
    """sha256 of a module's state dict (names, dtypes, shapes and values)."""
    return state_digest(module.state_dict())


def state_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 of a state dict (names, dtypes, shapes and values)."""
    h = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}\n".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _precision_field(precision: str) -> dict[str, str]:
    """The key field of a non-float32 precision; none for float32, so float32 keys stay as they were."""
    return {"precision": precision} if precision != "float32" else {}


def feature_key(
    decoded: DecodedImages,
    model_name: str,
    digest: str,
    mean: Sequence[float],
    std: Sequence[float],
    flip: bool,
    precision: str = "float32",
) -> str:
    text = json.dumps(
        {
            **_precision_field(precision),
            "format": FEATURE_FORMAT,
            "images": decoded.key,
            "model": model_name,
            "weights": digest,
            "mean": list(mean),
            "std": list(std),
            "flip": flip,
        }
    )
    return hashlib.sha256(text.encode()).hexdigest()[:24]


@torch.no_grad()
def compute_features(
    model: torch.nn.Module,
    images: np.ndarray,
    mean: list[float],
    std: list[float],
    device: torch.device,
    batch_size: int = 64,
    flip: bool = False,
    channels_last: bool = False,
    desc: str = "features",
    dtype: torch.dtype | None = None,
) -> np.ndarray:
    """Run ``model.features`` over uint8 NHWC ``images`` in eval mode, in autocast ``dtype`` if given (else
    float32); returns (N, D) float32."""
    from binsight.data.transforms import normalize_uint8
    from binsight.precision import autocast
    from binsight.utils.progress import progress

    was_training = model.training
    model.eval()
    out = []
    n = images.shape[0]
    for start in progress(range(0, n, batch_size), desc=desc, unit="batch"):
        chunk = torch.from_numpy(np.array(images[start : start + batch_size]))
        x = normalize_uint8(chunk.to(device), mean, std)
        if flip:
            x = x.flip(3)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, dtype):
            out.append(cast("BinCounter", model).features(x).float().cpu())
    model.train(was_training)
    if not out:
        return np.zeros((0, int(getattr(model, "feature_dim", 0))), dtype=np.float32)
    return torch.cat(out).numpy()


def _store_dir(
    root: Path,
    decoded: DecodedImages,
    model_name: str,
    digest: str,
    mean: Sequence[float],
    std: Sequence[float],
    flip: bool,
    precision: str = "float32",
) -> Path:
    text = json.dumps(
        {
            **_precision_field(precision),
            "format": FEATURE_FORMAT,
            "size": decoded.size,
            "resize": decoded.resize,
            "model": model_name,
            "weights": digest,
            "mean": list(mean),
            "std": list(std),
            "flip": flip,
        }
    )
    return root / "features" / "by-image" / hashlib.sha256(text.encode()).hexdigest()[:24]


def _store_read(folder: Path) -> dict[str, np.ndarray]:
    """sha256 → feature row of every readable chunk in a store folder."""
    rows: dict[str, np.ndarray] = {}
    for chunk in sorted(folder.glob("*.npz")) if folder.is_dir() else []:
        try:
            with np.load(chunk) as data:
                rows.update(zip(data["sha256"].tolist(), data["features"], strict=True))
        except (OSError, ValueError, KeyError):
            log.warning("feature store chunk %s is damaged; ignoring it", chunk)
    return rows


def _store_add(folder: Path, shas: list[str], feats: np.ndarray) -> None:
    if not shas:
        return
    name = hashlib.sha256("\n".join(shas).encode()).hexdigest()[:24]
    atomic_write_with(folder / f"{name}.npz", lambda f: np.savez(f, sha256=np.array(shas), features=feats))


def cached_features(
    model: torch.nn.Module,
    model_name: str,
    decoded: DecodedImages,
    mean: list[float],
    std: list[float],
    device: torch.device,
    cache_dir: str | Path = "",
    batch_size: int = 64,
    flip: bool = False,
    channels_last: bool = False,
    desc: str = "features",
    amp: str = "auto",
) -> tuple[np.ndarray, bool]:
    """Backbone features of ``decoded``, from the cache or computed and stored, in the precision the policy
    picks for ``features`` of ``model_name`` under ``amp`` (``auto``/``off``/``bf16``).

    Returns:
        ``(features (N, D) float32, built)``; ``built`` is False when the cache already held them.
    """
    from binsight.precision import amp_dtype

    dtype = amp_dtype("features", model_name, amp, device)
    precision = "bf16" if dtype is not None else "float32"
    digest = weights_digest(cast("BinCounter", model).backbone)
    key = feature_key(decoded, model_name, digest, mean, std, flip, precision)
    root = cache_root(cache_dir)
    path = root / "features" / f"{key}.npy"
    by_image = decoded.sha256 is not None and decoded.resize != ""
    store = _store_dir(root, decoded, model_name, digest, mean, std, flip, precision) if by_image else None
    if path.is_file():
        try:
            feats = np.load(path)
            if feats.ndim == 2 and feats.shape[0] == len(decoded):
                log.info("feature cache hit: %s features of %s from %s", feats.shape, model_name, path)
                if store is not None and not (store / f"{key}.npz").is_file():
                    atomic_write_with(
                        store / f"{key}.npz", lambda f: np.savez(f, sha256=np.array(decoded.sha256), features=feats)
                    )
                return feats, False
        except (OSError, ValueError):
            pass
        log.warning("feature cache entry %s is damaged; recomputing it", path)
    known = _store_read(store) if store is not None else {}
    shas = decoded.sha256 or []
    todo = [i for i, sha in enumerate(shas) if sha not in known] if store is not None else list(range(len(decoded)))
    if todo or len(decoded) == 0:
        images = decoded.images if len(todo) == len(decoded) else decoded.images[np.array(todo)]
        fresh = compute_features(model, images, mean, std, device, batch_size, flip, channels_last, desc, dtype)
    else:
        fresh = np.zeros((0, 0), dtype=np.float32)
    if store is not None:
        _store_add(store, [shas[i] for i in todo], fresh)
        known.update(zip([shas[i] for i in todo], fresh, strict=True))
        feats = np.stack([known[sha] for sha in shas]) if shas else fresh
        log.info(
            "feature store: %d of %d images of %s already featurised", len(shas) - len(todo), len(shas), model_name
        )
    else:
        feats = fresh
    atomic_write_with(path, lambda f: np.save(f, feats))
    log.info("feature cache built: %s features of %s in %s", feats.shape, model_name, path)
    return feats, bool(todo)
