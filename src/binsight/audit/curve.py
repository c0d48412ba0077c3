"""The operating curve: how many wrong records a warehouse catches for each share of bins it reviews.

:func:`corrupt_records` changes the recorded count of a fraction of a labelled set (seeded), keeping the true
count; :func:`operating_curve` then follows the review order of the audit (highest P(record wrong) first) and
reports, for every review rate, the share of corrupted records caught, and the rate needed for 80 % and 95 %.
Two naive policies are reported beside it: reviewing bins at random (catches the review rate on average), and
reviewing every bin whose top prediction differs from its record (one point: it cannot be tuned).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from binsight.audit.bins import OK, AuditRow
from binsight.audit.sources import BinRef
from binsight.errors import DataError

TARGETS = (0.8, 0.95)
BUDGET = 0.3  # the aim: catch 80 % while reviewing at most 30 % of bins


def corrupt_records(
    refs: list[BinRef], rate: float, seed: int = 0, counts: Sequence[int | None] | None = None
) -> tuple[list[BinRef], int]:
    """Copies of ``refs`` where a fraction ``rate`` of the records say another count (``truth`` keeps the real one).

    The corrupted bins are drawn without replacement among bins whose record is one of ``counts`` (default: the
    counts present in the set); each gets another of those counts, drawn uniformly.

    Returns:
        ``(refs, n_corrupted)``; every returned ref has ``truth`` set to its true count.

    Raises:
        DataError: ``rate`` outside (0, 1), or a source whose records are not known before loading (S3).
    """
    if not 0 < rate < 1:
        raise DataError(f"--simulate-errors {rate}: expected a fraction between 0 and 1, e.g. 0.1")
    if any(r.loader is not None for r in refs):
        raise DataError(
            "--simulate-errors needs a labelled folder, labels CSV or split manifest (records known up front)"
        )
    present = {r.expected for r in refs if r.expected is not None}
    usable = sorted(present if counts is None else present & {c for c in counts if c is not None})
    labelled = [i for i, r in enumerate(refs) if r.expected in usable]
    if len(usable) < 2:
        raise DataError("--simulate-errors needs records with at least two different counts")
    rng = random.Random(seed)
    chosen = set(rng.sample(labelled, round(rate * len(labelled))))
    out = []
    for i, ref in enumerate(refs):
        new = replace(ref, truth=ref.expected)
        if i in chosen:
            new.expected = rng.choice([c for c in usable if c != ref.expected])
        out.append(new)
    return out, len(chosen)


def _rate_for(caught: np.ndarray, target: float) -> float | None:
    """Smallest review rate whose share caught reaches ``target`` (None if never)."""
    hit = np.nonzero(caught >= target - 1e-12)[0]
    return float((hit[0] + 1) / caught.size) if hit.size else None


def operating_curve(rows: list[AuditRow], seed: int = 0, error_rate: float | None = None) -> dict[str, Any]:
    """The curve of an audit whose rows carry ``truth`` (see :func:`corrupt_records`).

    Uses the scored rows (status ``ok``) in the order given (the audit's ranking, highest risk first).

    Returns:
        ``{"bins", "errors", "error_rate", "seed", "points": [{"rate", "caught"}], "policies": [...]}``; each
        policy has ``name``, ``rate_80``, ``rate_95``, ``caught_at_30`` and, for one-point policies, ``point``.
    """
    scored = [r for r in rows if r.status == OK and r.truth is not None]
    if not scored:
        raise DataError("no scored bins with a known true count: run the audit with --simulate-errors")
    wrong = np.array([r.expected != r.truth for r in scored])
    n, n_wrong = len(scored), int(wrong.sum())
    if n_wrong == 0:
        raise DataError("no record was corrupted; raise --simulate-errors")
    order = np.argsort([-(r.p_wrong or 0.0) for r in scored], kind="stable")
    caught = np.cumsum(wrong[order]) / n_wrong
    rates = np.arange(1, n + 1) / n
    k30 = max(1, int(np.floor(BUDGET * n)))
    model = {
        "name": "binsight: review by P(record wrong)",
        "rate_80": _rate_for(caught, 0.8),
        "rate_95": _rate_for(caught, 0.95),
        "caught_at_30": float(caught[k30 - 1]),
    }
    rnd = {"name": "random review", "rate_80": 0.8, "rate_95": 0.95, "caught_at_30": BUDGET}
    policies = [model, rnd]
    for name, flag in (
        ("review when the top prediction ≠ record", [r.predicted_count != r.expected for r in scored]),
        ("review every bin not confirmed (decision band)", [r.decision != "confirmed" for r in scored]),
    ):
        sel = np.asarray(flag)
        rate, share = float(sel.mean()), float((sel & wrong).sum() / n_wrong)
        policies.append(
            {
                "name": name,
                "point": {"rate": rate, "caught": share},
                "rate_80": rate if share >= 0.8 else None,
                "rate_95": rate if share >= 0.95 else None,
                "caught_at_30": share if rate <= BUDGET else None,
            }
        )
    grid = np.round(np.arange(0.05, 1.0001, 0.05), 2)
    points = [{"rate": float(g), "caught": float(caught[max(0, int(np.ceil(g * n)) - 1)])} for g in grid]
    return {
        "bins": n,
        "errors": n_wrong,
        "error_rate": float(error_rate if error_rate is not None else n_wrong / n),
        "seed": seed,
        "points": points,
        "curve": {"rate": rates.round(5).tolist(), "caught": caught.round(5).tolist()},
        "policies": policies,
    }


def plot_curve(curve: dict[str, Any], path: Path) -> Path:
    """Draw the curve with the naive policies and the 80 % / 95 % / 30 % guides into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.2, 4.4), dpi=110)
    ax.plot(
        [0, *curve["curve"]["rate"]],
        [0, *curve["curve"]["caught"]],
        color="#1f5fa8",
        lw=2,
        label="binsight: by P(record wrong)",
    )
    ax.plot([0, 1], [0, 1], color="#9aa5b1", ls="--", label="random review")
    markers = iter(["o", "s"])
    for policy in curve["policies"]:
        if "point" in policy:
            ax.scatter(
                [policy["point"]["rate"]],
                [policy["point"]["caught"]],
                marker=next(markers),
                s=45,
                zorder=3,
                label=policy["name"],
            )
    for y in TARGETS:
        ax.axhline(y, color="#d9822b", lw=0.8, ls=":")
    ax.axvline(BUDGET, color="#b3261e", lw=0.8, ls=":")
    ax.set_xlabel("share of bins reviewed")
    ax.set_ylabel("share of wrong records caught")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_title(f"{curve['errors']} wrong records among {curve['bins']} bins")
    ax.legend(fontsize=7.5, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
