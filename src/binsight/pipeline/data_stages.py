"""The data stages of ``binsight pipeline``: synth → split → stats. Each stage returns (outputs for later stages,
report section); the list of stages is :data:`binsight.pipeline.stages.STAGES`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from binsight.pipeline.context import Section, StageContext, StageResult


def _class_table(caption: str, counts_by_split: dict[str, dict[str, int]]) -> dict[str, Any]:
    labels = sorted({lab for c in counts_by_split.values() for lab in c}, key=lambda s: (len(str(s)), str(s)))
    rows = [[split, *[c.get(lab, 0) for lab in labels], sum(c.values())] for split, c in counts_by_split.items()]
    return {"caption": caption, "columns": ["split", *labels, "total"], "rows": rows}


def stage_synth(ctx: StageContext) -> StageResult:
    if ctx.cfg.data:
        src = Path(ctx.cfg.data).expanduser().resolve()
        reason = f"data= names an existing dataset: {src}"
        return {"dataset": str(src)}, Section("Data", summary=f"Using the existing dataset {src}.", skipped=reason)
    from binsight.data.synth import generate

    out = ctx.path("data", "synth")
    if out.exists():  # a re-run of this stage starts the dataset over, deterministically
        import shutil

        shutil.rmtree(out)
    summary = generate(out, ctx.cfg.synth)
    counts = {str(k): v for k, v in (summary.get("class_counts") or {}).items()}
    sec = Section(
        "SynthBins data",
        summary=f"Generated {summary.get('n', '?')} bin photos (seed {ctx.cfg.synth.seed}, mix {ctx.cfg.synth.mix}) "
        f"at {summary.get('images_per_s', 0):.0f} images/s.",
        tables=[_class_table("images per count", {"all": counts})] if counts else [],
    )
    return {"dataset": str(out), "synth": summary}, sec


def stage_split(ctx: StageContext) -> StageResult:
    from binsight.data.split import split_dataset

    src = Path(ctx.require("synth", "dataset"))
    out = ctx.path("data", "split")
    summary = split_dataset(src, out, ctx.cfg.split)
    counts = summary.get("counts") or {}
    sec = Section(
        "Split",
        summary=f"Stratified split (seed {ctx.cfg.split.seed}, val {ctx.cfg.split.val}, test {ctx.cfg.split.test}); "
        "exact duplicates kept on one side.",
        tables=[_class_table("images per class and split", counts)] if counts else [],
    )
    return {"split_dir": str(out), "summary_counts": counts}, sec


def stage_stats(ctx: StageContext) -> StageResult:
    from binsight.data.stats import compute_stats

    split_dir = Path(ctx.require("split", "split_dir"))
    out = ctx.path("stats")
    summary = compute_stats(split_dir, out)
    figures = [(Path(p).stem.replace("_", " "), ctx.rel(p)) for p in summary.get("figures", [])]
    return {"stats_dir": str(out)}, Section("Data statistics", figures=figures)
