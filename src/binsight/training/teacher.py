"""Distillation targets: a teacher model's calibrated class probabilities for every training image.

The teacher is any model artifact a :class:`~binsight.inference.predictor.Predictor` loads (a run, an artifact
folder, or a ``binsight ensemble`` folder with its flip TTA), so a fold ensemble can be distilled into one
network for serving. It sees each training photo once, the way it serves it (its own preprocessing, temperature
and ensemble averaging; no decision offsets, which are a decision rule rather than a belief). The targets are
computed before the first epoch and kept in the run directory, so a resumed run reads them back.
"""

from __future__ import annotations

import hashlib
import io
import logging
import zipfile
from pathlib import Path

import numpy as np

from binsight.errors import BinsightError, DataError
from binsight.utils.io import atomic_write_bytes

log = logging.getLogger(__name__)

TARGETS_FILE = "teacher_targets.npz"


def check_teacher(teacher: str) -> None:
    """Fail before any data is decoded when ``teacher`` is not a loadable model artifact."""
    from binsight.inference.artifact import read_meta

    try:
        read_meta(teacher)
    except BinsightError as exc:
        raise BinsightError(f"teacher={teacher}: {exc}") from None


def _teacher_digest(teacher: str) -> str:
    from binsight.inference.artifact import resolve_artifact_dir

    return hashlib.sha256((resolve_artifact_dir(teacher) / "model.json").read_bytes()).hexdigest()


def teacher_targets(
    teacher: str, split_dir: Path, classes: list[int], data_hash: str, run_dir: Path, threads: int
) -> np.ndarray:
    """(N, K) teacher probabilities for the split's training rows, in manifest order (``SplitData.train``'s).

    Reused from ``run_dir/teacher_targets.npz`` when it was made by the same teacher for the same rows.

    Raises:
        BinsightError: the teacher's classes differ from the split's.
        DataError: the teacher cannot read a training image.
    """
    from binsight.data.manifest import load_split
    from binsight.evaluation.evaluate import predict_split
    from binsight.inference.predictor import Predictor

    path = run_dir / TARGETS_FILE
    digest = _teacher_digest(teacher)
    if path.is_file():
        try:
            with np.load(path) as saved:
                if str(saved["data_hash"]) == data_hash and str(saved["teacher"]) == digest:
                    log.info("teacher targets: reused %s", path)
                    return np.asarray(saved["probs"], dtype=np.float32)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
            log.warning("%s is unreadable (%s); computing the teacher targets again", path, exc)
    predictor = Predictor(teacher, threads=threads)
    labels = [str(c) for c in classes]
    if predictor.class_labels != labels:
        raise BinsightError(
            f"teacher={teacher} predicts the classes {predictor.class_labels}, the split has {labels}: "
            "a teacher must count the same classes as its student"
        )
    rows = load_split(split_dir)["train"]
    out = predict_split(predictor, rows, desc="teacher")
    if out.skipped:
        raise DataError(f"the teacher could not read {len(out.skipped)} training image(s): {out.skipped[0][1]}")
    probs = predictor.probabilities(np.concatenate(out.outputs), class_bias=[]).astype(np.float32)
    buf = io.BytesIO()
    np.savez(buf, probs=probs, data_hash=data_hash, teacher=digest)
    atomic_write_bytes(path, buf.getvalue())  # a stop mid-write leaves no half file for the resume to read
    agree = float((probs.argmax(1) == np.array([labels.index(str(r.label)) for r in rows])).mean())
    log.info(
        "teacher targets for %d training images (teacher agrees with %.1f%% of the labels)", len(rows), 100 * agree
    )
    return probs
