"""The worker side of a study: how many threads and which sampler seed each worker gets, and the ``jobs`` > 1
case, where :func:`spawn_workers` runs ``binsight tune --worker`` processes (logs in ``logs/worker-<i>.log``),
passes Ctrl-C/SIGTERM on to them and waits. The worker loop itself is :func:`binsight.tuning.study.run_worker`.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from binsight.config.schemas import TuneConfig
from binsight.errors import BinsightError, Interrupted
from binsight.tuning import storage as st
from binsight.utils.cpu import threads_per_worker

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

STORAGE_ENV = "BINSIGHT_TUNE_STORAGE"


def worker_threads(cfg: TuneConfig) -> int:
    """Torch threads of each worker: ``threads``, else the cores shared out between the ``jobs`` workers."""
    return cfg.threads or threads_per_worker(cfg.jobs)


def worker_seed(cfg: TuneConfig, index: int, handle: st.StorageHandle) -> int:
    """The sampler seed of worker ``index`` (``sampler_seed + index``, plus a per-host offset on an RDB storage)."""
    seed = cfg.sampler_seed + index
    if handle.kind == "rdb":  # machines sharing a study must not replay each other's random draws
        seed += int(hashlib.sha256(st.HOST.encode()).hexdigest()[:6], 16)
    return seed


def finished_trials(study: optuna.Study) -> int:
    """Finished trials (complete, pruned or failed) that count toward the budget: the progress bar's position."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = st.retried_numbers(trials)
    done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return sum(1 for t in trials if t.state in done and t.number not in retried)


def spawn_workers(
    cfg: TuneConfig, tune_dir: Path, handle: st.StorageHandle, study: optuna.Study, show_progress: bool
) -> None:
    """Run ``cfg.jobs`` worker processes (``binsight tune --worker``) and wait for them."""
    from binsight.utils.progress import progress

    logs = tune_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    threads = str(worker_threads(cfg))
    env = dict(os.environ)
    env.update({STORAGE_ENV: handle.url, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads})
    env["BINSIGHT_NO_PROGRESS"] = "1"
    procs: list[subprocess.Popen[bytes]] = []
    for i in range(cfg.jobs):
        with open(logs / f"worker-{i}.log", "ab") as out:
            cmd = [sys.executable, "-m", "binsight", "tune", "--worker", str(tune_dir), "--worker-index", str(i)]
            # A session of their own: Ctrl-C reaches the parent only, which passes exactly one signal on
            # (a second SIGINT would make the trainer abort without its checkpoint).
            procs.append(subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True))

    def forward(signum: int, frame: FrameType | None = None) -> None:  # noqa: ARG001 - signal handler signature
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, forward) if _main_thread() else None
    bar = progress(total=cfg.trials, initial=min(cfg.trials, finished_trials(study)), desc="trials", unit="trial")
    try:
        while any(p.poll() is None for p in procs):
            try:
                time.sleep(1.0)
            except KeyboardInterrupt:
                log.warning("stopping the workers: each saves its trial's checkpoint (resume with --resume)")
                forward(signal.SIGINT)
            bar.n = min(cfg.trials, finished_trials(study))
            bar.refresh()
    finally:
        bar.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    codes = [p.returncode for p in procs]
    if any(c == Interrupted.exit_code or c < 0 for c in codes):
        raise Interrupted(f"tuning stopped; continue with: binsight tune --resume {tune_dir}")
    bad = [i for i, c in enumerate(codes) if c != 0]
    if bad:
        tail = (logs / f"worker-{bad[0]}.log").read_text(errors="replace").strip().splitlines()[-15:]
        raise BinsightError(
            f"{len(bad)} of {cfg.jobs} tuning workers failed (exit codes {[codes[i] for i in bad]}); "
            f"end of {logs / f'worker-{bad[0]}.log'}:\n" + "\n".join(tail)
        )


def _main_thread() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()
