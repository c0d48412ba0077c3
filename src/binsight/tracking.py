"""Run tracking in the tools users already have: MLflow (a local SQLite store ``./mlflow.db`` by default, or any
tracking URI)
or TensorBoard scalars. Off by default; ``tracking.backend=mlflow`` on train, tune or evaluate turns it on.

A run directory remembers its MLflow run in ``tracking.json``, so a resumed training run and a later
``binsight evaluate`` log into the same MLflow run. MLflow is driven through ``MlflowClient`` (no global
"active run"), which keeps trackers of concurrent runs in one process apart.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from binsight.config.schemas import TrackingConfig
from binsight.errors import BinsightError

log = logging.getLogger(__name__)

STATE_FILE = "tracking.json"
DEFAULT_STORE = "mlflow.db"  # MLflow's file store is deprecated; its SQLite store needs nothing more


class Tracker(Protocol):
    """What binsight logs: parameters once, metrics per step, files, and the end of the run."""

    def log_params(self, params: Mapping[str, Any]) -> None: ...

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None: ...

    def log_artifacts(self, folder: Path, name: str = "") -> None: ...

    def close(self, status: str = "FINISHED") -> None: ...


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` → ``{"a.b": "1"}``: config sections as dotted parameter names."""
    out: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = str(value)
    return out


def numeric(metrics: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of a metrics row (an epoch row also holds strings such as timestamps)."""
    out = {}
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(float(value)):
            out[key] = float(value)
    return out


class MlflowTracker:
    """One MLflow run, created or (through ``tracking.json``) continued."""

    def __init__(self, cfg: TrackingConfig, run_dir: Path, run_name: str, tags: Mapping[str, str] | None = None):
        try:
            from mlflow.tracking import MlflowClient
        except ImportError:
            raise BinsightError(
                "tracking.backend=mlflow needs MLflow: pip install 'binsight[track]' (or mlflow-skinny)"
            ) from None
        uri = cfg.uri or f"sqlite:///{Path.cwd() / DEFAULT_STORE}"
        self.client = MlflowClient(tracking_uri=uri)
        self.uri = uri
        state_path = run_dir / STATE_FILE
        state = _read_state(state_path)
        if state.get("backend") == "mlflow" and state.get("uri") == uri:
            self.run_id = state["run_id"]
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            experiment = self.client.get_experiment_by_name(cfg.experiment)
            experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(cfg.experiment)
            run = self.client.create_run(experiment_id, run_name=run_name, tags=dict(tags or {}))
            self.run_id = run.info.run_id
            _write_state(state_path, {"backend": "mlflow", "uri": uri, "run_id": self.run_id})
        log.info("MLflow run %s at %s", self.run_id, uri)

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        known = self.client.get_run(self.run_id).data.params
        fresh = [Param(k, str(v)[:6000]) for k, v in flatten(params).items() if k not in known]
        for start in range(0, len(fresh), 100):  # MLflow's batch limit
            self.client.log_batch(self.run_id, params=fresh[start : start + 100])

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        rows = [Metric(k, v, now, step or 0) for k, v in numeric(metrics).items()]
        if rows:
            self.client.log_batch(self.run_id, metrics=rows)

    def log_artifacts(self, folder: Path, name: str = "") -> None:
        if Path(folder).is_dir():
            self.client.log_artifacts(self.run_id, str(folder), artifact_path=name or None)
        elif Path(folder).is_file():
            self.client.log_artifact(self.run_id, str(folder), artifact_path=name or None)

    def close(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status=status)


class TensorBoardTracker:
    """TensorBoard scalars (and the parameters as text) in ``uri`` or ``<run>/tensorboard``."""

    def __init__(self, cfg: TrackingConfig, run_dir: Path, run_name: str, tags: Mapping[str, str] | None = None):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise BinsightError(
                "tracking.backend=tensorboard needs TensorBoard: pip install 'binsight[track]'"
            ) from None
        self.log_dir = Path(cfg.uri) / run_name if cfg.uri else run_dir / "tensorboard"
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def log_params(self, params: Mapping[str, Any]) -> None:
        table = "\n".join(f"| {k} | {v} |" for k, v in flatten(params).items())
        self.writer.add_text("params", "| key | value |\n|---|---|\n" + table)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        for key, value in numeric(metrics).items():
            self.writer.add_scalar(key, value, global_step=step)
        self.writer.flush()

    def log_artifacts(self, folder: Path, name: str = "") -> None:
        """TensorBoard keeps scalars only: the files stay in the run directory."""

    def close(self, status: str = "FINISHED") -> None:
        self.writer.close()


TRACKERS: dict[str, type[MlflowTracker] | type[TensorBoardTracker]] = {
    "mlflow": MlflowTracker,
    "tensorboard": TensorBoardTracker,
}


def open_tracker(
    cfg: TrackingConfig, run_dir: Path, run_name: str, tags: Mapping[str, str] | None = None
) -> Tracker | None:
    """The tracker ``cfg`` asks for, or None when tracking is off."""
    if cfg.backend == "none":
        return None
    return TRACKERS[cfg.backend](cfg, Path(run_dir), run_name, tags)


def continue_tracker(run_dir: Path) -> Tracker | None:
    """The tracker a run directory was tracked with (``tracking.json``), for evaluating it later; else None."""
    state = _read_state(Path(run_dir) / STATE_FILE)
    if state.get("backend") != "mlflow":
        return None
    return MlflowTracker(TrackingConfig(backend="mlflow", uri=state["uri"]), Path(run_dir), Path(run_dir).name)


def log_files(tracker: Tracker, folder: Path, patterns: tuple[str, ...], name: str = "") -> None:
    """Log the files of ``folder`` that match ``patterns`` (e.g. ``*.png``, ``metrics.csv``)."""
    for pattern in patterns:
        for path in sorted(Path(folder).glob(pattern)):
            tracker.log_artifacts(path, name)


def _read_state(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_state(path: Path, state: dict[str, Any]) -> None:
    from binsight.utils.io import atomic_write_json

    atomic_write_json(path, state)
