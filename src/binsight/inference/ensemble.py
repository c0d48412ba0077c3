"""Ensemble artifacts: several trained artifacts behind one ``model.json`` whose raw outputs are averaged.

An ensemble folder holds ``model.json`` (``members: ["members/0", …]``, no weights of its own) and a copy of
each member artifact under ``members/<i>/``. :class:`~binsight.inference.predictor.Predictor` runs every member
on the same preprocessed batch and averages their raw outputs (then temperature and decision offsets), so
``predict``, ``evaluate``, ``serve`` and the gateway use an ensemble exactly as they use one network.

The ensemble starts with the mean of its members' temperatures and decision offsets, each fitted on that
member's own val. That is the leak-free choice for the k models of a cross-validation: every row of their pool
trained k − 1 of them, so no shared val split is unseen. Refit both with ``binsight evaluate`` only on a val
split that no member trained on.
"""

from __future__ import annotations

import hashlib
import shutil
import statistics
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from binsight.errors import BinsightError
from binsight.inference.artifact import (
    META_FILE,
    WEIGHTS_FILE,
    ArtifactMeta,
    read_meta,
    resolve_artifact_dir,
    write_meta,
)


def write_ensemble(artifacts: list[str | Path], out: str | Path, name: str = "", tta_flip: bool | None = None) -> Path:
    """Copy ``artifacts`` (run or artifact folders) into ``out/members/<i>`` and write ``out/model.json``.

    Args:
        artifacts: two or more artifacts with the same head, classes and preprocessing.
        out: the ensemble folder (created; must not hold an artifact already).
        name: the ensemble's name (default: ``out``'s folder name).
        tta_flip: flip averaging for the ensemble (default: the first member's setting).

    Returns:
        ``out``.

    Raises:
        BinsightError: fewer than two artifacts, ``out`` already holds one, or members that do not match.
    """
    if len(artifacts) < 2:
        raise BinsightError(f"an ensemble needs at least 2 artifacts, got {len(artifacts)}")
    out = Path(out)
    if (out / META_FILE).exists():
        raise BinsightError(f"{out} already holds a model artifact; choose an empty folder")
    folders = [resolve_artifact_dir(a) for a in artifacts]
    metas = [read_meta(f) for f in folders]
    first = metas[0]
    members = []
    for i, (folder, meta) in enumerate(zip(folders, metas, strict=True)):
        if meta.members:
            raise BinsightError(f"{folder} is itself an ensemble; list its members instead")
        target = out / "members" / str(i)
        target.mkdir(parents=True, exist_ok=True)
        for file in (META_FILE, WEIGHTS_FILE):
            shutil.copy2(folder / file, target / file)
        members.append(f"members/{i}")
    digest = hashlib.sha256("\n".join(m.version for m in metas).encode()).hexdigest()[:12]
    name = name or out.name
    meta = replace(
        first,
        name=name,
        members=members,
        temperature=statistics.fmean(m.temperature for m in metas),
        class_bias=_mean_bias(metas),
        tta_flip=first.tta_flip if tta_flip is None else tta_flip,
        metrics={"members": [m.version for m in metas]},
        version=f"{name}-{digest}",
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    write_meta(out, meta)
    from binsight.inference.predictor import Predictor

    try:
        Predictor(out, threads=1)  # checks that the members fit together (head, classes, preprocessing)
    except BinsightError:
        shutil.rmtree(out / "members", ignore_errors=True)
        (out / META_FILE).unlink(missing_ok=True)
        raise
    return out


def _mean_bias(metas: list[ArtifactMeta]) -> list[float]:
    """The members' decision offsets averaged class by class (a member without offsets counts as zeros)."""
    if not any(m.class_bias for m in metas):
        return []
    width = len(metas[0].class_labels)
    if any(m.class_bias and len(m.class_bias) != width for m in metas):
        return []  # members that do not fit together: the Predictor check below says why
    return [statistics.fmean(m.class_bias[c] if m.class_bias else 0.0 for m in metas) for c in range(width)]
