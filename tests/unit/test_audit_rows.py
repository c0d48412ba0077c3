"""The audit's arithmetic: rows from probabilities, record corruption and the operating curve."""

from __future__ import annotations

import numpy as np
import pytest

from binsight.audit.bins import AuditRow, row_from_probs
from binsight.audit.curve import corrupt_records, operating_curve
from binsight.audit.runner import rank_rows
from binsight.audit.sources import BinRef
from binsight.errors import DataError

LABELS = ["1", "2", "3", "4", "5"]
BAND = {"review_low": 0.2, "review_high": 0.5}


def test_row_from_probs_decisions_and_risk():
    probs = np.array([0.05, 0.1, 0.6, 0.2, 0.05])
    confirmed = row_from_probs("a", "a.jpg", 3, probs, LABELS, BAND)
    assert (confirmed.decision, confirmed.p_wrong, confirmed.predicted_count) == ("confirmed", pytest.approx(0.4), 3)
    mismatch = row_from_probs("b", "b.jpg", 1, probs, LABELS, BAND)
    assert mismatch.decision == "mismatch" and mismatch.p_wrong == pytest.approx(0.95)
    review = row_from_probs("c", "c.jpg", 4, probs, LABELS, BAND)
    assert review.decision == "review" and "p(record 4) = 0.20" in review.reason
    out = row_from_probs("d", "d.jpg", 7, probs, LABELS, BAND)
    assert (out.status, out.decision, out.p_wrong) == ("out_of_range", "count", None)
    none = row_from_probs("e", "e.jpg", None, probs, LABELS, BAND, no_record_reason="missing metadata")
    assert none.status == "no_record" and none.reason.startswith("missing metadata")


def _row(i: int, p_wrong: float, expected: int, truth: int, predicted: int, decision: str = "review") -> AuditRow:
    return AuditRow(
        f"b{i}", f"b{i}.jpg", expected, "ok", decision, "", p_wrong=p_wrong, predicted_count=predicted, truth=truth
    )


def test_operating_curve_follows_the_ranking():
    # 10 bins, wrong records at ranks 1 and 4; the top prediction differs from the record for ranks 1-3 only
    # (at rank 4 the model agrees with the wrong record)
    rows = [_row(i, 1 - i / 10, 2 if i in (0, 3) else 1, 1, 3 if i < 3 else 2 if i == 3 else 1) for i in range(10)]
    rows[9].decision = "confirmed"
    curve = operating_curve(rank_rows(rows))
    assert (curve["bins"], curve["errors"]) == (10, 2)
    assert curve["curve"]["caught"][:4] == [0.5, 0.5, 0.5, 1.0]
    model, rnd, top, band = curve["policies"]
    assert (model["rate_80"], model["rate_95"], model["caught_at_30"]) == (0.4, 0.4, 0.5)
    assert (rnd["rate_80"], rnd["caught_at_30"]) == (0.8, 0.3)
    assert top["point"] == {"rate": 0.3, "caught": 0.5} and top["rate_80"] is None and top["caught_at_30"] == 0.5
    assert band["point"] == {"rate": 0.9, "caught": 1.0} and band["rate_95"] == 0.9


def test_corrupt_records_is_seeded_exact_and_keeps_the_truth():
    refs = [BinRef(f"b{i}", f"b{i}.jpg", expected=i % 5 + 1) for i in range(100)] + [BinRef("z", "z.jpg", expected=0)]
    a, n = corrupt_records(refs, 0.2, seed=3, counts=[1, 2, 3, 4, 5])
    b, _ = corrupt_records(refs, 0.2, seed=3, counts=[1, 2, 3, 4, 5])
    assert n == 20 and [r.expected for r in a] == [r.expected for r in b]
    changed = [r for r in a if r.expected != r.truth]
    assert len(changed) == 20 and all(1 <= r.expected <= 5 for r in changed)
    assert a[-1].expected == a[-1].truth == 0  # a count the model cannot predict is never corrupted
    assert [r.truth for r in a] == [r.expected for r in refs]
    with pytest.raises(DataError, match="between 0 and 1"):
        corrupt_records(refs, 1.5)
