"""The pipeline runner: named stages run in order inside one run directory, each timed (wall and CPU
seconds), each adding a section to ``report.html``. Progress is kept in ``pipeline.json`` so a run can be
resumed (``--resume``), re-run from a stage (``--from``) or for one stage (``--only``)."""

from __future__ import annotations

import json
import logging
import time
import traceback
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from binsight.config import PipelineConfig, dump_yaml
from binsight.errors import BinsightError
from binsight.pipeline.context import StageContext
from binsight.pipeline.stages import STAGES, check_stage_names
from binsight.utils.cpu import cpu_seconds
from binsight.utils.io import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

STATE_FILE = "pipeline.json"


def load_state(run_dir: Path) -> dict[str, Any]:
    path = run_dir / STATE_FILE
    if not path.is_file():
        return {"stages": {}}
    try:
        state: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return state
    except json.JSONDecodeError as exc:
        raise BinsightError(f"{path} is corrupt ({exc}); delete it to start the pipeline over") from None


def plan_stages(
    cfg: PipelineConfig, state: dict[str, Any], start: str | None, only: str | None, skip: list[str]
) -> list[tuple[str, str]]:
    """Return the list of (stage name, action) with action in run / keep / skip."""
    check_stage_names([*cfg.stages, start, only, *skip])
    for name, flag in ((start, "--from"), (only, "--only")):
        if name and name not in cfg.stages:
            raise BinsightError(f"{flag} {name}: not among this config's stages ({', '.join(cfg.stages)})")
    plan = []
    started = start is None
    for name in cfg.stages:
        if name == start:
            started = True
        if only:
            action = "run" if name == only else "keep"
        elif name in skip:
            action = "skip"
        elif not started:
            action = "keep"
        elif start is None and is_finished(state["stages"].get(name, {})):
            action = "keep"  # resume: finished stages are not redone
        else:
            action = "run"
        plan.append((name, action))
    return plan


def is_finished(entry: dict[str, Any]) -> bool:
    """A stage that ran to its end: done, or skipped by itself with its outputs recorded (not by --skip)."""
    return entry.get("status") == "done" or (entry.get("status") == "skipped" and "outputs" in entry)


def run_pipeline(
    cfg: PipelineConfig,
    run_dir: Path,
    start: str | None = None,
    only: str | None = None,
    skip: list[str] | None = None,
) -> dict[str, Any]:
    """Run the planned stages in ``run_dir``; returns the final state. Raises on the first failed stage
    after recording it (and the report so far)."""
    from binsight.pipeline.report import write_report

    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", dump_yaml(cfg))
    state = load_state(run_dir)
    state.setdefault("created_at", datetime.now(UTC).isoformat(timespec="seconds"))
    state["config"] = asdict(cfg)
    plan = plan_stages(cfg, state, start, only, skip or [])
    outputs = {n: s.get("outputs", {}) for n, s in state["stages"].items() if is_finished(s)}
    ctx = StageContext(cfg=cfg, run_dir=run_dir, outputs=outputs)
    for name, action in plan:
        if action == "keep":
            continue
        if action == "skip":
            state["stages"][name] = {"status": "skipped", "reason": "skipped with --skip"}
            continue
        ctx.restart = bool(start or only)
        log.info("pipeline: stage %s …", name)
        wall0, cpu0 = time.perf_counter(), cpu_seconds()
        entry: dict[str, Any] = {"status": "running", "started": datetime.now(UTC).isoformat(timespec="seconds")}
        state["stages"][name] = entry
        atomic_write_json(run_dir / STATE_FILE, state)
        try:
            out, section = STAGES[name].fn(ctx)
        except BaseException as exc:
            entry.update(status="failed", error=f"{type(exc).__name__}: {exc}", wall_s=time.perf_counter() - wall0)
            entry["cpu_s"] = cpu_seconds() - cpu0
            if not isinstance(exc, BinsightError | KeyboardInterrupt):
                entry["traceback"] = traceback.format_exc()
            atomic_write_json(run_dir / STATE_FILE, state)
            write_report(run_dir, state)
            raise
        entry.update(
            status="skipped" if section.skipped else "done",
            wall_s=round(time.perf_counter() - wall0, 3),
            cpu_s=round(cpu_seconds() - cpu0, 3),
            finished=datetime.now(UTC).isoformat(timespec="seconds"),
            outputs=out,
            section=asdict(section),
        )
        ctx.outputs[name] = out
        atomic_write_json(run_dir / STATE_FILE, state)
        write_report(run_dir, state)
        if section.skipped:
            entry["reason"] = section.skipped
            log.info("pipeline: stage %s skipped: %s", name, section.skipped)
        else:
            log.info("pipeline: stage %s done in %.1f s (CPU %.1f s)", name, entry["wall_s"], entry["cpu_s"])
    # Stages no longer planned keep their old entries; the report follows the config's order.
    state["order"] = list(cfg.stages)
    atomic_write_json(run_dir / STATE_FILE, state)
    write_report(run_dir, state)
    return state
