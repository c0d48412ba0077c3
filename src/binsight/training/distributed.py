"""Where rank and world size live, and the few collectives the trainer needs.

Every "only one process does this" decision (writing files, logging progress) asks :attr:`Dist.is_main`, and
saved weights always come from :func:`unwrap`. The collective helpers below are no-ops in a single process,
so the trainer calls them unconditionally. :func:`shard_bounds` gives each rank its contiguous share of the
validation set.

A process is a data-parallel worker when a launcher (``binsight train --nproc``, torchrun, SageMaker's
``torch_distributed``) set ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (plus ``MASTER_ADDR``/``MASTER_PORT``);
:func:`dist_from_env` reads them (for :class:`~binsight.training.protocol.WorkerEnv`) and
:func:`init_process_group` joins the group (NCCL on GPUs, gloo on CPU).
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import torch
from torch import nn

from binsight.errors import BinsightError

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Dist:
    """The process's place in a data-parallel job.

    Attributes:
        rank: global rank (0 for a single process).
        world_size: number of processes.
        local_rank: rank on this machine (picks the GPU).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """True on the process that writes files and logs."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def unwrap(model: nn.Module) -> nn.Module:
    """The model without a DistributedDataParallel / compile wrapper, whose state dict is what gets saved."""
    from torch.nn.parallel import DataParallel, DistributedDataParallel

    while isinstance(model, DataParallel | DistributedDataParallel):
        model = model.module
    return getattr(model, "_orig_mod", model)


def dist_from_env(env: Mapping[str, str] | None = None) -> Dist:
    """The :class:`Dist` a launcher described in ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` (default: single)."""
    env = os.environ if env is None else env
    if "RANK" not in env or "WORLD_SIZE" not in env:
        return Dist()
    try:
        rank, world = int(env["RANK"]), int(env["WORLD_SIZE"])
        local = int(env.get("LOCAL_RANK", rank))
    except ValueError:
        raise BinsightError(
            f"RANK={env.get('RANK')!r}, WORLD_SIZE={env.get('WORLD_SIZE')!r}, LOCAL_RANK={env.get('LOCAL_RANK')!r} "
            "are not integers; start workers with torchrun or `binsight train --nproc N`"
        ) from None
    if not 0 <= rank < world:
        raise BinsightError(f"RANK={rank} is outside WORLD_SIZE={world}")
    return Dist(rank, world, local)


def is_initialized() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def init_process_group(dist: Dist, device: torch.device, timeout_s: float = 1800) -> None:
    """Join the process group of ``dist`` (env:// rendezvous: MASTER_ADDR / MASTER_PORT), NCCL on CUDA, else gloo.

    Raises:
        BinsightError: the group cannot form (names the address it tried).
    """
    if not dist.distributed or is_initialized():
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
    timeout = datetime.timedelta(seconds=timeout_s)
    try:
        torch.distributed.init_process_group(
            backend,
            store=_store(dist, timeout),
            rank=dist.rank,
            world_size=dist.world_size,
            timeout=timeout,
            device_id=device if device.type == "cuda" else None,
        )
    except (RuntimeError, ValueError, KeyError) as exc:  # DistNetworkError and store timeouts are RuntimeErrors
        raise BinsightError(
            f"rank {dist.rank}/{dist.world_size} could not join the process group at {where} ({backend}): {exc}. "
            "Check that MASTER_ADDR is reachable from every node and MASTER_PORT is open"
        ) from None
    log.info("rank %d/%d joined the %s process group at %s", dist.rank, dist.world_size, backend, where)


def _store(dist: Dist, timeout: datetime.timedelta) -> torch.distributed.Store:
    """The key-value store the process group forms through, with keys private to this (re)start of the workers.

    torchrun's agent keeps one store for the whole job; after a restart, keys of the previous attempt (e.g. a
    dead worker's gloo address) are still there and a fast new rank would connect to them. A prefix with the
    restart count keeps every attempt apart. Under an agent, the agent serves the store; otherwise rank 0 does.
    """
    env = os.environ
    host, port = env.get("MASTER_ADDR", "127.0.0.1"), int(env.get("MASTER_PORT", "29500"))
    agent = env.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
    store = torch.distributed.TCPStore(
        host,
        port,
        dist.world_size,
        is_master=not agent and dist.rank == 0,
        timeout=timeout,
        multi_tenant=True,
    )
    attempt = env.get("TORCHELASTIC_RESTART_COUNT", "0")
    return torch.distributed.PrefixStore(f"binsight/{env.get('TORCHELASTIC_RUN_ID', 'job')}/attempt_{attempt}/", store)


def destroy_process_group() -> None:
    if is_initialized():
        torch.distributed.destroy_process_group()


def barrier() -> None:
    if is_initialized():
        torch.distributed.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` from rank ``src`` on every rank (pickled; for small things: paths, decisions, a checkpoint)."""
    if not is_initialized():
        return obj
    box = [obj]
    torch.distributed.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order."""
    if not is_initialized():
        return [obj]
    out: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(out, obj)
    return out


def any_flags(*flags: bool) -> list[bool]:
    """Element-wise OR of boolean flags over all ranks (one small all-reduce): every rank gets the same answer."""
    if not is_initialized():
        return list(flags)
    t = torch.tensor([int(f) for f in flags], dtype=torch.int32)
    if torch.distributed.get_backend() == "nccl":
        t = t.cuda()
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return [bool(v) for v in t.tolist()]


def all_reduce_grads(params: list[nn.Parameter], world_size: int) -> None:
    """Average the gradients of ``params`` over ranks (used where the model is not wrapped in DDP)."""
    if not is_initialized():
        return
    for p in params:
        if p.grad is not None:
            torch.distributed.all_reduce(p.grad)
            p.grad.div_(world_size)


def run_on_main(fn: Callable[[], T], dist: Dist) -> T:
    """``fn()`` on rank 0, its result broadcast to every rank; an error there is raised on every rank.

    For decisions that must be made once (the run directory, which checkpoint to resume): no rank waits
    forever on a rank 0 that failed, and every rank reports the same error.
    """
    if not dist.distributed or not is_initialized():
        return fn()
    outcome: tuple[str, Any] = ("ok", None)
    if dist.is_main:
        try:
            outcome = ("ok", fn())
        except Exception as exc:  # re-raised below on rank 0 itself, as the same type elsewhere
            outcome = ("error", (type(exc), str(exc)))
            broadcast_object(outcome)
            raise
    outcome = broadcast_object(outcome)
    if outcome[0] == "error":
        exc_type, message = outcome[1]
        try:
            error = exc_type(message)
        except Exception:  # an exception type that takes other arguments
            error = BinsightError(message)
        raise error
    return cast(T, outcome[1])


def run_on_local_first(fn: Callable[[], T], dist: Dist) -> T:
    """``fn()`` on local rank 0 of every machine first, then on the other ranks (e.g. filling a disk cache
    once per machine). A failure on a local rank 0 stops every rank instead of leaving them waiting."""
    if not dist.distributed or not is_initialized():
        return fn()
    result: Any = None
    failed = False
    if dist.local_rank == 0:
        try:
            result = fn()
        except BaseException:
            any_flags(True)
            raise
    (failed,) = any_flags(False)
    if failed:
        raise BinsightError(f"rank {dist.rank}: another worker failed while preparing the data (see its message)")
    return result if dist.local_rank == 0 else fn()


def shard_bounds(n: int, dist: Dist) -> tuple[int, int]:
    """``[lo, hi)`` of rank ``dist.rank``'s contiguous share of ``n`` items (sizes differ by at most one)."""
    base, extra = divmod(n, dist.world_size)
    lo = dist.rank * base + min(dist.rank, extra)
    return lo, lo + base + (1 if dist.rank < extra else 0)
