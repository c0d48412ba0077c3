"""``binsight review export``: the settled counts as a labels CSV that ``binsight data split`` and ``train`` read.

Columns: ``file,expected_quantity`` (what the ABID reader needs; ``file`` is relative to the CSV's folder when the
photo lies under it, else absolute) followed by ``record,reviewer,answered_at,bin_id``. Only counted answers
(0-5) become labels; ``more`` (more than 5) and ``unsure`` are counted in the summary but give no label.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from binsight.review.store import ReviewStore
from binsight.utils.io import atomic_write_text

COLUMNS = ["file", "expected_quantity", "record", "reviewer", "answered_at", "bin_id"]


def export_labels(store: ReviewStore, out: Path) -> dict[str, Any]:
    """Write the labels CSV to ``out``; returns ``{"path", "labels", "corrections", "more", "unsure"}``."""
    out = Path(out)
    folder = out.resolve().parent
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    labels = corrections = 0
    skipped = {"more": 0, "unsure": 0}
    for row in store.settled_answers():
        if row["count"] is None:
            skipped[row["answer"]] = skipped.get(row["answer"], 0) + 1
            continue
        photo = Path(row["photo"]).resolve()
        name = photo.relative_to(folder).as_posix() if photo.is_relative_to(folder) else str(photo)
        record = "" if row["expected"] is None else row["expected"]
        writer.writerow([name, row["count"], record, row["reviewer"], row["answered_at"], row["bin_id"]])
        labels += 1
        corrections += row["expected"] is not None and row["expected"] != row["count"]
    atomic_write_text(out, buf.getvalue())
    return {"path": str(out), "labels": labels, "corrections": int(corrections), **skipped}
