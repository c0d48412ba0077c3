"""SynthBins pre-training (``synth_pretrain=EPOCHS``): the network a real-photo run starts from.

``weights`` (ImageNet by default) are first trained for ``synth_pretrain`` epochs on ``synth_pretrain_images``
generated SynthBins photos (counts 1-5, uniform), with the library's recipe (``TrainConfig()``: the whole network,
light augmentation, AdamW 3e-4 cosine). The real training starts from that network. Over the 5 folds of
abid-sample this adds +0.026 ± 0.009 macro-F1 to ``configs/abid.yaml``, on every fold (docs/recipes.md).

The start depends on the network and its input (model, weights, head, loss, img_size, resize, amp, channels_last)
and on the two ``synth_pretrain`` keys, never on the real data or on the rest of the recipe. So it is built once
and kept under the cache root, in ``pretrain/<model>-<size>-<key>/``: ``weights.safetensors``, then
``pretrain.json`` (written last, with the weights' sha256). A build generates the photos, splits them and trains
in ``build/``, then deletes that folder. An interrupted build continues from its checkpoint the next time. A file
lock makes concurrent runs (k-fold processes, tuning workers) wait for one builder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from binsight.config.schemas import SplitConfig, SynthConfig, TrainConfig
from binsight.data.split import sha256_file
from binsight.errors import BinsightError, Interrupted
from binsight.utils.signals import StopFlag

log = logging.getLogger(__name__)

FORMAT = 1
SYNTH_SEED = 5  # the generator seed and split seed of the cross-validated start
SPLIT_SEED = 42
WEIGHTS_FILE = "weights.safetensors"
# Keys of the pre-training config that say where and how fast it runs, not what it learns.
_RUN_ONLY = ("name", "data", "cache_dir", "device", "num_workers", "tracking", "max_runtime")


@dataclass(frozen=True)
class SynthStart:
    """Where the start of a config lives and how it is built.

    Attributes:
        entry: the cache folder (``pretrain/<model>-<size>-<key>``).
        config: the pre-training run's config (its ``data`` is the build's split).
        identity: what the key digests: the config's learning keys, the generator and split seeds.
    """

    entry: Path
    config: TrainConfig
    identity: dict[str, Any]

    @property
    def weights(self) -> Path:
        return self.entry / WEIGHTS_FILE

    @property
    def build_dir(self) -> Path:
        return self.entry / "build"


def describe(cfg: TrainConfig) -> SynthStart:
    """The synthetic start of ``cfg`` (which must have ``synth_pretrain`` > 0); nothing is read or built."""
    from binsight.config.loader import to_dict
    from binsight.data.cache import PRETRAIN_DIR, cache_root
    from binsight.data.synth import SYNTH_VERSION
    from binsight.models.weights import check_weights

    if cfg.synth_pretrain < 1:
        raise BinsightError("synth_pretrain is 0: this config starts from its weights, with no SynthBins start")
    check_weights(cfg.model, cfg.weights)  # a missing file or an architecture without ImageNet weights, by name
    entry_root = cache_root(cfg.cache_dir) / PRETRAIN_DIR
    pcfg = replace(
        TrainConfig(),
        name="synth-start",
        model=cfg.model,
        weights=cfg.weights,
        head=cfg.head,
        loss=cfg.loss_kind,  # `auto` resolved, so equal losses share a start
        img_size=cfg.img_size,
        resize=cfg.resize,
        amp=cfg.amp,
        channels_last=cfg.channels_last,
        device=cfg.device,
        num_workers=cfg.num_workers,
        epochs=cfg.synth_pretrain,
        patience=0,
        synth_pretrain=0,
        synth_pretrain_images=cfg.synth_pretrain_images,
    )
    learned = {k: v for k, v in to_dict(pcfg).items() if k not in _RUN_ONLY}
    if cfg.weights not in ("imagenet", "none"):
        learned["weights"] = sha256_file(Path(cfg.weights))  # the file's content, not its path
    identity = {
        "format": FORMAT,
        "train": learned,
        "synth": {"n": cfg.synth_pretrain_images, "seed": SYNTH_SEED, "mix": "uniform", "version": SYNTH_VERSION},
        "split_seed": SPLIT_SEED,
    }
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    entry = entry_root / f"{cfg.model}-{cfg.img_size}-{key}"
    build = entry / "build"
    return SynthStart(entry, replace(pcfg, data=str(build / "split"), cache_dir=str(build / "cache")), identity)


def synth_start(cfg: TrainConfig, *, may_build: bool = True, stop: StopFlag | None = None) -> Path:
    """The weights file ``cfg``'s training starts from, built first when the cache lacks it.

    Args:
        cfg: a training config with ``synth_pretrain`` > 0.
        may_build: False in a data-parallel worker, where a nested training run cannot start.
        stop: a flag that stops a build with its checkpoint kept (signals do too, in the main thread).

    Raises:
        BinsightError: not built and ``may_build`` is false; generation or training failed.
        Interrupted: the build stopped with a checkpoint; the next call continues it.
    """
    from binsight.utils.io import file_lock

    start = describe(cfg)

    def waiting() -> None:
        log.info("another process is building the SynthBins start %s: waiting for it", start.entry.name)

    with file_lock(start.entry.parent / f".{start.entry.name}.lock", on_wait=waiting):
        if _complete(start):
            log.info("starting from the SynthBins start %s (cached)", start.weights)
            return start.weights
        if not may_build:
            raise BinsightError(
                f"the SynthBins start for this config ({start.entry}) is not built, and a data-parallel worker "
                "cannot build it: run `binsight pretrain` with the same config once on each machine first, or "
                "start the job with `binsight train --nproc N`, which builds it before starting the workers"
            )
        return _build(start, stop or StopFlag())


def start_info(weights: Path) -> dict[str, Any]:
    """What ``pretrain.json`` records of the start at ``weights`` (a path :func:`synth_start` returned)."""
    from binsight.data.cache import PRETRAIN_META

    info: dict[str, Any] = json.loads((Path(weights).parent / PRETRAIN_META).read_text())
    return info


def _complete(start: SynthStart) -> bool:
    """Whether the entry holds a finished start whose weights match the recorded sha256 (a damaged file is
    removed, so the caller rebuilds it)."""
    from binsight.data.cache import PRETRAIN_META

    try:
        meta = json.loads((start.entry / PRETRAIN_META).read_text())
    except (OSError, ValueError):
        return False
    if start.weights.is_file() and meta.get("sha256") == sha256_file(start.weights):
        start.entry.touch()  # its last use, for `binsight cache clear --older-than`
        return True
    log.warning("the SynthBins start in %s is damaged (weights missing or checksum differs): rebuilding", start.entry)
    (start.entry / PRETRAIN_META).unlink(missing_ok=True)
    start.weights.unlink(missing_ok=True)
    return False


def _build(start: SynthStart, stop: StopFlag) -> Path:
    from safetensors.torch import save

    from binsight.data.cache import PRETRAIN_META
    from binsight.data.split import split_dataset
    from binsight.data.synth import generate
    from binsight.models.weights import read_state_dict
    from binsight.training.protocol import WorkerEnv
    from binsight.training.run import train
    from binsight.utils.cpu import cpu_seconds
    from binsight.utils.io import atomic_write_bytes, atomic_write_json

    pcfg, build = start.config, start.build_dir
    n = pcfg.synth_pretrain_images
    log.info(
        "building the SynthBins start for %s at %d px: %d epochs on %d generated photos, once (Lite0 at 224 px "
        "on 3,000 photos: about 7-11 CPU minutes on 2 cores); it is kept in %s",
        pcfg.model,
        pcfg.img_size,
        pcfg.epochs,
        n,
        start.entry,
    )
    began, cpu = time.time(), cpu_seconds()
    split = Path(pcfg.data)
    if not (split / "split_summary.json").is_file():  # written last by split_dataset
        generate(build / "data", SynthConfig(n=n, seed=SYNTH_SEED, mix="uniform"), overwrite=True)
        split_dataset(build / "data", split, SplitConfig(seed=SPLIT_SEED))
    main_thread = threading.current_thread() is threading.main_thread()
    try:
        result = train(
            pcfg, out=build / "run", auto_resume=True, worker=WorkerEnv(), stop=stop, handle_signals=main_thread
        )
    except Interrupted:
        raise Interrupted(
            f"stopped while building the SynthBins start; its checkpoint is kept in {build / 'run'}: run the same "
            "command again to continue the build"
        ) from None
    state = read_state_dict(result.run_dir / "weights" / "best.pt")
    atomic_write_bytes(start.weights, save({k: v.contiguous() for k, v in state.items()}))
    atomic_write_json(
        start.entry / PRETRAIN_META,
        {
            "model": pcfg.model,
            "img_size": pcfg.img_size,
            "epochs": pcfg.epochs,
            "images": n,
            "best_epoch": result.best_epoch,
            "val_macro_f1": result.best_metrics.get("macro_f1"),
            "val_accuracy": result.best_metrics.get("accuracy"),
            "build_seconds": round(time.time() - began, 1),
            "build_cpu_seconds": round(cpu_seconds() - cpu, 1),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "sha256": sha256_file(start.weights),
            "identity": start.identity,
        },
    )
    shutil.rmtree(build, ignore_errors=True)
    log.info(
        "SynthBins start built: val macro-F1 %.3f on generated photos (epoch %d); %s",
        result.best_metrics.get("macro_f1", float("nan")),
        result.best_epoch,
        start.weights,
    )
    return start.weights
