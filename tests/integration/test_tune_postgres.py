"""A study shared through a real PostgreSQL server: two `binsight tune` processes (two "machines") split one
budget, and a RUNNING trial whose heartbeat stopped is failed and retried with its parameters.

Needs ``BINSIGHT_TEST_PG_URL`` (``.ci/run`` starts a throwaway server and exports it)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from binsight.config import TuneConfig, load_config
from tests.conftest import cli_env
from tests.integration.train_helpers import make_split

PG_URL = os.environ.get("BINSIGHT_TEST_PG_URL", "")
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not PG_URL, reason="BINSIGHT_TEST_PG_URL is not set (no PostgreSQL server for this run)"),
]
TINY = [
    "train.model=tiny_cnn",
    "train.weights=none",
    "train.img_size=32",
    "train.epochs=2",
    "train.max_train_batches=1",
    "train.augment=none",
    "space.batch_size=[4,8]",
]


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    return make_split(tmp_path_factory.mktemp("tune-pg-data"), n_train=12, n_val=6, size=32)


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_two_processes_share_one_study(split, tmp_path):
    name = f"shared-{uuid.uuid4().hex[:8]}"
    cache = tmp_path / "cache"
    procs = []
    for machine in ("a", "b"):
        cmd = [sys.executable, "-m", "binsight", "tune", "--data", str(split), "--trials", "4"]
        cmd += ["--storage", PG_URL, "--study-name", name, "--out", str(tmp_path / machine), *TINY]
        cmd += [f"train.cache_dir={cache}", "threads=1"]
        procs.append(subprocess.Popen(cmd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    ran = {m: sorted(int(p.name) for p in (tmp_path / m / "trials").iterdir()) for m in ("a", "b")}
    assert sorted(ran["a"] + ran["b"]) == [0, 1, 2, 3], ran  # the budget once, no trial run twice
    assert ran["a"] and ran["b"], ran  # both processes took trials from the shared study
    # whichever finished last saw every trial of the study in its table
    tables = [read_rows(tmp_path / m / "trials.csv") for m in ("a", "b")]
    assert max(len(t) for t in tables) == 4
    assert "postgresql" in (tmp_path / "a" / "study.json").read_text()


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")  # the test's own ask() outside optimize
def test_stale_running_trial_is_failed_and_retried(split, tmp_path):
    import optuna

    from binsight.tuning.space import suggest
    from binsight.tuning.storage import open_storage
    from binsight.tuning.study import create_or_check_study, prepare_data, run_study

    name = f"stale-{uuid.uuid4().hex[:8]}"
    overrides = [*TINY, f"storage={PG_URL}", f"study_name={name}", "trials=1", "heartbeat=1", "grace=2", "threads=1"]
    cfg = load_config(TuneConfig, None, [*overrides, f"train.data={split}", f"train.cache_dir={tmp_path / 'c'}"])
    # A worker that asked for a trial, beat once and died: the trial stays RUNNING in the database.
    handle = open_storage(cfg.storage, tmp_path, cfg.heartbeat, cfg.grace, cfg.max_retry)
    create_or_check_study(cfg, handle, prepare_data(cfg))
    dead = optuna.load_study(study_name=name, storage=handle.storage).ask()
    params = suggest(dead, cfg.space)
    handle.rdb.record_heartbeat(dead._trial_id)
    time.sleep(3)  # longer than the grace period

    summary = run_study(cfg, None, tmp_path / "t", show_progress=False)
    study = optuna.load_study(study_name=name, storage=handle.storage)
    states = [t.state.name for t in study.trials]
    assert states == ["FAIL", "COMPLETE"]
    retry = study.trials[1]
    assert retry.params == pytest.approx(params)  # the same parameters, re-run
    assert retry.system_attrs["retry_history"] == [0]
    assert summary["best_trial"] == 1 and summary["trials"] == 2
    assert (tmp_path / "t" / "trials" / "1" / "artifact" / "model.json").is_file()
