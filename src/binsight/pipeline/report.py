"""How the pipeline reports: ``report.html`` (one self-contained page, figures embedded as data URIs, inline
CSS, no scripts, with the cost table and one section per stage) and the plain-text tables the CLI prints."""

from __future__ import annotations

import base64
import html
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
"""


def _img(run_dir: Path, rel: str) -> str:
    path = run_dir / rel
    if not path.is_file():
        return f'<p class="muted">(figure {html.escape(rel)} is missing)</p>'
    mime = "image/png" if path.suffix.lower() == ".png" else "image/jpeg"
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(rel)}" src="data:{mime};base64,{data}">'


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


def write_report(run_dir: Path, state: dict[str, Any]) -> Path:
    """Render ``report.html`` from the recorded stage sections."""
    order = state.get("order") or list((state.get("config") or {}).get("stages") or state["stages"])
    name = (state.get("config") or {}).get("name", run_dir.name)
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>binsight report: {html.escape(name)}</title>",
        f"<style>{CSS}</style></head><body>",
        f"<h1>binsight pipeline: {html.escape(name)}</h1>",
        f"<p class='muted'>run directory <code>{html.escape(str(run_dir))}</code> · started "
        f"{html.escape(str(state.get('created_at', '')))} · binsight {__version__}</p>",
        "<h2>Cost per stage</h2>",
        "<p>Wall-clock and CPU seconds of each stage on this machine (CPU seconds include child processes).</p>",
        _cost_table(state, order),
    ]
    for stage in order:
        entry = state["stages"].get(stage) or {}
        if entry.get("status") == "failed":
            parts.append(f"<h2>{html.escape(stage)} — failed</h2><pre>{html.escape(entry.get('error', ''))}</pre>")
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
