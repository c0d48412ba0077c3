"""How the pipeline reports: ``report.html`` and the plain-text tables the CLI prints.

The page is self-contained (figures embedded as data URIs, inline CSS, no scripts) and leads with the answer: a
headline (the chosen model's test accuracy, macro-F1 and count RMSE, and its artifact), then a comparison of the
models the run trained on the same test split, a table of contents, the cost per stage, one section per stage
(figures open full size on a click; raw outputs fold away), the environment and links to every file produced."""

from __future__ import annotations

import base64
import html
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from binsight import __version__
from binsight.utils.io import atomic_write_text

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#1d2329;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em} h2{border-bottom:2px solid #e3e7eb;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;margin:.8em 0;font-size:.92em} th,td{border:1px solid #d5dbe1;padding:.3em .6em;
text-align:right} th{background:#f3f5f7} td:first-child,th:first-child{text-align:left}
figure{display:inline-block;margin:.5em 1em .5em 0;vertical-align:top} figure img{max-width:520px;
border:1px solid #e3e7eb} figcaption{font-size:.85em;color:#56606b}
.status-done{color:#197a3a}.status-failed{color:#b3261e}.status-skipped{color:#8a6d00}
.muted{color:#6b7580;font-size:.9em} pre{background:#f6f8fa;padding:.6em;overflow:auto;font-size:.85em}
.headline{background:#f3f7fb;border:1px solid #cfe0f1;border-radius:6px;padding:.8em 1.2em}
.headline .big{font-size:1.5em;font-weight:600;margin-right:1.2em} nav ol{columns:2}
label.zoom input{display:none} label.zoom{cursor:zoom-in}
label.zoom input:checked+img{position:fixed;inset:2vh 2vw;max-width:96vw;max-height:96vh;margin:auto;
z-index:10;background:#fff;box-shadow:0 0 0 100vmax rgba(0,0,0,.6);cursor:zoom-out}
"""

# (stage, what its model is called in the comparison): stages whose outputs carry test-split metrics.
COMPARED = (("evaluate", "baseline (train)"), ("final", "tuned (final)"), ("ddp_train", "distributed (ddp_train)"))
METRICS = (
    ("accuracy", "accuracy"),
    ("macro_f1", "macro-F1"),
    ("rmse", "count RMSE"),
    ("off_by_one", "off-by-one"),
    ("ece_after", "ECE"),
)


def _img(run_dir: Path, rel: str) -> str:
    path = run_dir / rel
    if not path.is_file():
        return f'<p class="muted">(figure {html.escape(rel)} is missing)</p>'
    mime = "image/png" if path.suffix.lower() == ".png" else "image/jpeg"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    # a click shows the figure full size (a checkbox toggles the CSS; one copy of the data, no script)
    img = f'<img alt="{html.escape(rel)}" src="data:{mime};base64,{data}">'
    return f'<label class="zoom"><input type="checkbox">{img}</label>'


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:,.0f}"
    return html.escape(str(v))


def render_table(table: dict[str, Any]) -> str:
    cols = table.get("columns") or []
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>" for row in table.get("rows", []))
    caption = f"<caption>{html.escape(table['caption'])}</caption>" if table.get("caption") else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _round(v: float | None) -> float | str:
    return "" if v is None else round(v, 1)


def _cost_table(state: dict[str, Any], order: list[str]) -> str:
    rows: list[list[Any]] = []
    wall, cpu = 0.0, 0.0
    for name in order:
        entry = state["stages"].get(name)
        if not entry:
            rows.append([name, "pending", "", ""])
            continue
        w, c = entry.get("wall_s"), entry.get("cpu_s")
        wall += w or 0
        cpu += c or 0
        rows.append([name, entry.get("status", "?"), _round(w), _round(c)])
    rows.append(["total", "", round(wall, 1), round(cpu, 1)])
    table = render_table({"columns": ["stage", "status", "wall-clock s", "CPU s"], "rows": rows})
    for name in order:  # colour the status cells
        for status in ("done", "failed", "skipped"):
            table = table.replace(
                f"<td>{name}</td><td>{status}</td>", f'<td>{name}</td><td class="status-{status}">{status}</td>', 1
            )
    return table


def _model_of(stage: str, outputs: dict[str, Any]) -> str:
    artifact = outputs.get("artifact") or str(Path(outputs.get("run_dir", ".")) / "artifact")
    try:
        meta = json.loads((Path(artifact) / "model.json").read_text())
        return f"{meta.get('architecture', '?')} ({meta.get('version', '')})"
    except (OSError, TypeError, ValueError):
        return stage


def _headline(run_dir: Path, state: dict[str, Any]) -> str:
    """The chosen model (the tuned one when there is one, else the baseline) and its test-split numbers."""
    stages = state["stages"]
    for stage, train_stage in (("final", "final"), ("evaluate", "train")):
        entry = stages.get(stage) or {}
        metrics = (entry.get("outputs") or {}).get("metrics")
        if entry.get("status") == "done" and metrics:
            outputs = (stages.get(train_stage) or {}).get("outputs") or {}
            artifact = outputs.get("artifact", "")
            link = _link(run_dir, artifact) if artifact else ""
            numbers = "".join(
                f"<span class='big'>{label} {_fmt(metrics[key])}</span>" for key, label in METRICS[:3] if key in metrics
            )
            return (
                f"<div class='headline'><p>{numbers}</p><p>on the test split · model "
                f"{html.escape(_model_of(train_stage, outputs))} · artifact {link}</p></div>"
            )
    return "<div class='headline'><p>No model has been evaluated on the test split in this run yet.</p></div>"


def _comparison(state: dict[str, Any]) -> str:
    rows = []
    for stage, label in COMPARED:
        metrics = ((state["stages"].get(stage) or {}).get("outputs") or {}).get("metrics")
        if metrics:
            rows.append([label, *[metrics.get(key, "") for key, _ in METRICS]])
    if len(rows) < 2:
        return ""
    table = render_table({"columns": ["model", *[label for _, label in METRICS]], "rows": rows})
    return "<h2 id='comparison'>Models compared on the test split</h2>" + table


def environment() -> dict[str, str]:
    """Versions, processor, accelerator and the git commit of the binsight checkout (when it is one)."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    try:
        commit = subprocess.run(
            ["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = "not a git checkout"
    return {
        "binsight": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "CPU": f"{cpu} ({os.cpu_count()} logical cores)",
        "GPU": gpu,
        "git commit": commit,
        "platform": platform.platform(),
    }


def _link(run_dir: Path, path: str) -> str:
    target = Path(path)
    try:
        rel = os.path.relpath(target, run_dir)
    except ValueError:
        rel = str(target)
    return f"<a href='{html.escape(rel)}'><code>{html.escape(rel)}</code></a>"


def _artifact_links(run_dir: Path, state: dict[str, Any], order: list[str]) -> str:
    items = []
    for stage in order:
        outputs = (state["stages"].get(stage) or {}).get("outputs") or {}
        for key, value in outputs.items():
            if isinstance(value, str) and value.startswith(str(run_dir)) and Path(value).exists():
                items.append(f"<li>{html.escape(stage)} · {html.escape(key)}: {_link(run_dir, value)}</li>")
    return f"<ul>{''.join(items)}</ul>" if items else "<p class='muted'>No files recorded yet.</p>"


def write_report(run_dir: Path, state: dict[str, Any]) -> Path:
    """Render ``report.html`` from the recorded stage sections."""
    order = state.get("order") or list((state.get("config") or {}).get("stages") or state["stages"])
    name = (state.get("config") or {}).get("name", run_dir.name)
    sections = [(stage, state["stages"].get(stage) or {}) for stage in order]
    toc = [("comparison", "Models compared")] if _comparison(state) else []
    toc += [("cost", "Cost per stage")]
    toc += [(stage, (e.get("section") or {}).get("title") or stage) for stage, e in sections if e.get("section")]
    toc += [("environment", "Environment"), ("files", "Files")]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>binsight report: {html.escape(name)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>binsight pipeline: {html.escape(name)}</h1>",
        f"<p class='muted'>run directory <code>{html.escape(str(run_dir))}</code> · started "
        f"{html.escape(str(state.get('created_at', '')))} · binsight {__version__}</p>",
        _headline(run_dir, state),
        _comparison(state),
        "<nav><h2>Contents</h2><ol>"
        + "".join(f"<li><a href='#{html.escape(a)}'>{html.escape(t)}</a></li>" for a, t in toc)
        + "</ol></nav>",
        "<h2 id='cost'>Cost per stage</h2>",
        "<p>Wall-clock and CPU seconds of each stage on this machine (CPU seconds include child processes).</p>",
        _cost_table(state, order),
    ]
    for stage, entry in sections:
        if entry.get("status") == "failed":
            parts.append(f"<h2 id='{html.escape(stage)}'>{html.escape(stage)} — failed</h2>")
            parts.append(f"<pre>{html.escape(entry.get('error', ''))}</pre>")
            continue
        if entry.get("status") == "skipped":
            parts.append(f"<h2 id='{html.escape(stage)}'>{html.escape(stage)} — skipped</h2>")
            parts.append(f"<p class='muted'>{html.escape(entry.get('reason', 'skipped on request'))}</p>")
            continue
        sec = entry.get("section")
        if not sec:
            continue
        parts.append(f"<h2 id='{html.escape(stage)}'>{html.escape(sec['title'])}</h2>")
        if sec.get("summary"):
            parts.append(f"<p>{html.escape(sec['summary'])}</p>")
        for table in sec.get("tables", []):
            parts.append(render_table(table))
        if sec.get("html"):
            parts.append(sec["html"])
        for caption, rel in sec.get("figures", []):
            parts.append(f"<figure>{_img(run_dir, rel)}<figcaption>{html.escape(caption)}</figcaption></figure>")
        if entry.get("outputs"):
            raw = json.dumps(entry["outputs"], indent=2, default=str)
            parts.append(f"<details><summary>raw outputs (JSON)</summary><pre>{html.escape(raw)}</pre></details>")
    env_rows = [[k, v] for k, v in environment().items()]
    parts.append("<h2 id='environment'>Environment</h2>" + render_table({"columns": ["", ""], "rows": env_rows}))
    parts.append("<h2 id='files'>Files</h2>" + _artifact_links(run_dir, state, order))
    raw_state = json.dumps(state, indent=2, default=str)
    parts.append(f"<details><summary>pipeline.json</summary><pre>{html.escape(raw_state)}</pre></details>")
    parts.append("</body></html>")
    return atomic_write_text(run_dir / "report.html", "\n".join(parts))


def cost_summary(state: dict[str, Any], order: list[str]) -> str:
    """The plain-text table of status, wall-clock and CPU seconds per stage (``binsight pipeline``'s summary)."""
    lines = [f"{'stage':<12} {'status':<8} {'wall s':>8} {'CPU s':>8}"]
    for name in order:
        e = state["stages"].get(name, {})
        lines.append(f"{name:<12} {e.get('status', '-'):<8} {e.get('wall_s', 0):>8.1f} {e.get('cpu_s', 0):>8.1f}")
    return "\n".join(lines)


def stage_list() -> str:
    """One line per known stage: its name and what it does (``binsight pipeline --list-stages``)."""
    from binsight.pipeline.stages import STAGES

    return "\n".join(f"{stage.name:<12} {stage.help}" for stage in STAGES.values())
