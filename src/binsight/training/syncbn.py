"""Batch normalisation over the GLOBAL batch in data-parallel training, on CPU (gloo) as well as GPUs.

With plain BatchNorm each rank normalises with the statistics of its own shard, so N workers with a global
batch B do not compute what one process with batch B computes. ``nn.SyncBatchNorm`` fixes that but only runs
on GPUs; :class:`GlobalBatchNorm2d` does the same with two all-reduces per layer (sum, then the sum of squared
deviations, so the variance is as exact as single-process BatchNorm's) through an autograd-aware all-reduce,
whose backward all-reduces the gradients of the statistics: the gradients equal single-process BatchNorm's.

It subclasses ``nn.BatchNorm2d`` with the same parameters and buffers, so state dicts (checkpoints,
artifacts) are unchanged; outside training or a process group it is plain BatchNorm.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import nn


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; the gradient of a sum over ranks is the sum over ranks of the gradients."""

    @staticmethod
    def forward(ctx: Any, tensor: torch.Tensor) -> torch.Tensor:  # noqa: ARG004 - autograd signature
        out = tensor.clone()
        torch.distributed.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:  # noqa: ARG004 - autograd signature
        grad = grad.clone()
        torch.distributed.all_reduce(grad)
        return grad


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics cover every rank's shard of the batch (see the module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and torch.distributed.is_available() and torch.distributed.is_initialized()):
            return super().forward(x)
        c = x.shape[1]
        xf = x.float()
        count = torch.tensor([float(x.numel() // c)], dtype=torch.float32, device=x.device)
        s = _AllReduceSum.apply(torch.cat([xf.sum(dim=(0, 2, 3)), count]))
        n = s[c].detach()
        mean = s[:c] / n
        centred = xf - mean.view(1, c, 1, 1)
        var = _AllReduceSum.apply((centred * centred).sum(dim=(0, 2, 3))) / n
        y = centred * torch.rsqrt(var + self.eps).view(1, c, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), float(n))
        return cast(torch.Tensor, y.to(x.dtype))

    @torch.no_grad()
    def _update_running_stats(self, mean: torch.Tensor, var: torch.Tensor, n: float) -> None:
        # The same rule as F.batch_norm: unbiased variance, momentum (or a cumulative average when None).
        tracked, running_mean, running_var = self.num_batches_tracked, self.running_mean, self.running_var
        assert tracked is not None and running_mean is not None and running_var is not None  # track_running_stats
        tracked.add_(1)
        factor = 1.0 / float(tracked) if self.momentum is None else self.momentum
        unbiased = var * (n / max(n - 1.0, 1.0))
        running_mean.mul_(1 - factor).add_(mean.to(running_mean.dtype), alpha=factor)
        running_var.mul_(1 - factor).add_(unbiased.to(running_var.dtype), alpha=factor)


def convert_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BatchNorm2d of ``module`` by a synchronised one: ``nn.SyncBatchNorm`` on CUDA, else
    :class:`GlobalBatchNorm2d`. Weights and running statistics are carried over; returns the module."""
    if device.type == "cuda":
        return cast(nn.Module, nn.SyncBatchNorm.convert_sync_batchnorm(module))  # type: ignore[no-untyped-call]
    return _convert_cpu(module)


def _convert_cpu(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, GlobalBatchNorm2d):
        out = GlobalBatchNorm2d(
            module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats
        )
        out = out.to(device=_param_device(module))
        with torch.no_grad():
            if module.affine:
                out.weight.copy_(module.weight)
                out.bias.copy_(module.bias)
                out.weight.requires_grad_(module.weight.requires_grad)
                out.bias.requires_grad_(module.bias.requires_grad)
            if module.track_running_stats:
                for buffer in ("running_mean", "running_var", "num_batches_tracked"):
                    getattr(out, buffer).copy_(getattr(module, buffer))
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _convert_cpu(child))
    return out


def _param_device(module: nn.Module) -> torch.device:
    for t in list(module.parameters()) + list(module.buffers()):
        return t.device
    return torch.device("cpu")
