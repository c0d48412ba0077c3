"""Writing predictions for people and programs: JSON lines, CSV, an aligned table, annotated photos."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from PIL import Image, ImageDraw, ImageFont

FORMATS = ("jsonl", "json", "csv", "table")
CSV_COLUMNS = ("image", "predicted_count", "predicted_label", "confidence", "expected_quantity", "decision", "error")


def flat_row(entry: dict[str, Any]) -> dict[str, Any]:
    """One prediction entry (with its ``image`` key) as a flat row of :data:`CSV_COLUMNS`."""
    check = entry.get("check") or {}
    return {
        "image": entry.get("image", ""),
        "predicted_count": entry.get("predicted_count", ""),
        "predicted_label": entry.get("predicted_label", ""),
        "confidence": entry.get("confidence", ""),
        "expected_quantity": check.get("expected_quantity", ""),
        "decision": check.get("decision", ""),
        "error": entry.get("error", ""),
    }


class PredictionWriter:
    """Streams entries as JSON lines or CSV rows as they come; ``json`` and ``table`` are written at close."""

    def __init__(self, stream: TextIO, fmt: str = "jsonl") -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")
        self.stream, self.fmt = stream, fmt
        self.held: list[dict[str, Any]] = []
        self.csv = csv.DictWriter(stream, fieldnames=CSV_COLUMNS) if fmt == "csv" else None
        if self.csv:
            self.csv.writeheader()

    def write(self, entry: dict[str, Any]) -> None:
        if self.fmt == "jsonl":
            self.stream.write(json.dumps(entry) + "\n")
        elif self.csv:
            self.csv.writerow(flat_row(entry))
        else:
            self.held.append(entry)
        self.stream.flush()

    def close(self) -> None:
        if self.fmt == "json":
            self.stream.write(json.dumps(self.held, indent=2) + "\n")
        elif self.fmt == "table":
            self.stream.write(format_table(self.held))
        self.stream.flush()


def format_table(entries: Iterable[dict[str, Any]]) -> str:
    """An aligned text table: image, count, confidence, and the check when there is one."""
    rows = [flat_row(e) for e in entries]
    with_check = any(r["decision"] for r in rows)
    head = ["image", "count", "confidence"] + (["expected", "decision"] if with_check else [])
    body = []
    for r in rows:
        if r["error"]:
            cells = [r["image"], "error", r["error"]] + ([""] * 2 if with_check else [])
        else:
            cells = [r["image"], str(r["predicted_label"]), f"{float(r['confidence']):.2f}"]
            cells += [str(r["expected_quantity"]), str(r["decision"])] if with_check else []
        body.append(cells)
    widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
    out = io.StringIO()
    for row in [head, *body]:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n")
    return out.getvalue()


def save_annotated(image: Image.Image, entry: dict[str, Any], dest: Path) -> Path:
    """Save ``image`` as a JPEG with its predicted count and confidence (and the check) drawn on a banner."""
    img = image.convert("RGB")
    text = f"count {entry['predicted_label']}  ({entry['confidence']:.0%})"
    if entry.get("check"):
        check = entry["check"]
        text += f"  expected {check['expected_quantity']}: {check['decision']}"
    size = max(12, img.width // 28)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size default font
        font = ImageFont.load_default()
    draw = ImageDraw.Draw(img)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad = size // 3
    draw.rectangle((0, 0, right - left + 2 * pad, bottom - top + 2 * pad), fill=(0, 0, 0))
    draw.text((pad - left, pad - top), text, fill=(255, 255, 0), font=font)
    dest.parent.mkdir(parents=True, exist_ok=True)
    img.save(dest, format="JPEG", quality=90)
    return dest
