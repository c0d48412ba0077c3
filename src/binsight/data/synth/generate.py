"""``generate``: write a SynthBins dataset in ABID layout, in parallel, byte-identical for a given seed."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from binsight.config.loader import to_dict
from binsight.config.schemas import SynthConfig
from binsight.data.synth.metadata import metadata_bytes
from binsight.data.synth.plan import class_plan, id_width, image_id, image_rng, label_order
from binsight.data.synth.render import encode_jpeg, render_bin
from binsight.errors import DataError

# Bump when a change alters the pictures a given config and seed produce.
SYNTH_VERSION = "1.0"
IMAGES_DIR = "bin-images"
METADATA_DIR = "metadata"
MANIFEST = "synth.json"
CHUNK = 16


def render_sample(cfg: SynthConfig, index: int, count: int, width: int) -> tuple[bytes, bytes]:
    """JPEG bytes and metadata bytes of image ``index`` (0-based) holding ``count`` items."""
    rng = image_rng(cfg.seed, index)
    fname = f"{image_id(index, width)}.jpg"
    img, meta = render_bin(rng, count, cfg, fname)
    return encode_jpeg(rng, img, cfg), metadata_bytes(meta)


def _write_chunk(job: tuple[str, SynthConfig, int, list[tuple[int, int]]]) -> int:
    """Render and write the images of one chunk; returns how many were written. Runs in a pool worker."""
    out, cfg, width, items = job
    root = Path(out)
    for index, count in items:
        jpg, meta = render_sample(cfg, index, count, width)
        stem = image_id(index, width)
        # Plain writes: the manifest, written last and atomically, is what marks the dataset complete.
        (root / IMAGES_DIR / f"{stem}.jpg").write_bytes(jpg)
        (root / METADATA_DIR / f"{stem}.json").write_bytes(meta)
    return len(items)


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file; give a folder to write the dataset into")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise DataError(
                f"--out {out} is not empty; choose a new folder, or pass --overwrite to replace "
                f"its {IMAGES_DIR}/, {METADATA_DIR}/ and {MANIFEST}"
            )
        # Remove the previous dataset only, so no stale image of a larger earlier run survives.
        for sub in (IMAGES_DIR, METADATA_DIR):
            if (out / sub).is_dir():
                shutil.rmtree(out / sub)
        (out / MANIFEST).unlink(missing_ok=True)
    (out / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
    (out / METADATA_DIR).mkdir(parents=True, exist_ok=True)


def manifest(cfg: SynthConfig, plan: dict[int, int]) -> dict:
    """The ``synth.json`` document: what was generated and how to generate it again.

    ``workers`` is left out: it changes the speed, never the bytes.
    """
    from binsight import __version__

    config = to_dict(cfg)
    config.pop("workers", None)
    return {
        "generator": "SynthBins",
        "synth_version": SYNTH_VERSION,
        "binsight_version": __version__,
        "seed": cfg.seed,
        "n": sum(plan.values()),
        "class_counts": {str(c): k for c, k in sorted(plan.items())},
        "id_width": id_width(sum(plan.values())),
        "layout": {"images": f"{IMAGES_DIR}/<id>.jpg", "metadata": f"{METADATA_DIR}/<id>.json"},
        "config": config,
    }


def generate(out: Path | str, cfg: SynthConfig, show_progress: bool = True, overwrite: bool = False) -> dict:
    """Generate ``cfg.n`` SynthBins images with their ABID metadata under ``out``.

    Image ``i`` depends only on ``(cfg, i)``, so the output is byte-identical whatever ``cfg.workers`` is.

    Args:
        out: dataset root; receives ``bin-images/``, ``metadata/`` and ``synth.json``.
        cfg: a validated generator config.
        show_progress: show a progress bar (still off under ``BINSIGHT_NO_PROGRESS=1``).
        overwrite: replace a previous dataset in a non-empty ``out`` instead of refusing.

    Returns:
        Summary: ``out``, ``n``, ``class_counts`` (count → images), ``seconds``, ``images_per_s``, ``workers``.

    Raises:
        DataError: ``out`` is a file, or a non-empty folder and ``overwrite`` is false.
    """
    from binsight.utils.io import atomic_write_json
    from binsight.utils.progress import progress

    cfg.validate()
    out = Path(out)
    _prepare_out(out, overwrite)
    plan = class_plan(cfg.n, cfg.counts, cfg.mix)
    labels = label_order(plan, cfg.seed)
    width = id_width(cfg.n)
    items = [(i, int(c)) for i, c in enumerate(labels)]
    jobs = [(str(out), cfg, width, items[k : k + CHUNK]) for k in range(0, len(items), CHUNK)]
    workers = min(cfg.workers or os.cpu_count() or 1, max(1, len(jobs)))
    start = time.perf_counter()
    bar = progress(total=cfg.n, unit="img", desc="synth") if show_progress else _NoBar()
    try:
        if workers == 1:
            for job in jobs:
                bar.update(_write_chunk(job))
        else:
            import multiprocessing as mp

            # Not fork: forking a process that has threads (torch's pool, tqdm's monitor, a test runner's) can
            # leave a worker waiting forever on a lock that was held at the fork. A forkserver forks from a
            # clean single-threaded server that has this module imported once; each worker builds its own
            # texture bank.
            if "forkserver" in mp.get_all_start_methods():
                ctx = mp.get_context("forkserver")
                ctx.set_forkserver_preload([__name__])
            else:
                ctx = mp.get_context("spawn")
            with ctx.Pool(workers) as pool:
                for done in pool.imap_unordered(_write_chunk, jobs):
                    bar.update(done)
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    atomic_write_json(out / MANIFEST, manifest(cfg, plan))
    return {
        "out": str(out),
        "n": cfg.n,
        "class_counts": {c: k for c, k in sorted(plan.items())},
        "seconds": round(seconds, 3),
        "images_per_s": round(cfg.n / seconds, 1) if seconds > 0 else 0.0,
        "workers": workers,
    }
