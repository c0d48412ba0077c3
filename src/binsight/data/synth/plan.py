"""What to generate: the class counts, their mix scaled to ``n``, the shuffled label order and the file ids.

Nothing here draws pixels; it is the bookkeeping that makes a run reproducible from ``(config, seed)``.
"""

from __future__ import annotations

import numpy as np

# Class sizes of the 10,441-image ABID subset used by the capstone report (counts 1–5).
UDACITY_MIX: dict[int, int] = {1: 1228, 2: 2299, 3: 2666, 4: 2373, 5: 1875}
# Counts outside 1–5 have no share in the report; they get the mean share so they are neither rare nor dominant.
UDACITY_MEAN = sum(UDACITY_MIX.values()) / len(UDACITY_MIX)

# spawn_key roots of the SeedSequence streams, so that images, textures and the label order never share draws.
STREAM_IMAGE = 0
STREAM_TEXTURES = 1
STREAM_ORDER = 2


def parse_counts(text: str) -> list[int]:
    """Parse a counts spec such as ``1-5``, ``0-8``, ``1,3,5`` or ``0,2-4`` into a sorted list of counts.

    Args:
        text: comma-separated counts and inclusive ``a-b`` ranges.

    Returns:
        The distinct counts, ascending.

    Raises:
        ValueError: when a part is not a non-negative integer or a valid range; the message quotes the part.
    """
    counts: set[int] = set()
    parts = [p.strip() for p in str(text).split(",")]
    for part in parts:
        if not part:
            raise ValueError(f"counts {text!r}: empty item; expected e.g. 1-5, 0-8 or 1,3,5")
        try:
            if "-" in part:
                lo_s, hi_s = part.split("-", 1)
                lo, hi = int(lo_s), int(hi_s)
                if lo > hi:
                    raise ValueError
                counts.update(range(lo, hi + 1))
            else:
                counts.add(int(part))
        except ValueError:
            raise ValueError(
                f"counts {text!r}: {part!r} is not a count >= 0 or a range a-b with a <= b; "
                "expected e.g. 1-5, 0-8 or 1,3,5"
            ) from None
    if any(c < 0 for c in counts):
        raise ValueError(f"counts {text!r}: counts must be >= 0")
    return sorted(counts)


def class_weights(counts: list[int], mix: str) -> dict[int, float]:
    """Relative weight of each count under ``mix`` (``udacity`` or ``uniform``)."""
    if mix == "uniform":
        return {c: 1.0 for c in counts}
    if mix == "udacity":
        return {c: float(UDACITY_MIX.get(c, UDACITY_MEAN)) for c in counts}
    raise ValueError(f"mix {mix!r} is not known; expected 'udacity' or 'uniform'")


def class_plan(n: int, counts: list[int], mix: str) -> dict[int, int]:
    """Number of images per count, scaled to exactly ``n`` by largest-remainder rounding.

    Ties in the remainder go to the smaller count, so the plan is a pure function of its arguments.
    """
    weights = class_weights(sorted(set(counts)), mix)
    total = sum(weights.values())
    exact = {c: n * w / total for c, w in weights.items()}
    plan = {c: int(np.floor(v)) for c, v in exact.items()}
    short = n - sum(plan.values())
    by_remainder = sorted(exact, key=lambda c: (-(exact[c] - plan[c]), c))
    for c in by_remainder[:short]:
        plan[c] += 1
    return plan


def label_order(plan: dict[int, int], seed: int) -> np.ndarray:
    """The count of every image, in a shuffled order that depends only on ``plan`` and ``seed``."""
    labels = np.concatenate([np.full(k, c, dtype=np.int64) for c, k in sorted(plan.items())] or [np.zeros(0, int)])
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(STREAM_ORDER,)))
    return labels[rng.permutation(len(labels))] if len(labels) else labels


def id_width(n: int) -> int:
    """Digits of the zero-padded ids: 5 like ABID (``00001``), wider when ``n`` needs it."""
    return max(5, len(str(n)))


def image_id(index: int, width: int) -> str:
    """File stem of the image at 0-based ``index``; ids start at 1 like ABID."""
    return str(index + 1).zfill(width)


def image_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of image ``index``: a function of ``(seed, index)`` only, whichever process draws it."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(STREAM_IMAGE, index)))
