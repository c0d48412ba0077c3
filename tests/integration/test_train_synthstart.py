"""``synth_pretrain``: a run starts from its weights trained on generated SynthBins photos, built once and cached."""

from __future__ import annotations

import json
import logging
import threading

import pytest
import torch
from safetensors.torch import load_file

from binsight.config import load_config
from binsight.config.schemas import TrainConfig
from binsight.data.cache import PRETRAIN_META, cache_usage, clear_cache
from binsight.errors import BinsightError, Interrupted
from binsight.training import trainer as trainer_module
from binsight.training.run import train
from binsight.training.synthstart import describe, synth_start
from tests.conftest import run_cli
from tests.integration.test_train_resume import StopAtQuery
from tests.integration.train_helpers import TINY

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = ["synth_pretrain=1", "synth_pretrain_images=50"]


def _cfg(split, cache, *extra: str) -> TrainConfig:
    return load_config(TrainConfig, None, [*TINY, f"data={split}", f"cache_dir={cache}", "epochs=1", *SMALL, *extra])


def _meta(cfg: TrainConfig) -> dict:
    return json.loads((describe(cfg).entry / PRETRAIN_META).read_text())


@pytest.fixture(scope="module")
def built(split, tmp_path_factory):
    """A cache holding the start of the tiny config, built by a first training run."""
    cache = tmp_path_factory.mktemp("cache")
    cfg = _cfg(split, cache)
    train(cfg, out=tmp_path_factory.mktemp("runs") / "first")
    return cfg


class RecordingTrainer(trainer_module.Trainer):
    """Keeps the network's weights as they are before the first step."""

    started: dict[str, torch.Tensor] = {}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        RecordingTrainer.started = {k: v.detach().clone() for k, v in self.model.state_dict().items()}


def test_the_first_run_builds_the_start_and_leaves_only_the_weights(built):
    start = describe(built)
    meta = _meta(built)
    assert (meta["model"], meta["img_size"], meta["epochs"], meta["images"]) == ("tiny_cnn", 32, 1, 50)
    assert start.weights.is_file() and not start.build_dir.exists(), "the generated photos and the run stay behind"
    entries = {e.kind: e for e in cache_usage(built.cache_dir)}
    assert (
        entries["pretrain"].path == start.entry
        and "tiny_cnn at 32 px, 1 epochs on 50 images" in entries["pretrain"].detail
    )
    # The build decoded its photos into its own folder: the shared decode cache holds only the real split.
    images = sorted(e.detail for e in cache_usage(built.cache_dir) if e.kind == "images")
    assert images == ["18 images at 32 px (letterbox)", "6 images at 32 px (letterbox)"]


def test_a_run_starts_from_the_cached_start_without_rebuilding(built, split, tmp_path, monkeypatch, caplog):
    before = _meta(built)
    monkeypatch.setattr(trainer_module, "Trainer", RecordingTrainer)
    caplog.set_level(logging.INFO, "binsight")
    # Another seed and learning rate: the same start (only the network and its input choose it).
    train(load_config(TrainConfig, None, [*_overrides(built), "seed=3", "lr=0.02"]), out=tmp_path / "second")
    assert _meta(built) == before, "the start was rebuilt"
    assert not any("building the SynthBins start for" in r.getMessage() for r in caplog.records)
    start = load_file(str(describe(built).weights))
    backbone = {k: v for k, v in RecordingTrainer.started.items() if k.startswith("backbone.")}
    assert backbone and all(torch.equal(v, start[k]) for k, v in backbone.items()), "not started from the start"

    train(load_config(TrainConfig, None, [*_overrides(built), "synth_pretrain=0"]), out=tmp_path / "plain")
    assert any(not torch.equal(RecordingTrainer.started[k], start[k]) for k in backbone), "synth_pretrain=0 ignored"


def _overrides(cfg: TrainConfig) -> list[str]:
    return [*TINY, f"data={cfg.data}", f"cache_dir={cfg.cache_dir}", "epochs=1", *SMALL]


def test_a_damaged_start_is_rebuilt(built, tmp_path, caplog):
    cfg = load_config(TrainConfig, None, [*_overrides(built), f"cache_dir={tmp_path}"])
    path = synth_start(cfg)
    first = _meta(cfg)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # one flipped bit in a weight
    path.write_bytes(bytes(data))
    caplog.set_level(logging.WARNING, "binsight")
    assert synth_start(cfg) == path
    assert any("damaged" in r.getMessage() for r in caplog.records)
    assert _meta(cfg)["sha256"] == first["sha256"], "the rebuilt start differs from the first build"


def test_an_interrupted_build_continues_from_its_checkpoint(built, tmp_path):
    cfg = load_config(TrainConfig, None, [*_overrides(built), f"cache_dir={tmp_path}", "synth_pretrain=2"])
    start = describe(cfg)
    with pytest.raises(Interrupted, match="run the same command again"):
        synth_start(cfg, stop=StopAtQuery(3))  # the build's run checks its flag after every batch and epoch
    assert (start.build_dir / "run" / "weights" / "last.pt").is_file() and not start.weights.exists()
    generated = (start.build_dir / "split" / "split_summary.json").stat().st_mtime_ns
    photos = sorted((start.build_dir / "data" / "bin-images").iterdir())
    assert len(photos) == 50
    before = {p.name: p.stat().st_mtime_ns for p in photos}

    # Watch the resumed build: the photos are not generated again and training picks up the checkpoint.
    seen: dict[str, int] = {}
    original = trainer_module.Trainer.load_state_dict

    def spy(self, state, path):
        seen["resumed_from"] = str(path)
        seen["split"] = (start.build_dir / "split" / "split_summary.json").stat().st_mtime_ns
        seen["photos"] = sum(p.stat().st_mtime_ns == before[p.name] for p in photos)
        return original(self, state, path)

    trainer_module.Trainer.load_state_dict = spy
    try:
        synth_start(cfg)
    finally:
        trainer_module.Trainer.load_state_dict = original
    assert seen["resumed_from"].startswith(str(start.build_dir / "run")), "the build did not resume"
    assert seen["split"] == generated and seen["photos"] == 50, "the photos were generated again"
    assert _meta(cfg)["epochs"] == 2 and start.weights.is_file() and not start.build_dir.exists()


def test_concurrent_runs_build_one_start(built, tmp_path, caplog):
    cfg = load_config(TrainConfig, None, [*_overrides(built), f"cache_dir={tmp_path}"])
    caplog.set_level(logging.INFO, "binsight")
    paths, errors = [], []

    def go() -> None:
        try:
            paths.append(synth_start(cfg))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(paths) == 2 and paths[0] == paths[1]
    builds = [r for r in caplog.records if "building the SynthBins start for" in r.getMessage()]
    assert len(builds) == 1, f"{len(builds)} builds"
    assert any("waiting for it" in r.getMessage() for r in caplog.records)


def test_what_chooses_the_start(built, tmp_path):
    base = _overrides(built)
    for extra in ([], ["seed=4", "lr=0.5", "epochs=9", "augment=none", "freeze_backbone=true"]):  # the rest
        assert describe(load_config(TrainConfig, None, [*base, *extra])).entry == describe(built).entry, extra
    ordinal = [
        describe(load_config(TrainConfig, None, [*base, "head=ordinal", f"loss={x}"])) for x in ("auto", "ordinal")
    ]
    assert ordinal[0].entry == ordinal[1].entry != describe(built).entry, "`auto` is the ordinal head's loss"
    for extra in (["img_size=40"], ["resize=stretch"], ["synth_pretrain=2"], ["synth_pretrain_images=60"]):
        assert describe(load_config(TrainConfig, None, [*base, *extra])).entry != describe(built).entry, extra
    weights = tmp_path / "w.pt"
    with pytest.raises(BinsightError, match="does not exist"):
        describe(load_config(TrainConfig, None, [*base, f"weights={weights}"]))


def test_a_worker_refuses_to_build_and_says_how(built, tmp_path):
    cfg = load_config(TrainConfig, None, [*_overrides(built), f"cache_dir={tmp_path}"])
    with pytest.raises(BinsightError, match="binsight pretrain"):
        synth_start(cfg, may_build=False)
    assert not describe(cfg).build_dir.exists()
    assert synth_start(load_config(TrainConfig, None, _overrides(built)), may_build=False) == describe(built).weights


def test_clearing_the_cache_removes_the_start(built, tmp_path):
    import os

    cfg = load_config(TrainConfig, None, [*_overrides(built), f"cache_dir={tmp_path}"])
    synth_start(cfg)
    entry = describe(cfg).entry
    for path in [entry, *entry.rglob("*")]:
        os.utime(path, (1_000_000, 1_000_000))  # built long ago
    synth_start(cfg)  # used now: `cache clear --older-than` must not take it
    entries = [e for e in cache_usage(tmp_path) if e.kind == "pretrain"]
    assert len(entries) == 1 and entries[0].bytes > 0 and entries[0].last_used > 2_000_000
    assert clear_cache(entries) == entries[0].bytes
    assert not describe(cfg).entry.exists()


def test_the_cli_builds_ahead_and_refuses_a_config_without_it(built, tmp_path):
    out = run_cli("pretrain", *_overrides(built))
    assert str(describe(built).weights) in out.stdout and "val macro-F1" in out.stdout
    bad = run_cli("pretrain", *_overrides(built), "synth_pretrain=0", check=False)
    assert bad.returncode == 2 and "add synth_pretrain=3" in bad.stderr


@pytest.mark.parametrize(("key", "value"), [("synth_pretrain", "-1"), ("synth_pretrain_images", "10")])
def test_bad_values_are_refused(key, value):
    from binsight.config import ConfigError

    with pytest.raises(ConfigError, match=key):
        load_config(TrainConfig, None, [f"{key}={value}"])
