"""Study results: the trials table (printed and ``trials.csv``), plots, ``best.yaml`` and ``summary.json``."""

from __future__ import annotations

import csv
import io
import logging
import math
import shutil
import time
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from binsight.config.schemas import TuneConfig
from binsight.tuning.space import apply_params, tuned_keys

log = logging.getLogger(__name__)

KEEP_WHEN_CLEANED = ("config.yaml", "metrics.csv")

if TYPE_CHECKING:
    import optuna

    from binsight.tuning.storage import StorageHandle


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if (value != 0 and abs(value) < 1e-2) else f"{value:.4f}".rstrip("0").rstrip(".")
    return "" if value is None else str(value)


def trial_rows(study: optuna.Study, params: list[str]) -> list[dict[str, Any]]:
    """One row per trial: number, state, value, epochs, duration, parameters, retry and error notes."""
    from binsight.tuning.storage import retried_numbers

    trials = study.get_trials(deepcopy=False)
    retried = retried_numbers(trials)
    retry_of = {
        int(t.system_attrs["retry_history"][-1]): t.number for t in trials if t.system_attrs.get("retry_history")
    }
    rows = []
    for t in trials:
        duration = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start
            else None
        )
        note = t.user_attrs.get("error") or ""
        if t.number in retried:
            note = f"retried as trial {retry_of.get(t.number, '?')}" + (f"; {note}" if note else "")
        elif t.user_attrs.get("interrupted"):
            note = "stopped with a checkpoint" + (f"; {note}" if note else "")
        if t.system_attrs.get("retry_history"):
            note = f"retry of trial {t.system_attrs['retry_history'][-1]}" + (f"; {note}" if note else "")
        row = {
            "trial": t.number,
            "state": t.state.name,
            "value": t.value,
            "epochs": len(t.intermediate_values),
            "duration_s": round(duration, 1) if duration is not None else None,
        }
        row.update({p: t.params.get(p) for p in params})
        row["note"] = note
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width text table of ``rows`` (as printed by ``binsight tune``)."""
    if not rows:
        return "(no trials)"
    cols = list(rows[0])
    cells = [[_fmt(r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in cells]
    return "\n".join(lines)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    from binsight.utils.io import atomic_write_text

    buf = io.StringIO()
    if rows:
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def plot_history(rows: list[dict[str, Any]], path: Path) -> Path:
    """Every finished trial's value by trial number, and the best so far."""
    from binsight.evaluation.plots import _pyplot, _save

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4))
    done = [r for r in rows if r["state"] == "COMPLETE" and r["value"] is not None]
    ax.scatter([r["trial"] for r in done], [r["value"] for r in done], label="complete trial", color="tab:blue")
    # a pruned trial's value is the last one it reported (Optuna records it so): drawn there, not at zero,
    # and never counted as the best so far
    pruned = [r for r in rows if r["state"] == "PRUNED" and r["value"] is not None]
    if pruned:
        ax.scatter(
            [r["trial"] for r in pruned],
            [r["value"] for r in pruned],
            marker="x",
            color="tab:gray",
            label="pruned (last reported value)",
        )
    best, xs, ys = -math.inf, [], []
    for r in sorted(done, key=lambda r: r["trial"]):
        best = max(best, r["value"])
        xs.append(r["trial"])
        ys.append(best)
    if xs:
        ax.step(xs, ys, where="post", color="tab:red", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("validation macro-F1")
    ax.set_title("optimization history")
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_importances(study: optuna.Study, path: Path) -> tuple[Path | None, str]:
    """Parameter importances (Optuna's default evaluator) as bars; returns ``(path or None, note)``."""
    import warnings

    import optuna
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < 2:
        return None, f"parameter importances need at least 2 complete trials (have {len(complete)})"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            importances = optuna.importance.get_param_importances(study)
    except Exception as exc:  # e.g. every complete trial has the same parameters
        return None, f"parameter importances could not be computed: {exc}"
    if not importances:
        return None, "parameter importances: no parameter varied across complete trials"
    from binsight.evaluation.plots import _pyplot, _save

    plt = _pyplot()
    names = list(importances)[::-1]
    fig, ax = plt.subplots(figsize=(6.4, 0.5 * len(names) + 1.5))
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    ax.set_xlabel("importance for validation macro-F1")
    ax.set_title(f"parameter importances ({len(complete)} complete trials)")
    return _save(fig, path), ""


def write_best_yaml(study: optuna.Study, cfg: TuneConfig, path: Path) -> Path:
    """``best.yaml``: the whole training config of the best trial, ready for ``binsight train --config``."""
    from binsight.config.loader import dump_yaml
    from binsight.utils.io import atomic_write_text

    best = study.best_trial
    train = apply_params(cfg.train, cfg.space, dict(best.params), name=f"{cfg.name}-best")
    header = (
        f"# best trial {best.number} of study {study.study_name}: validation macro-F1 {best.value:.4f}\n"
        f"# train it with: binsight train --config {path.name}   (data: the split the study used)\n"
    )
    return atomic_write_text(path, header + dump_yaml(train))


def write_results(
    study: optuna.Study, tune_dir: Path, cfg: TuneConfig, handle: StorageHandle, started: float
) -> dict[str, Any]:
    """Write ``trials.csv``, the plots, ``best.yaml`` and ``summary.json``; print the table; return the summary."""
    from optuna.trial import TrialState

    from binsight.utils.io import atomic_write_json

    tune_dir = Path(tune_dir)
    params = tuned_keys(cfg.space)
    rows = trial_rows(study, params)
    _write_csv(tune_dir / "trials.csv", rows)
    table = format_table(rows)
    notes = []
    try:
        plot_history(rows, tune_dir / "optimization_history.png")
        imp_path, note = plot_importances(study, tune_dir / "param_importances.png")
    except Exception as exc:  # plots are a convenience: never lose a study's results to them
        imp_path, note = None, f"plots failed: {exc}"
    if note:
        notes.append(note)
        log.info(note)
    trials = study.get_trials(deepcopy=False)
    states: dict[str, int] = {}
    for t in trials:
        states[t.state.name] = states.get(t.state.name, 0) + 1
    starts = [t.datetime_start for t in trials if t.datetime_start]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    summary: dict[str, Any] = {
        "study_name": study.study_name,
        "storage": handle.display,
        "tune_dir": str(tune_dir),
        "trials": len(trials),
        "budget": cfg.trials,
        "states": states,
        "best_trial": None,
        "best_value": None,
        "best_params": None,
        "best_run_dir": None,
        "best_yaml": None,
        "time_to_best_s": None,
        "study_wall_s": None,
        "this_run_s": round(time.time() - started, 1),
        "param_importances": str(imp_path) if imp_path else None,
        "notes": notes,
    }
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    if starts and ends:
        summary["study_wall_s"] = round((max(ends) - min(starts)).total_seconds(), 1)
    if complete:
        best = study.best_trial
        run_dir = Path(best.user_attrs.get("run_dir", ""))
        summary.update(
            best_trial=best.number,
            best_value=best.value,
            best_params=dict(best.params),
            best_run_dir=str(run_dir) if run_dir.is_dir() else None,
            best_yaml=str(write_best_yaml(study, cfg, tune_dir / "best.yaml")),
            time_to_best_s=round((cast(datetime, best.datetime_complete) - min(starts)).total_seconds(), 1),
        )
    atomic_write_json(tune_dir / "summary.json", summary)
    summary["table"] = table
    return summary


def cleanup_trials(tune_dir: Path, best: int | None) -> list[Path]:
    """``keep: best``: empty every trial folder but the best one, keeping only its config.yaml and metrics.csv."""
    cleaned: list[Path] = []
    trials = Path(tune_dir) / "trials"
    if not trials.is_dir():
        return cleaned
    for folder in sorted(trials.iterdir()):
        if not folder.is_dir() or folder.name == str(best):
            continue
        for item in folder.iterdir():
            if item.name in KEEP_WHEN_CLEANED:
                continue
            if item.is_dir():
                shutil.rmtree(item, ignore_errors=True)
            else:
                item.unlink(missing_ok=True)
        cleaned.append(folder)
    return cleaned
