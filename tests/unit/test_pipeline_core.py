"""The pipeline runner: order, resume, --from, --only, --skip, failure recording and the HTML report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from binsight.config import PipelineConfig
from binsight.errors import BinsightError
from binsight.pipeline.context import Section, Stage
from binsight.pipeline.core import run_pipeline
from binsight.pipeline.stages import STAGES

CALLS: list[str] = []
FAIL: set[str] = set()


def _make(name: str):
    def fn(ctx):
        CALLS.append(name)
        if name in FAIL:
            raise BinsightError(f"{name} broke")
        prev = {k: v.get("n") for k, v in ctx.outputs.items()}
        fig = ctx.path(f"{name}.png")
        # a 1×1 PNG so the report has a figure to embed
        fig.write_bytes(
            bytes.fromhex(
                "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
            )
        )
        sec = Section(f"Stage {name}", summary=f"saw {sorted(prev)}", figures=[("fig", fig.name)])
        sec.tables.append({"caption": "t", "columns": ["a", "b"], "rows": [[1, 2.5]]})
        return {"n": len(CALLS)}, sec

    return fn


@pytest.fixture(autouse=True)
def fake_stages():
    names = ["t_a", "t_b", "t_c"]
    for n in names:
        STAGES[n] = Stage(n, _make(n), f"test stage {n}")
    CALLS.clear()
    FAIL.clear()
    yield names
    for n in names:
        STAGES.pop(n, None)


def _cfg() -> PipelineConfig:
    return PipelineConfig(name="t", stages=["t_a", "t_b", "t_c"])


def test_runs_in_order_and_reports(tmp_path: Path):
    state = run_pipeline(_cfg(), tmp_path)
    assert CALLS == ["t_a", "t_b", "t_c"]
    assert all(state["stages"][n]["status"] == "done" for n in ["t_a", "t_b", "t_c"])
    assert state["stages"]["t_a"]["wall_s"] >= 0 and "cpu_s" in state["stages"]["t_a"]
    report = (tmp_path / "report.html").read_text()
    assert "Cost per stage" in report and "Stage t_c" in report
    assert report.count("data:image/png;base64,") == 3  # figures embedded, opens offline
    assert "saw [&#x27;t_a&#x27;, &#x27;t_b&#x27;]" in report  # later stages see earlier outputs
    assert (tmp_path / "config.yaml").is_file()


def test_resume_skips_done_and_from_reruns(tmp_path: Path):
    FAIL.add("t_b")
    with pytest.raises(BinsightError):
        run_pipeline(_cfg(), tmp_path)
    state = json.loads((tmp_path / "pipeline.json").read_text())
    assert state["stages"]["t_b"]["status"] == "failed" and "t_b broke" in state["stages"]["t_b"]["error"]
    assert "t_b — failed" in (tmp_path / "report.html").read_text()
    FAIL.clear()
    CALLS.clear()
    run_pipeline(_cfg(), tmp_path)  # resume: t_a is done, so only t_b and t_c run
    assert CALLS == ["t_b", "t_c"]
    CALLS.clear()
    run_pipeline(_cfg(), tmp_path, start="t_b")
    assert CALLS == ["t_b", "t_c"]
    CALLS.clear()
    run_pipeline(_cfg(), tmp_path, only="t_a")
    assert CALLS == ["t_a"]


def test_skip_and_unknown_stage(tmp_path: Path):
    state = run_pipeline(_cfg(), tmp_path, skip=["t_b"])
    assert CALLS == ["t_a", "t_c"] and state["stages"]["t_b"]["status"] == "skipped"
    with pytest.raises(BinsightError, match="unknown stage 'nope'"):
        run_pipeline(_cfg(), tmp_path, only="nope")
