"""Autograd-aware gathering of embeddings across DDP ranks.

Under DDP every rank computes the loss on the *global* batch gathered from all ranks. The
backward of the gather sums the gradients that every rank computed for each slice and returns to
each rank the slice of its own samples; after DDP's gradient averaging (÷ world size) the
parameter gradients equal those of a single process on the concatenated batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["is_distributed", "world_size", "rank", "gather_with_grad", "should_gather"]


def is_distributed() -> bool:
    """True when a torch.distributed process group with more than one rank is initialised."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def should_gather(gather_distributed: bool | None) -> bool:
    """Resolve a loss's ``gather_distributed`` option: None = automatic (gather iff a multi-rank
    process group is initialised); True = gather when one is (identity otherwise); False = never."""
    if gather_distributed is False:
        return False
    return is_distributed()


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
