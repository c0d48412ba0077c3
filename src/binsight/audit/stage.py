"""The pipeline's ``audit`` stage: the test split audited with records corrupted on purpose.

A fraction ``audit.simulate_errors`` of the test records is changed to another count (seed ``audit.seed``), the
calibrated model (the ``final`` stage's when there is one, else ``train``'s) ranks the bins by P(record wrong),
and the report section shows the operating curve against the naive policies and the ``audit.top`` riskiest bins.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from binsight.errors import BinsightError


def _pct(value: float | None) -> str:
    return "never" if value is None else f"{100 * value:.1f} %"


def run_audit_stage(ctx: Any) -> tuple[dict[str, Any], Any]:
    """Run the stage in a pipeline ``StageContext``; returns (outputs, report ``Section``)."""
    from binsight.audit.curve import corrupt_records
    from binsight.audit.runner import run_audit
    from binsight.audit.scorers import LocalScorer
    from binsight.audit.sources import manifest_source
    from binsight.inference.predictor import Predictor, label_count
    from binsight.pipeline.context import Section

    run_dir = next(
        (ctx.outputs[s]["run_dir"] for s in ("final", "train") if ctx.outputs.get(s, {}).get("run_dir")), None
    )
    if run_dir is None:
        raise BinsightError("the audit stage needs a trained, evaluated model: run the train and evaluate stages first")
    cfg = ctx.cfg.audit
    manifest = Path(ctx.require("split", "split_dir")) / "test.csv"
    scorer = LocalScorer(Predictor(run_dir))
    counts = [label_count(c) for c in scorer.class_labels]
    refs, n_wrong = corrupt_records(manifest_source(manifest), cfg.simulate_errors, cfg.seed, counts)
    out = ctx.path("audit")
    try:
        result = run_audit(
            refs, scorer, out, source=str(manifest), simulated={"error_rate": cfg.simulate_errors, "seed": cfg.seed}
        )
    finally:
        scorer.close()
    curve, rows = result["curve"], result["rows"]
    policies = {
        "caption": f"operating curve: {curve['errors']} wrong records among {curve['bins']} test bins",
        "columns": ["policy", "review rate for 80 % caught", "for 95 %", "caught at 30 % reviewed"],
        "rows": [
            [
                p["name"],
                _pct(p["rate_80"]),
                _pct(p["rate_95"]),
                "" if p["caught_at_30"] is None else _pct(p["caught_at_30"]),
            ]
            for p in curve["policies"]
        ],
    }
    top = {
        "caption": f"the {cfg.top} riskiest bins (* = a record changed on purpose)",
        "columns": ["#", "bin", "record", "true count", "model", "P(record wrong)", "decision"],
        "rows": [
            [
                i,
                r.bin_id,
                f"{r.expected}{' *' if r.truth != r.expected else ''}",
                r.truth,
                r.predicted_count,
                round(r.p_wrong, 3) if r.p_wrong is not None else "",
                r.decision,
            ]
            for i, r in enumerate(rows[: cfg.top], start=1)
        ],
    }
    model = curve["policies"][0]
    section = Section(
        "Inventory audit (test split, simulated record errors)",
        summary=f"{n_wrong} of {len(refs)} test records were changed to another count (seed {cfg.seed}); bins ranked "
        f"by P(record wrong) = 1 - p(record). Reviewing {_pct(model['rate_80'])} of the bins catches 80 % of the "
        f"wrong records ({_pct(model['caught_at_30'])} at 30 % reviewed). Full ranking: audit/audit.html; "
        f"`binsight review {out}` opens the review queue.",
        tables=[policies, top],
        figures=[("operating curve", ctx.rel(out / "curve.png"))],
    )
    outputs = {
        "audit_dir": str(out),
        "rate_80": model["rate_80"],
        "rate_95": model["rate_95"],
        "caught_at_30": model["caught_at_30"],
    }
    return outputs, section
