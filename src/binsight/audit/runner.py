"""Run an audit: load photos in a thread pool, skip those already scored with this model, score the rest in
batches, and write the ranked outputs.

Example::

    refs = open_source("data/abid")
    scorer = make_scorer("runs/train/exp", None)
    summary = run_audit(refs, scorer, Path("runs/audit/abid"))
"""

from __future__ import annotations

import hashlib
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from binsight.audit.bins import UNREADABLE, AuditRow, Scorer, row_from_probs, unreadable_row
from binsight.audit.results import ResultsStore
from binsight.audit.sources import BinRef, Loaded
from binsight.errors import BinsightError
from binsight.utils.progress import progress

log = logging.getLogger("binsight.audit")

# Tiers of the ranking: bins a person must count (no record the model can check) first, then every scored bin
# by P(record wrong), then photos nobody can look at.
_TIER = {"count": 0, UNREADABLE: 2}


def rank_rows(rows: list[AuditRow]) -> list[AuditRow]:
    """Rows in review order: ``count`` decisions, then by P(record wrong) (highest first), then unreadable."""

    def key(row: AuditRow) -> tuple:
        tier = _TIER.get(UNREADABLE if row.status == UNREADABLE else row.decision, 1)
        return (tier, -(row.p_wrong if row.p_wrong is not None else 0.0), row.location)

    return sorted(rows, key=key)


def photo_copy(folder: Path, sha256: str, data: bytes) -> Path:
    """Keep a photo that has no local file (S3) content-addressed under ``folder`` for reports and review."""
    path = folder / sha256[:2] / f"{sha256}.jpg"
    if not path.is_file():
        from binsight.utils.io import atomic_write_bytes

        atomic_write_bytes(path, data)
    return path


def run_audit(
    refs: list[BinRef],
    scorer: Scorer,
    out: Path,
    *,
    source: str = "",
    workers: int = 8,
    chunk: int = 32,
    show_progress: bool = True,
    write: bool = True,
    simulated: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Audit ``refs`` with ``scorer`` into ``out``; returns the summary (also in ``audit.json``).

    Args:
        refs: The bins (see :mod:`binsight.audit.sources`); ``truth`` set when records were corrupted on purpose.
        scorer: Where probabilities come from (see :mod:`binsight.audit.scorers`).
        out: Output folder (``results.jsonl``, ``audit.csv``, ``audit.json``, ``audit.html``, ``photos/``).
        source: Description of the source for the report.
        workers: Threads loading photos (disk or S3).
        chunk: Bins per scoring batch (and per durable write of ``results.jsonl``).
        write: Write the ranked outputs (False: only return the summary and rows).
        simulated: ``{"error_rate", "seed"}`` when records were corrupted on purpose: the operating curve is
            computed, drawn (``curve.png``) and saved (``curve.json``).

    Returns:
        ``{"summary", "rows" (ranked), "curve" (or None)}``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    store = ResultsStore(out)
    if store.torn_lines:
        log.warning("%s: ignored %d damaged line(s) (an interrupted run)", store.path, store.torn_lines)
    rows: list[AuditRow] = []
    scored = reused = 0
    pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="audit-load")
    try:
        chunks = [refs[i : i + chunk] for i in range(0, len(refs), chunk)]
        bar = progress(total=len(refs), desc="audit", unit="bin") if show_progress else None
        # Photos of the next chunk load while this one is scored.
        ahead: list[Future] = [pool.submit(r.load) for r in chunks[0]] if chunks else []
        for i, part in enumerate(chunks):
            loaded: list[Loaded] = [f.result() for f in ahead]
            ahead = [pool.submit(r.load) for r in chunks[i + 1]] if i + 1 < len(chunks) else []
            new_rows, n_scored = _score_chunk(part, loaded, scorer, store, out)
            rows.extend(new_rows)
            scored += n_scored
            reused += sum(1 for r in new_rows if r.status != UNREADABLE) - n_scored
            store.flush()
            if bar is not None:
                bar.update(len(part))
                bar.set_postfix(scored=scored, reused=reused, refresh=False)
        if bar is not None:
            bar.close()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        store.close()
    ranked = rank_rows(rows)
    summary = summarize(ranked, scorer, source=source, scored=scored, reused=reused)
    curve = None
    if simulated:
        from binsight.audit.curve import operating_curve, plot_curve
        from binsight.audit.report import png_data_uri
        from binsight.utils.io import atomic_write_json

        curve = operating_curve(ranked, seed=simulated.get("seed", 0), error_rate=simulated.get("error_rate"))
        atomic_write_json(out / "curve.json", curve)
        curve = {**curve, "figure": png_data_uri(plot_curve(curve, out / "curve.png"))}
    if write:
        from binsight.audit.report import write_outputs

        write_outputs(out, ranked, summary, curve)
    return {"summary": summary, "rows": ranked, "curve": curve}


def _score_chunk(
    part: list[BinRef], loaded: list[Loaded], scorer: Scorer, store: ResultsStore, out: Path
) -> tuple[list[AuditRow], int]:
    """Rows for one chunk; photos not in ``store`` for this model are scored (and stored)."""
    shas = [hashlib.sha256(item.data).hexdigest() if item.data else "" for item in loaded]  # "" = no photo
    if not scorer.version:  # an endpoint tells its model version with its first answer
        first = next((item.data for item in loaded if item.data), None)
        if first is not None:
            scorer.probe(first)  # type: ignore[attr-defined]
    todo: dict[str, bytes] = {}  # each new photo once, even when several bins show it
    for item, sha in zip(loaded, shas, strict=True):
        if item.data and sha not in todo and store.get(sha, scorer.version, scorer.class_labels) is None:
            todo[sha] = item.data
    fresh = dict(zip(todo, scorer.score(list(todo.values())), strict=True)) if todo else {}
    if not scorer.version:
        raise BinsightError("the model answered without a version; cannot key the results file")
    for sha, result in fresh.items():
        if not isinstance(result, Exception):
            store.add(sha, scorer.version, scorer.class_labels, result)
    rows = []
    for ref, item, sha in zip(part, loaded, shas, strict=True):
        expected = item.expected if ref.loader is not None else ref.expected
        reason = item.no_record_reason or ref.no_record_reason
        scored = fresh.get(sha)
        if not item.data or isinstance(scored, Exception):
            detail = item.error if not item.data else str(scored)
            row = unreadable_row(ref.bin_id, ref.location, expected, detail, scorer.version)
            row.sha256, row.truth = sha or None, ref.truth
            rows.append(row)
            continue
        probs = store.get(sha, scorer.version, scorer.class_labels)
        if probs is None:  # pragma: no cover - every photo was stored just above
            raise BinsightError(f"no stored result for photo {sha}")
        row = row_from_probs(
            ref.bin_id,
            ref.location,
            expected,
            probs,
            scorer.class_labels,
            scorer.thresholds,
            model_version=scorer.version,
            sha256=sha,
            no_record_reason=reason,
        )
        row.truth = ref.truth
        row.photo = ref.photo or (
            str(photo_copy(out / "photos", sha, item.data)) if row.decision != "confirmed" else None
        )
        rows.append(row)
    return rows, sum(1 for r in fresh.values() if not isinstance(r, Exception))


def summarize(rows: list[AuditRow], scorer: Scorer, *, source: str, scored: int, reused: int) -> dict[str, Any]:
    """Totals per decision and status, and what was scored vs taken from the results file."""
    per_decision: dict[str, int] = {}
    per_status: dict[str, int] = {}
    for row in rows:
        per_decision[row.decision] = per_decision.get(row.decision, 0) + 1
        per_status[row.status] = per_status.get(row.status, 0) + 1
    return {
        "source": source,
        "bins": len(rows),
        "model_version": scorer.version,
        "class_labels": list(scorer.class_labels),
        "thresholds": dict(scorer.thresholds),
        "decisions": per_decision,
        "statuses": per_status,
        "scored": scored,
        "reused": reused,
    }
