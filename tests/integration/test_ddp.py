"""Data-parallel training with real torchrun workers on loopback (gloo): equivalence, two nodes, faults.

Each test starts a few Python processes that import torch, so they are few and use tiny data.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from binsight.config import load_config
from binsight.config.schemas import TrainConfig
from binsight.training.checkpoint import load_checkpoint
from tests.conftest import cli_env, free_port, held_env
from tests.integration.train_helpers import make_split

pytestmark = pytest.mark.ddp

TINY = ["model=tiny_cnn", "weights=none", "freeze_backbone=false", "img_size=32", "augment=none", "patience=0"]


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    # 31 training images with a global batch of 8: the last batch (7) splits 4/3 over two workers.
    return make_split(tmp_path_factory.mktemp("ddp"), n_train=31, n_val=9, n_test=2, size=36)


def _binsight(*args: str, cache: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    env = {**(env or cli_env()), "BINSIGHT_CACHE_DIR": str(cache)}
    return subprocess.Popen(
        [sys.executable, "-m", "binsight", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


@pytest.mark.parametrize(
    ("distill", "synth_start"), [(False, False), (True, False), (False, True)], ids=["labels", "+teacher", "+synth"]
)
def test_two_workers_end_an_epoch_with_the_weights_of_one_process(split, tmp_path, distill, synth_start):
    from binsight.training.job import run_training_job
    from binsight.training.launch import Launch
    from binsight.training.run import train

    # SGD: Adam's first steps move each weight by about lr * sign(gradient), which turns float rounding in
    # near-zero gradients into visible differences; SGD shows the equivalence itself.
    common = [f"data={split}", *TINY, "batch_size=8", "epochs=1", "deterministic=true", "optimizer=sgd", "lr=0.05"]
    common += [f"cache_dir={tmp_path / 'cache'}"]
    torch.set_num_threads(1)
    extra = []
    if distill:  # the soft-target term is also the global batch's mean, the last uneven batch included
        teacher = train(load_config(TrainConfig, None, [*common, "seed=11"]), out=tmp_path / "t", handle_signals=False)
        extra = [f"teacher={teacher.run_dir}", "teacher_weight=0.5"]
    if synth_start:  # the launcher builds the start (workers cannot); the single process then finds it cached
        extra = ["synth_pretrain=1", "synth_pretrain_images=50"]
    cfg = load_config(TrainConfig, None, [*common, "seed=3", *extra])
    ddp = run_training_job(cfg, Launch(nproc=2), out=tmp_path / "ddp", auto_resume=True)
    if synth_start:
        from binsight.training.synthstart import describe

        assert describe(cfg).weights.is_file()
    single = train(cfg, out=tmp_path / "single", handle_signals=False)

    a = load_checkpoint(tmp_path / "single" / "weights" / "last.pt")
    b = load_checkpoint(tmp_path / "ddp" / "weights" / "last.pt")
    assert b["world_size"] == 2 and len(b["rank_states"]) == 2
    for key, value in a["model"].items():  # weights and BatchNorm running statistics
        torch.testing.assert_close(b["model"][key], value, atol=1e-5, rtol=0, msg=key)
    assert a["model"]["head.fc.weight"].abs().sum() > 0
    assert ddp.history[0]["train_loss"] == pytest.approx(single.history[0]["train_loss"], abs=1e-5)
    # validation covers all 9 images once, whichever worker scored them
    assert ddp.best_metrics["confusion_matrix"] == single.best_metrics["confusion_matrix"]
    assert sum(map(sum, ddp.best_metrics["confusion_matrix"])) == 9
    assert (ddp.artifact_dir / "model.json").is_file()


def test_two_agents_on_loopback_train_as_two_nodes(split, tmp_path):
    from binsight.inference.artifact import load_weights, read_meta

    endpoint = f"127.0.0.1:{free_port()}"
    run = tmp_path / "run"
    args = ["train", "--data", split, *TINY, "batch_size=8", "epochs=2", "--nnodes", "2", "--nproc", "1"]
    args += ["--rdzv-endpoint", endpoint, "--rdzv-timeout", "60", "--out", run]
    nodes = [_binsight(*args, cache=tmp_path / "cache") for _ in range(2)]
    outputs = [p.communicate(timeout=120)[0] for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], "\n".join(outputs)
    meta = read_meta(run / "artifact")
    assert meta.architecture == "tiny_cnn" and meta.metrics["epoch"] in (1, 2)
    assert load_weights(run / "artifact")  # the weights file loads and verifies
    rows = (run / "metrics.csv").read_text().splitlines()
    assert len(rows) == 3  # header + 2 epochs, written once (by rank 0)
    assert "rank 1/2 joined" in "".join(outputs) or "joined" in "".join(outputs)


def _worker_pids(launcher: int) -> dict[int, int]:
    """{RANK: pid} of the launcher's worker processes, read from /proc."""
    out = {}
    for task in Path(f"/proc/{launcher}/task").iterdir():
        children = (task / "children").read_text().split()
        for pid in children:
            try:
                env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            for item in env:
                if item.startswith(b"RANK="):
                    out[int(item[5:])] = int(pid)
    return out


def test_a_killed_worker_restarts_the_group_which_resumes_and_finishes(split, tmp_path):
    run = tmp_path / "run"
    proc = _binsight(
        "train", "--data", split, *TINY, "batch_size=4", "epochs=6", "--nproc", "2", "--max-restarts", "1",
        "--out", run, cache=tmp_path / "cache", env=held_env(tmp_path, epoch=1),
    )  # fmt: skip  # the workers wait after epoch 1 (until stopped) so the kill cannot come after the last epoch
    last = run / "weights" / "last.pt"
    deadline = time.monotonic() + 90
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = _worker_pids(proc.pid)
    assert 1 in pids, f"no worker with RANK=1 under the launcher: {pids}"
    os.kill(pids[1], signal.SIGKILL)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 0, output
    assert "resuming from" in output, output
    epochs = [int(r.split(",")[0]) for r in (run / "metrics.csv").read_text().splitlines()[1:]]
    assert epochs == list(range(1, 7))
    assert (run / "artifact" / "model.json").is_file()


def test_a_rendezvous_that_cannot_form_fails_within_its_timeout_naming_the_endpoint(split, tmp_path):
    port = free_port()
    proc = _binsight(
        "train", "--data", split, *TINY, "--nnodes", "2", "--nproc", "1", "--rdzv-endpoint", f"127.0.0.1:{port}",
        "--rdzv-timeout", "8", "--out", tmp_path / "run", cache=tmp_path / "cache",
    )  # fmt: skip
    output = proc.communicate(timeout=90)[0]
    assert proc.returncode == 1, output
    assert f"127.0.0.1:{port}" in output and "did not form within 8s" in output, output
    assert "Traceback" not in output.split("binsight: error:")[-1]


def test_sigterm_on_one_worker_stops_every_worker_at_the_same_batch_with_a_checkpoint(split, tmp_path):
    run = tmp_path / "run"
    proc = _binsight(
        "train", "--data", split, *TINY, "batch_size=4", "epochs=200", "--nproc", "2", "--max-restarts", "1",
        "--out", run, cache=tmp_path / "cache",
    )  # fmt: skip  # a deliberate stop uses no restart
    last = run / "weights" / "last.pt"
    deadline = time.monotonic() + 90
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(_worker_pids(proc.pid)[1], signal.SIGTERM)
    output = proc.communicate(timeout=90)[0]
    assert proc.returncode == 3, output
    # both workers report it, at the same place: "rank R/2: training stopped in epoch E after batch B: …"
    lines = [line for line in output.splitlines() if "/2: training stopped" in line]
    stops = {line[line.index("training stopped") :].split(":")[0] for line in lines}
    assert len(lines) == 2 and len(stops) == 1, output
    assert "SIGTERM received" in output and output.count("rank 0/2 joined") == 1, output  # no restart
    state = load_checkpoint(last)
    assert len(state["rank_states"]) == 2 and 0 < state["epoch"] < 200
    assert output.count("Resume with:") == 1 and f"Resume with: binsight train --nproc 2 --resume {run}" in output
