"""Start data-parallel workers through torchrun's elastic agent, as a library call (no temporary scripts).

``binsight train --nproc N …`` (and :func:`train_distributed`) end up in :func:`launch_workers`: one
``torch.distributed.launcher.elastic_launch`` agent on this machine starts ``N`` worker processes, each running
``python -m binsight train …`` with the same arguments (minus the launcher's), with ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set, so the worker code path is exactly the one an outside
torchrun (or SageMaker's ``torch_distributed``) starts. Rendezvous is c10d: on one machine on a free loopback
port; across machines at ``--rdzv-endpoint HOST:PORT`` (the agent on HOST serves it).

When a worker dies, the agent stops the others and, while ``max_restarts`` allows, starts them all again;
they resume from the run's last checkpoint (the launcher passes ``--out RUN --auto-resume``).

A deliberate stop is not a failure: workers that stop for ``max_runtime`` or a stop signal (after saving the
checkpoint) record it in a file this launcher names (:mod:`binsight.training.stopfile`) and exit 0, so the agent
restarts nothing; the launcher then raises :class:`~binsight.errors.Interrupted` (exit 3) with the resume command.
``max_runtime`` counts from the launcher's start across restarts; a new launch (``--resume``) starts a new budget.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from binsight.errors import BinsightError, Interrupted

log = logging.getLogger(__name__)

INTERRUPTED_EXIT = 3  # a worker that stopped with a checkpoint (binsight.errors.Interrupted)
DEFAULT_RDZV_PORT = 29400


def parse_nnodes(nnodes: str | int) -> tuple[int, int]:
    """``"2"`` → (2, 2); ``"1:4"`` → (1, 4) (elastic: start with at least 1, admit up to 4 machines)."""
    text = str(nnodes)
    try:
        lo, _, hi = text.partition(":")
        low, high = int(lo), int(hi or lo)
    except ValueError:
        raise BinsightError(f"--nnodes {text!r} must be a number of machines (2) or a range MIN:MAX (1:4)") from None
    if not 1 <= low <= high:
        raise BinsightError(f"--nnodes {text!r}: need 1 <= MIN <= MAX")
    return low, high


def worker_threads(nproc: int) -> int:
    """Torch threads per worker: this machine's cores divided among the workers (at least 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, cores // max(1, nproc))


def launch_workers(
    worker_argv: list[str],
    nproc: int,
    nnodes: str | int = 1,
    max_restarts: int = 0,
    rdzv_endpoint: str | None = None,
    rdzv_timeout: float = 900,
    rdzv_backend: str = "c10d",
    node_rank: int | None = None,
    run_id: str | None = None,
    run_dir: Path | None = None,
) -> None:
    """Start ``nproc`` workers running ``python <worker_argv>`` on this machine and wait for them.

    Args:
        worker_argv: the interpreter arguments of a worker, e.g. ``["-m", "binsight", "train", "--data", …]``.
        nproc: workers on this machine (one per GPU; on CPU, cores are divided among them).
        nnodes: machines in the job (``"2"`` or an elastic range ``"1:4"``).
        max_restarts: times the agent restarts all workers after a failure before giving up.
        rdzv_endpoint: ``HOST:PORT`` of the rendezvous (required for several machines; default: a free
            loopback port, one machine).
        rdzv_timeout: seconds to wait for all machines to join.
        rdzv_backend: ``c10d`` (default) or ``static`` (with ``node_rank``: fixed machine ranks, as SageMaker).
        node_rank: this machine's rank for the ``static`` backend.
        run_id: rendezvous id shared by the machines of one job (default: ``binsight`` for several
            machines, a random one on a single machine).
        run_dir: the run directory, named in the resume hint when the workers stop with a checkpoint.

    Raises:
        Interrupted: the workers stopped with a checkpoint (SIGTERM, Ctrl-C, ``max_runtime``); no restart is
            used for that.
        BinsightError: the rendezvous did not form (names the endpoint and timeout) or a worker failed.
    """
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.elastic.rendezvous.api import RendezvousError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    from binsight.training.stopfile import STOP_FILE_ENV, read_stop

    min_nodes, max_nodes = parse_nnodes(nnodes)
    if nproc < 1:
        raise BinsightError(f"--nproc {nproc}: need at least 1 worker per machine")
    single = max_nodes == 1
    if not rdzv_endpoint:
        if not single:
            raise BinsightError(
                "--nnodes > 1 needs --rdzv-endpoint HOST:PORT, an address of one of the machines that every "
                f"machine can reach (e.g. node1:{DEFAULT_RDZV_PORT}); start the same command on each machine"
            )
        rdzv_endpoint = "127.0.0.1:0"  # the agent picks a free port
    timeout = max(1, round(rdzv_timeout))
    configs: dict[str, Any] = {"timeout": timeout, "join_timeout": timeout, "read_timeout": timeout}
    if rdzv_backend == "static":
        configs["rank"] = node_rank or 0
    threads = worker_threads(nproc)
    # Workers inherit the environment: threads per worker, and the job's start (max_runtime spans restarts);
    # the launcher prints the result, not rank 0. Restored afterwards: a library caller keeps its environment.
    worker_env = {
        "OMP_NUM_THREADS": str(threads),
        "BINSIGHT_WORKER_THREADS": str(threads),
        "BINSIGHT_JOB_START": os.environ.get("BINSIGHT_JOB_START") or repr(time.time()),
        "BINSIGHT_LAUNCHED": "1",
        STOP_FILE_ENV: "",  # set below, in a folder private to this launch
    }
    config = LaunchConfig(
        min_nodes=min_nodes,
        max_nodes=max_nodes,
        nproc_per_node=nproc,
        run_id=run_id or ("binsight" if not single else uuid.uuid4().hex[:12]),
        rdzv_endpoint=rdzv_endpoint,
        rdzv_backend=rdzv_backend,
        rdzv_configs=configs,
        max_restarts=max_restarts,
        monitor_interval=0.2,
        start_method="spawn",
    )
    log.info(
        "starting %d worker(s) on this machine (%s machine(s), rendezvous %s %s, %d thread(s) each, "
        "up to %d restart(s))",
        nproc,
        f"{min_nodes}" if min_nodes == max_nodes else f"{min_nodes}-{max_nodes}",
        rdzv_backend,
        "on loopback" if single else rdzv_endpoint,
        threads,
        max_restarts,
    )
    resume_hint = f"binsight train --nproc {nproc} --resume {run_dir}" if run_dir else "binsight train --resume RUN"
    saved = {key: os.environ.get(key) for key in worker_env}
    private = tempfile.TemporaryDirectory(prefix="binsight-launch-")
    stop_file = Path(private.name) / "stop.json"
    worker_env[STOP_FILE_ENV] = str(stop_file)
    os.environ.update(worker_env)
    try:
        elastic_launch(config, sys.executable)(*worker_argv)
        stop = read_stop(stop_file)
        if stop is not None and not _finished(run_dir):
            raise Interrupted(f"{stop['message']}\nResume with: {resume_hint}")
    except ChildFailedError as exc:
        first_rank, first = min(exc.failures.items(), key=lambda kv: kv[1].timestamp)
        # The ranks agree on a stop and checkpoint together; once the first exits with code 3 the agent ends the
        # others, which may then report a signal instead of 3. The first failure tells what happened.
        if first.exitcode == INTERRUPTED_EXIT:
            raise Interrupted(f"the workers stopped with a checkpoint saved.\nResume with: {resume_hint}") from None
        raise BinsightError(
            f"worker rank {first_rank} failed with exit code {first.exitcode} "
            f"after {max_restarts} restart(s) (its error is printed above)"
        ) from None
    except SignalException as exc:
        stop = read_stop(stop_file)  # the workers got the signal from the agent and saved their checkpoint
        what = stop["message"] if stop else f"{exc.sigval.name} received: the workers were asked to save a checkpoint"
        raise Interrupted(f"{what}\nResume with: {resume_hint}") from None
    except RendezvousError as exc:
        raise BinsightError(
            f"the rendezvous at {rdzv_endpoint} did not form within {timeout}s: {min_nodes} machine(s) were "
            f"expected ({type(exc).__name__}: {exc}). Start the same command on every machine, check that "
            f"{rdzv_endpoint} is reachable from each, or raise --rdzv-timeout"
        ) from None
    finally:
        private.cleanup()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _finished(run_dir: Path | None) -> bool:
    """True when ``run_dir``'s checkpoint says training finished: a stop recorded by an earlier attempt of this
    launch (one whose workers then failed and were restarted) does not hide a later attempt's success."""
    last = Path(run_dir) / "weights" / "last.pt" if run_dir else None
    if last is None or not last.is_file():
        return False
    from binsight.training.checkpoint import load_checkpoint

    try:
        return bool(load_checkpoint(last).get("finished"))
    except BinsightError:
        return False


def train_distributed(cfg, nproc: int, out: str | Path, max_restarts: int = 0) -> dict[str, Any]:
    """Train ``cfg`` with ``nproc`` local data-parallel workers (the ``binsight train --nproc`` launcher).

    Args:
        cfg: a :class:`~binsight.config.schemas.TrainConfig` (``cfg.data`` = the split folder;
            ``batch_size`` is the global batch).
        nproc: worker processes on this machine.
        out: the run directory; if it already holds this run with a checkpoint, the run continues.
        max_restarts: restarts of the whole worker group after a failure (each resumes from the checkpoint).

    Returns:
        ``{"run_dir", "artifact_dir", "best_epoch", "best_metrics", "history", "stopped_early"}`` read back
        from the run directory (like :class:`~binsight.training.run.TrainResult`).

    Raises:
        Interrupted: the workers stopped with a checkpoint (resume by calling again with the same ``out``).
        BinsightError: a worker failed more often than ``max_restarts`` allows.
    """
    import tempfile

    from binsight.config.loader import dump_yaml
    from binsight.training.checkpoint import load_checkpoint

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="binsight-ddp-") as tmp:
        config = Path(tmp) / "train.yaml"
        config.write_text(dump_yaml(cfg), encoding="utf-8")
        argv = ["-m", "binsight", "train", "--config", str(config), "--out", str(out), "--auto-resume"]
        launch_workers(argv, nproc, max_restarts=max_restarts, run_dir=out)
    return read_run_result(out, load_checkpoint)


def read_run_result(run_dir: Path, load_checkpoint=None) -> dict[str, Any]:
    """The finished run in ``run_dir`` as a dict with the fields of :class:`~binsight.training.run.TrainResult`."""
    if load_checkpoint is None:
        from binsight.training.checkpoint import load_checkpoint
    state = load_checkpoint(run_dir / "weights" / "last.pt")
    best = state["best"]
    return {
        "run_dir": run_dir,
        "artifact_dir": run_dir / "artifact",
        "best_epoch": int(best["epoch"]),
        "best_metrics": best["metrics"],
        "history": list(state["history"]),
        "stopped_early": bool(state["stopped_early"]),
    }
