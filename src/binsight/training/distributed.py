"""Where rank and world size live. Single-process today; a later issue adds DDP behind the same object.

Every "only one process does this" decision (writing files, logging progress) asks :attr:`Dist.is_main`, and
saved weights always come from :func:`unwrap`, so wrapping the model later changes nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class Dist:
    """The process's place in a (future) data-parallel job.

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
