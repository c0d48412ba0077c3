"""The per-bin work of an audit: one photo and its record → one :class:`AuditRow`.

``P(record wrong) = 1 − p(recorded count)`` under the model's calibrated distribution (the artifact's
temperature is applied by the Predictor). The decision is the Predictor's own inventory check
(:func:`binsight.inference.predictor.check_decision`), so ``binsight audit``, ``predict`` and ``serve`` agree.

:func:`audit_bin` is the whole job for one bin, so the same code can run bin by bin elsewhere; ``binsight
audit`` scores bins in batches, and ``binsight aws audit`` collects a Batch Transform job's predictions, both
through the same :func:`row_from_probs`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from binsight.errors import DataError
from binsight.inference.predictor import check_decision, label_count

# Row status: what the audit could do with the bin.
OK = "ok"  # scored against its record
NO_RECORD = "no_record"  # photo scored, but there is no usable record to check (missing/broken metadata)
OUT_OF_RANGE = "out_of_range"  # the record's count is not one the model can predict (e.g. 0 or 7 for 1-5)
UNREADABLE = "unreadable"  # the photo is missing or cannot be decoded
STATUSES = (OK, NO_RECORD, OUT_OF_RANGE, UNREADABLE)
# Decisions: the Predictor's three, plus ``count`` (a person must count it: no record the model can check)
# and ``error`` (no photo to look at).
DECISIONS = ("mismatch", "review", "count", "confirmed", "error")


class Scorer(Protocol):
    """What an audit needs from a model: class probabilities for encoded photos.

    Implementations: :class:`binsight.audit.scorers.LocalScorer` (a Predictor in this process) and
    :class:`binsight.audit.scorers.EndpointScorer` (a served endpoint over HTTP).
    """

    version: str
    class_labels: list[str]
    thresholds: dict[str, float]

    def score(self, images: list[bytes]) -> list[np.ndarray | DataError]:
        """Calibrated probabilities (K,) per photo, or the DataError that made it unreadable."""
        ...


@dataclass
class AuditRow:
    """The audit of one bin.

    Attributes:
        bin_id: The bin's id (image stem, CSV ``file`` value, S3 key or capture id).
        location: Where the photo is (path or ``s3://`` URI).
        expected: The recorded count, None when there is no usable record.
        status: One of :data:`STATUSES`.
        decision: One of :data:`DECISIONS`.
        reason: Why, in one sentence.
        p_wrong: P(record wrong) = 1 - p(expected); None unless ``status`` is ``ok``.
        p_expected: p(expected count) under the model; None unless ``status`` is ``ok``.
        predicted_count: The most likely count (None for an unreadable photo).
        confidence: Its probability.
        probabilities: ``{label: p}``, the calibrated distribution.
        sha256: sha256 of the photo bytes (None when it could not be read).
        model_version: The model's version.
        photo: A local file showing the photo (for reports and review), when there is one.
        truth: The true count when known (simulated record errors keep the original label here).
    """

    bin_id: str
    location: str
    expected: int | None
    status: str
    decision: str
    reason: str
    p_wrong: float | None = None
    p_expected: float | None = None
    predicted_count: int | None = None
    confidence: float | None = None
    probabilities: dict[str, float] = field(default_factory=dict)
    sha256: str | None = None
    model_version: str = ""
    photo: str | None = None
    truth: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AuditRow:
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


def unreadable_row(bin_id: str, location: str, expected: int | None, detail: str, model_version: str = "") -> AuditRow:
    """The row of a bin whose photo is missing or cannot be decoded."""
    return AuditRow(
        bin_id, location, expected, UNREADABLE, "error", f"photo unreadable: {detail}", model_version=model_version
    )


def row_from_probs(
    bin_id: str,
    location: str,
    expected: int | None,
    probs: np.ndarray,
    class_labels: list[str],
    thresholds: dict[str, float],
    *,
    model_version: str = "",
    sha256: str | None = None,
    no_record_reason: str = "",
) -> AuditRow:
    """Score one bin from the model's calibrated distribution.

    Args:
        expected: The recorded count, or None when the bin has no usable record.
        probs: (K,) calibrated class probabilities in ``class_labels`` order.
        thresholds: The artifact's review band (``review_low``, ``review_high``).
        no_record_reason: Why there is no record (used when ``expected`` is None).
    """
    row = np.asarray(probs, dtype=np.float64).reshape(-1)
    counts = [label_count(label) for label in class_labels]
    idx = int(row.argmax())
    predicted, confidence = counts[idx], float(row[idx])
    out = AuditRow(
        bin_id,
        location,
        expected,
        OK,
        "review",
        "",
        predicted_count=predicted,
        confidence=round(confidence, 6),
        probabilities={label: round(float(p), 6) for label, p in zip(class_labels, row, strict=True)},
        sha256=sha256,
        model_version=model_version,
    )
    seen = f"the model sees {predicted} (p={confidence:.2f})"
    if expected is None:
        out.status, out.decision = NO_RECORD, "count"
        out.reason = f"{no_record_reason or 'no record'}; {seen}"
        return out
    if expected not in counts:
        out.status, out.decision = OUT_OF_RANGE, "count"
        known = ", ".join(class_labels)
        out.reason = f"record says {expected}, a count this model cannot predict (classes {known}); {seen}"
        return out
    p_expected = float(sum(p for c, p in zip(counts, row, strict=True) if c == expected))
    out.p_expected = round(p_expected, 6)
    out.p_wrong = round(1.0 - p_expected, 6)
    out.decision = check_decision(confidence, p_expected, predicted == expected, thresholds)
    low = float(thresholds.get("review_low", 0.2))
    if out.decision == "confirmed":
        out.reason = f"{seen}, as recorded"
    elif out.decision == "mismatch":
        out.reason = f"p(record {expected}) = {p_expected:.2f} is below {low:g}; {seen}"
    else:
        out.reason = f"p(record {expected}) = {p_expected:.2f}; {seen}"
    return out


def audit_bin(image_bytes: bytes, expected: int | None, scorer: Any, bin_id: str = "", location: str = "") -> AuditRow:
    """Audit one bin: its photo's bytes and its recorded count → :class:`AuditRow` (never raises for bad photos).

    ``scorer`` is a :class:`Scorer` or a :class:`~binsight.inference.predictor.Predictor`.

    Example::

        predictor = Predictor("runs/train/exp")
        row = audit_bin(open("bin.jpg", "rb").read(), 3, predictor, bin_id="bin")
        print(row.p_wrong, row.decision, row.reason)
    """
    import hashlib

    if not hasattr(scorer, "score"):  # a Predictor
        from binsight.audit.scorers import LocalScorer

        scorer = LocalScorer(scorer)
    sha = hashlib.sha256(image_bytes).hexdigest() if image_bytes else None
    result = scorer.score([image_bytes])[0]
    if isinstance(result, Exception):
        row = unreadable_row(bin_id, location, expected, str(result), scorer.version)
        row.sha256 = sha
        return row
    return row_from_probs(
        bin_id,
        location,
        expected,
        result,
        scorer.class_labels,
        scorer.thresholds,
        model_version=scorer.version,
        sha256=sha,
    )
