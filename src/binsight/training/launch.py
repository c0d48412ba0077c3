"""The launcher side of a data-parallel job: start workers through torchrun's elastic agent, as a library call
(no temporary scripts), and wait for them.

:func:`launch_job` (``run_training_job(cfg, launch=Launch(nproc=N))``, ``binsight train --nproc N``) fixes the
run directory, writes the resolved config into it (``launch-config.yaml``) and calls :func:`launch_workers`: one
``torch.distributed.launcher.elastic_launch`` agent on this machine starts ``N`` worker processes, each running
``python -m binsight train --config RUN/launch-config.yaml --out RUN --auto-resume``, with ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` set, so the worker code path is exactly the one
an outside torchrun (or SageMaker's ``torch_distributed``) starts. What else a worker learns comes from
:class:`~binsight.training.protocol.LauncherEnv`. Rendezvous is c10d: on one machine on a free loopback port;
across machines at ``rdzv_endpoint`` (the agent on HOST serves it).

When a worker dies, the agent stops the others and, while ``max_restarts`` allows, starts them all again;
they resume from the run's last checkpoint. A deliberate stop is not a failure (see
:mod:`binsight.training.protocol`): the launcher raises :class:`~binsight.errors.Interrupted` (exit 3) with the
resume command. ``max_runtime`` counts from the launcher's start across restarts; a new launch starts a new budget.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from binsight.config.schemas import TrainConfig
from binsight.errors import BinsightError, CheckpointError, Interrupted
from binsight.training.protocol import INTERRUPTED_EXIT, LauncherEnv, StopRecord, job_start
from binsight.utils.cpu import threads_per_worker

if TYPE_CHECKING:
    from binsight.training.run import TrainResult

log = logging.getLogger(__name__)

DEFAULT_RDZV_PORT = 29400
LAUNCH_CONFIG = "launch-config.yaml"


@dataclass(frozen=True)
class Launch:
    """How to start the workers of a data-parallel job (``binsight train --nproc/--nnodes …``).

    Attributes:
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
    """

    nproc: int = 1
    nnodes: str = "1"
    max_restarts: int = 0
    rdzv_endpoint: str | None = None
    rdzv_timeout: float = 900
    rdzv_backend: str = "c10d"
    node_rank: int = 0
    run_id: str | None = None

    @property
    def max_nodes(self) -> int:
        return parse_nnodes(self.nnodes)[1]


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


def launch_job(
    cfg: TrainConfig,
    launch: Launch,
    out: str | Path | None = None,
    project: str | Path = "runs",
    resume: str | Path | None = None,
    auto_resume: bool = False,
    publish_sagemaker: bool = False,
    verbose: bool = False,
) -> TrainResult | None:
    """Train ``cfg`` with the workers ``launch`` describes and wait for them (the launcher process's part of
    :func:`~binsight.training.job.run_training_job`; the arguments mean the same there).

    Returns:
        The run's result read back from its directory, or None when rank 0 wrote the run on another machine
        (several machines without shared storage).

    Raises:
        Interrupted: the workers stopped with a checkpoint (resume with ``resume=`` the run directory).
        BinsightError: the rendezvous did not form, a worker failed more often than ``max_restarts`` allows,
            or ``out`` already holds another run.
    """
    from binsight.config.loader import dump_yaml
    from binsight.training.checkpoint import has_checkpoint, holds_run
    from binsight.training.run import resolve_run_dir
    from binsight.utils.io import atomic_write_text, next_run_dir

    if resume is not None:
        run_dir = resolve_run_dir(resume)
        if not has_checkpoint(run_dir):
            raise CheckpointError(f"no checkpoint in {run_dir / 'weights'} to resume (is this a training run?)")
    elif out is not None:
        run_dir = Path(out)
        if not auto_resume and holds_run(run_dir):
            raise BinsightError(
                f"{run_dir} already holds a training run; continue it with `binsight train --nproc {launch.nproc} "
                f"--resume {run_dir}` or choose another --out"
            )
    elif launch.max_nodes > 1:
        raise BinsightError(
            "--nnodes > 1 needs --out RUNDIR (the same path on every machine, ideally shared storage) so that "
            "restarted workers find the run's checkpoint"
        )
    else:
        run_dir = next_run_dir(project, "train", cfg.name)  # fixed now, so restarts resume it
    # The resolved config travels as the workers' --config: every worker (and every restart) trains the same
    # thing, and overrides have been applied once. A resumed run continues from its checkpoint (--auto-resume).
    run_dir = run_dir.resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    config = run_dir / LAUNCH_CONFIG
    if cfg.data:
        cfg = replace(cfg, data=str(Path(cfg.data).resolve()))  # workers may start in another directory
    atomic_write_text(config, dump_yaml(cfg))
    if cfg.synth_pretrain and resume is None and not has_checkpoint(run_dir):  # a resume needs no start
        from binsight.training.synthstart import synth_start

        synth_start(cfg)  # built here, where a nested run may start; the workers find it in the cache
    argv = ["-m", "binsight", *(["-v"] if verbose else []), "train"]
    argv += ["--config", str(config), "--out", str(run_dir), "--auto-resume"]
    if publish_sagemaker:
        argv.append("--publish-sagemaker")
    launch_workers(argv, launch, run_dir)
    if not has_checkpoint(run_dir):
        return None  # several machines without shared storage: rank 0 wrote the run on another machine
    return read_run_result(run_dir)


def launch_workers(worker_argv: list[str], launch: Launch, run_dir: Path | None = None) -> None:
    """Start ``launch.nproc`` workers running ``python <worker_argv>`` on this machine and wait for them.

    Args:
        worker_argv: the interpreter arguments of a worker, e.g. ``["-m", "binsight", "train", "--data", …]``.
        launch: how many workers, machines and restarts, and the rendezvous.
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

    nproc, max_restarts = launch.nproc, launch.max_restarts
    min_nodes, max_nodes = parse_nnodes(launch.nnodes)
    if nproc < 1:
        raise BinsightError(f"--nproc {nproc}: need at least 1 worker per machine")
    single = max_nodes == 1
    rdzv_endpoint = launch.rdzv_endpoint
    if not rdzv_endpoint:
        if not single:
            raise BinsightError(
                "--nnodes > 1 needs --rdzv-endpoint HOST:PORT, an address of one of the machines that every "
                f"machine can reach (e.g. node1:{DEFAULT_RDZV_PORT}); start the same command on each machine"
            )
        rdzv_endpoint = "127.0.0.1:0"  # the agent picks a free port
    timeout = max(1, round(launch.rdzv_timeout))
    configs: dict[str, Any] = {"timeout": timeout, "join_timeout": timeout, "read_timeout": timeout}
    if launch.rdzv_backend == "static":
        configs["rank"] = launch.node_rank or 0
    config = LaunchConfig(
        min_nodes=min_nodes,
        max_nodes=max_nodes,
        nproc_per_node=nproc,
        run_id=launch.run_id or ("binsight" if not single else uuid.uuid4().hex[:12]),
        rdzv_endpoint=rdzv_endpoint,
        rdzv_backend=launch.rdzv_backend,
        rdzv_configs=configs,
        max_restarts=max_restarts,
        monitor_interval=0.2,
        start_method="spawn",
    )
    private = tempfile.TemporaryDirectory(prefix="binsight-launch-")
    stop_file = Path(private.name) / "stop.json"
    to_workers = LauncherEnv(threads_per_worker(nproc), job_start(os.environ), stop_file)
    log.info(
        "starting %d worker(s) on this machine (%s machine(s), rendezvous %s %s, %d thread(s) each, "
        "up to %d restart(s))",
        nproc,
        f"{min_nodes}" if min_nodes == max_nodes else f"{min_nodes}-{max_nodes}",
        launch.rdzv_backend,
        "on loopback" if single else rdzv_endpoint,
        to_workers.threads,
        max_restarts,
    )
    resume_hint = f"binsight train --nproc {nproc} --resume {run_dir}" if run_dir else "binsight train --resume RUN"
    # Workers inherit this process's environment; restored afterwards: a library caller keeps its environment.
    worker_env = to_workers.to_env()
    saved = {key: os.environ.get(key) for key in worker_env}
    os.environ.update(worker_env)
    try:
        elastic_launch(config, sys.executable)(*worker_argv)
        stop = StopRecord.read(stop_file)
        if stop is not None and not _finished(run_dir):
            raise Interrupted(f"{stop.message}\nResume with: {resume_hint}")
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
        stop = StopRecord.read(stop_file)  # the workers got the signal from the agent and saved their checkpoint
        what = stop.message if stop else f"{exc.sigval.name} received: the workers were asked to save a checkpoint"
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


def read_run_result(run_dir: Path) -> TrainResult:
    """The finished run in ``run_dir``, read back from its last checkpoint."""
    from binsight.training.checkpoint import load_checkpoint
    from binsight.training.run import TrainResult

    state = load_checkpoint(run_dir / "weights" / "last.pt")
    best = state["best"]
    return TrainResult(
        run_dir=run_dir,
        artifact_dir=run_dir / "artifact",
        best_epoch=int(best["epoch"]),
        best_metrics=best["metrics"],
        history=list(state["history"]),
        stopped_early=bool(state["stopped_early"]),
    )
