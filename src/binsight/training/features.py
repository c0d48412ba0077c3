"""The feature cache: backbone features of decoded images, for runs that train only the head.

With ``freeze_backbone: true`` and ``augment: none`` every epoch would push the same images through the same
frozen backbone; instead the features are computed once and stored beside the decode cache, keyed by the
decode-cache key, the model name and a digest of the backbone's weights (so a random-init backbone of another
seed, or other pretrained weights, never reuses them), plus the normalisation, the flip used for TTA and the
precision (:func:`binsight.precision.decide` for ``features``: bf16 features are not float32 features).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch

from binsight.data.cache import DecodedImages, cache_root
from binsight.utils.io import atomic_write_with

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


def feature_key(
    decoded: DecodedImages, model_name: str, digest: str, mean, std, flip: bool, precision: str = "float32"
) -> str:
    fields = {"precision": precision} if precision != "float32" else {}  # float32 keys stay as they were
    text = json.dumps(
        {
            **fields,
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
    mean,
    std,
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
            out.append(model.features(x).float().cpu())
    model.train(was_training)
    if not out:
        return np.zeros((0, int(getattr(model, "feature_dim", 0))), dtype=np.float32)
    return torch.cat(out).numpy()


def cached_features(
    model: torch.nn.Module,
    model_name: str,
    decoded: DecodedImages,
    mean,
    std,
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
    digest = weights_digest(model.backbone)
    precision = "bf16" if dtype is not None else "float32"
    key = feature_key(decoded, model_name, digest, mean, std, flip, precision)
    path = cache_root(cache_dir) / "features" / f"{key}.npy"
    if path.is_file():
        try:
            feats = np.load(path)
            if feats.ndim == 2 and feats.shape[0] == len(decoded):
                log.info("feature cache hit: %s features of %s from %s", feats.shape, model_name, path)
                return feats, False
        except (OSError, ValueError):
            pass
        log.warning("feature cache entry %s is damaged; recomputing it", path)
    feats = compute_features(model, decoded.images, mean, std, device, batch_size, flip, channels_last, desc, dtype)
    atomic_write_with(path, lambda f: np.save(f, feats))
    log.info("feature cache built: %s features of %s in %s", feats.shape, model_name, path)
    return feats, True
