"""Autograd-aware collectives across DDP ranks: embedding gathering and global batch norm.

Under DDP every rank computes the loss on the *global* batch gathered from all ranks. The
backward of the gather sums the gradients that every rank computed for each slice and returns to
each rank the slice of its own samples; after DDP's gradient averaging (÷ world size) the
parameter gradients equal those of a single process on the concatenated batch.

:func:`convert_sync_batchnorm` makes a model's batch norms use global-batch statistics:
``nn.SyncBatchNorm`` on CUDA, :class:`AllReduceBatchNorm` on CPU/gloo (where ``SyncBatchNorm``
is unsupported).

:func:`rank_local` hides an initialised process group from all of the above: code run inside it
(one training run of ``vcreg reproduce``'s unit placement, :mod:`vcreg.experiments.placement`)
computes exactly as in a single process while the group carries other traffic.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
from collections.abc import Iterator

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "is_distributed",
    "world_size",
    "rank",
    "gather_with_grad",
    "should_gather",
    "init_from_env",
    "any_rank",
    "rank_local",
    "AllReduceBatchNorm",
    "convert_sync_batchnorm",
]


_LOCAL: contextvars.ContextVar[bool] = contextvars.ContextVar("vcreg_rank_local", default=False)


def _group_visible() -> bool:
    return not _LOCAL.get() and dist.is_available() and dist.is_initialized()


@contextlib.contextmanager
def rank_local() -> Iterator[None]:
    """Within this context vcreg ignores the process group: :func:`is_distributed` is False,
    :func:`world_size` 1, :func:`rank` 0 and :func:`init_from_env` joins nothing, so a training
    run or a measurement computes on this rank alone, exactly as in a single process (no
    gathering, no DDP, no sharding). The group itself stays initialised for the caller."""
    token = _LOCAL.set(True)
    try:
        yield
    finally:
        _LOCAL.reset(token)


def is_distributed() -> bool:
    """True when a torch.distributed process group with more than one rank is initialised
    (and visible: not inside :func:`rank_local`)."""
    return _group_visible() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if _group_visible() else 1


def rank() -> int:
    return dist.get_rank() if _group_visible() else 0


def should_gather(gather_distributed: bool | None) -> bool:
    """Resolve a loss's ``gather_distributed`` option: None = automatic (gather iff a multi-rank
    process group is initialised); True = gather when one is (identity otherwise); False = never."""
    if gather_distributed is False:
        return False
    return is_distributed()


def init_from_env(device: torch.device) -> tuple[int, int, bool]:
    """``(world, rank, created)``: joins the process group set up by ``torchrun``.

    An initialised group is reused (``created`` False); ``WORLD_SIZE > 1`` in the environment
    creates one (NCCL on CUDA, gloo on CPU; the caller destroys it); otherwise ``(1, 0, False)``.
    Inside :func:`rank_local`: ``(1, 0, False)``.
    """
    if _LOCAL.get():
        return 1, 0, False
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank(), False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return dist.get_world_size(), dist.get_rank(), True
    return 1, 0, False


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is True on any rank (all ranks stop at the same step)."""
    if not is_distributed():
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t)
    return bool(t.item() > 0)


class _AllGather(torch.autograd.Function):
    """All-gather whose backward sums every rank's gradient for each slice (all-reduce) and
    returns this rank's slice. Equal-sized inputs (padding is done by the caller)."""

    @staticmethod
    def forward(ctx, z: Tensor) -> tuple[Tensor, ...]:
        parts = [torch.empty_like(z) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, z)
        return tuple(parts)

    @staticmethod
    def backward(ctx, *grads: Tensor) -> Tensor:
        g = torch.stack(grads)
        dist.all_reduce(g, op=dist.ReduceOp.SUM)
        return g[dist.get_rank()]


def gather_with_grad(z: Tensor) -> Tensor:
    """Concatenate ``z`` from all ranks along dim 0, rank order, keeping the autograd graph.

    Identity without a (multi-rank) process group. Ranks may hold different batch sizes: the
    sizes are exchanged first and shorter batches are padded for the collective, then trimmed.
    Works with gloo and NCCL.
    """
    if not is_distributed():
        return z
    z = z.contiguous()
    size = torch.tensor([z.shape[0]], device=z.device, dtype=torch.long)
    sizes = [torch.zeros_like(size) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, size)
    counts = [int(s.item()) for s in sizes]
    top = max(counts)
    if top != z.shape[0]:
        pad = z.new_zeros((top - z.shape[0], *z.shape[1:]))
        z = torch.cat([z, pad])
    parts = _AllGather.apply(z)
    return torch.cat([p[:c] for p, c in zip(parts, counts, strict=True)])


def _all_reduce_with_grad(t: Tensor) -> Tensor:
    # torch's autograd-aware all-reduce (sum); imported here because torch.distributed.nn is
    # absent from builds without distributed support, where this path is never reached
    from torch.distributed.nn.functional import all_reduce

    return all_reduce(t)


class AllReduceBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics are those of the global batch across ranks.

    A CPU/gloo-capable replacement for ``nn.SyncBatchNorm`` (which needs GPUs): the per-channel
    sum and sum of squared deviations are all-reduced with autograd
    (``torch.distributed.nn.functional.all_reduce``), so outputs and gradients equal single-process
    batch norm on the concatenated batch. Running statistics use the unbiased global variance.
    """

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-d input, got {x.dim()}-d")

    def forward(self, x: Tensor) -> Tensor:
        self._check_input_dim(x)
        use_batch = self.training or not self.track_running_stats
        if not (self.training and is_distributed()):
            momentum = self.momentum if self.momentum is not None else 0.0
            if self.training and self.track_running_stats:
                self.num_batches_tracked.add_(1)
                if self.momentum is None:
                    momentum = 1.0 / float(self.num_batches_tracked)
            return F.batch_norm(
                x,
                self.running_mean if not self.training or self.track_running_stats else None,
                self.running_var if not self.training or self.track_running_stats else None,
                self.weight,
                self.bias,
                use_batch,
                momentum,
                self.eps,
            )
        c = x.shape[1]
        dims = [0, *range(2, x.dim())]
        shape = [1, c] + [1] * (x.dim() - 2)
        count = x.new_tensor([x.numel() / c], dtype=torch.float32)
        s = _all_reduce_with_grad(torch.cat([x.float().sum(dims), count]))
        n = s[c]
        mean = s[:c] / n
        centered = x.float() - mean.view(shape)
        var = _all_reduce_with_grad((centered * centered).sum(dims)) / n
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = (
                    self.momentum
                    if self.momentum is not None
                    else 1.0 / float(self.num_batches_tracked)
                )
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / (n - 1), alpha=m)
        y = centered / torch.sqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Batch norms -> ``nn.SyncBatchNorm`` (CUDA) or :class:`AllReduceBatchNorm` (CPU)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    out = module
    if isinstance(module, nn.modules.batchnorm._BatchNorm) and not isinstance(
        module, AllReduceBatchNorm
    ):
        out = AllReduceBatchNorm(
            module.num_features,
            module.eps,
            module.momentum,
            module.affine,
            module.track_running_stats,
        )
        if module.affine:
            with torch.no_grad():
                out.weight.copy_(module.weight)
                out.bias.copy_(module.bias)
            out.weight.requires_grad_(module.weight.requires_grad)
            out.bias.requires_grad_(module.bias.requires_grad)
        if module.track_running_stats:
            out.running_mean.copy_(module.running_mean)
            out.running_var.copy_(module.running_var)
            out.num_batches_tracked.copy_(module.num_batches_tracked)
        out.training = module.training
    for name, child in module.named_children():
        out.add_module(name, convert_sync_batchnorm(child, device))
    return out
