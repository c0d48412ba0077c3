"""The ranked outputs of an audit: ``audit.csv``, ``audit.json`` and a self-contained ``audit.html``.

``audit.html`` embeds thumbnails of the riskiest bins as data URIs and uses inline CSS only (no scripts, no
network), so it can be mailed or archived as one file. It is rendered by Jinja2 with autoescaping: bin ids
and reasons come from user data.
"""

from __future__ import annotations

import base64
import csv
import io
from pathlib import Path
from typing import Any

from binsight.audit.bins import AuditRow
from binsight.utils.io import atomic_write_json, atomic_write_text

CSV_COLUMNS = [
    "rank",
    "bin_id",
    "location",
    "expected",
    "predicted_count",
    "confidence",
    "p_wrong",
    "decision",
    "status",
    "reason",
    "sha256",
    "model_version",
    "truth",
]
THUMBNAIL_PX = 180


def write_outputs(
    out: Path, rows: list[AuditRow], summary: dict[str, Any], curve: dict[str, Any] | None = None, top: int = 60
) -> dict[str, Path]:
    """Write the three ranked files into ``out``; returns their paths."""
    labels = list(summary.get("class_labels") or [])
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*CSV_COLUMNS, *(f"p_{label}" for label in labels)])
    for rank, row in enumerate(rows, start=1):
        data = row.to_json()
        values = [rank if c == "rank" else data.get(c) for c in CSV_COLUMNS]
        writer.writerow(["" if v is None else v for v in values] + [row.probabilities.get(lab, "") for lab in labels])
    paths = {
        "csv": atomic_write_text(out / "audit.csv", buf.getvalue()),
        "json": atomic_write_json(
            out / "audit.json",
            {
                "summary": summary,
                "curve": _without_figure(curve),
                "rows": [{"rank": i, **r.to_json()} for i, r in enumerate(rows, 1)],
            },
        ),
    }
    paths["html"] = atomic_write_text(out / "audit.html", render_html(rows, summary, curve, top=top))
    return paths


def _without_figure(curve: dict[str, Any] | None) -> dict[str, Any] | None:
    return None if curve is None else {k: v for k, v in curve.items() if k != "figure"}


def thumbnail(path: str | None, px: int = THUMBNAIL_PX) -> str:
    """A JPEG data URI of the photo at ``path`` (at most ``px`` on a side), or "" when it cannot be read."""
    if not path:
        return ""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.draft("RGB", (px * 2, px * 2))
            rgb = im.convert("RGB")
            rgb.thumbnail((px, px))
            buf = io.BytesIO()
            rgb.save(buf, format="JPEG", quality=75)
    except Exception:  # a photo that vanished or broke since the audit: the row says so without a picture
        return ""
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def png_data_uri(path: Path) -> str:
    return (
        "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii") if path.is_file() else ""
    )


def render_html(rows: list[AuditRow], summary: dict[str, Any], curve: dict[str, Any] | None, top: int = 60) -> str:
    """The self-contained report page."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(loader=PackageLoader("binsight.audit", "templates"), autoescape=select_autoescape(["html"]))
    flagged = [r for r in rows if r.decision != "error"][:top]
    items = [
        {"row": r, "thumb": thumbnail(r.photo or (r.location if not r.location.startswith("s3://") else None))}
        for r in flagged
    ]
    unreadable = [r for r in rows if r.decision == "error"]
    from binsight import __version__

    return env.get_template("audit.html").render(
        summary=summary,
        items=items,
        unreadable=unreadable,
        curve=curve,
        version=__version__,
        labels=list(summary.get("class_labels") or []),
    )
