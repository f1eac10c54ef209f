"""DDP equivalence: 2 CPU processes (gloo), each with part of the batch, vs one process.

Each rank runs the same small model on its slice of a fixed batch, the loss gathers the
embeddings automatically (a process group is initialised), the parameter gradients are
all-reduced and averaged as DDP does; loss values and gradients must equal a single process on
the concatenated batch. Uneven slices (19 + 29 samples) check the padded gather.
"""

from __future__ import annotations

import datetime
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from vcreg import BarlowTwinsLoss, InfoNCELoss, VCRegLoss, VICRegLoss, WMSELoss
from vcreg.losses import SupervisedLoss

WORLD = 2
N, D_IN, K = 48, 6, 12


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(D_IN, 16), nn.Tanh(), nn.Linear(16, K)).double()


def _batch():
    g = torch.Generator().manual_seed(1)
    x_a = torch.randn(N, D_IN, generator=g, dtype=torch.float64)
    x_b = x_a + 0.3 * torch.randn(N, D_IN, generator=g, dtype=torch.float64)
    return x_a, x_b


def _labels() -> torch.Tensor:
    return torch.randint(0, 10, (N,), generator=torch.Generator().manual_seed(2))


def _cases():
    # name -> (loss module, two views?, how the batch is split between the ranks)
    return {
        "vcreg": (VCRegLoss(), False, [24, 24]),
        "vicreg": (VICRegLoss(), True, [24, 24]),
        "vicreg_uneven": (VICRegLoss(), True, [19, 29]),
        "barlow": (BarlowTwinsLoss(), True, [24, 24]),
        # two whitening sub-batches of 24: the split drawn on rank 0 must be used by all ranks
        "wmse": (WMSELoss(w_size=24), True, [24, 24]),
        "vicreg_local": (VICRegLoss(gather_distributed=False), True, [24, 24]),
        # negatives come from the whole global batch, uneven split included
        "infonce": (InfoNCELoss(temperature=0.3), True, [19, 29]),
        # no gather: a local mean per rank; with equal batches DDP's gradient average is exact
        "supervised": (SupervisedLoss(), True, [24, 24]),
    }


def _run(model, loss_fn, two_views, x_a, x_b, y=None):
    model.zero_grad()
    if getattr(loss_fn, "needs_labels", False):
        loss = loss_fn(model(x_a), model(x_b), y)
    elif two_views:
        loss = loss_fn(model(x_a), model(x_b))
    else:
        loss = loss_fn(model(x_a))
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in model.parameters()]


def _worker(rank: int, port: int, out_dir: str) -> None:
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=WORLD,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        torch.set_num_threads(1)
        x_a, x_b = _batch()
        results = {}
        for name, (loss_fn, two_views, split) in _cases().items():
            start = sum(split[:rank])
            sl = slice(start, start + split[rank])
            model = _model()
            torch.manual_seed(100 + rank)  # different RNG states on the ranks
            loss, grads = _run(model, loss_fn, two_views, x_a[sl], x_b[sl], _labels()[sl])
            for g in grads:  # what DDP does with the gradients
                dist.all_reduce(g)
                g /= WORLD
            results[name] = (loss, grads)
        # NaN on one rank only: every rank must raise (no rank left waiting in a collective)
        z = torch.randn(8, K, dtype=torch.float64)
        if rank == 1:
            z[3, 2] = float("nan")
        try:
            VICRegLoss()(z, z.clone())
            results["nan_error"] = None
        except ValueError as exc:
            results["nan_error"] = str(exc)
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]


@pytest.mark.parametrize("name", ["vcreg", "vicreg", "vicreg_uneven", "barlow", "wmse", "infonce"])
def test_ddp_equals_single_process_on_global_batch(ddp_results, name):
    loss_fn, two_views, _ = _cases()[name]
    x_a, x_b = _batch()
    model = _model()
    torch.manual_seed(100)  # rank 0's RNG state (W-MSE's sub-batch split)
    ref_loss, ref_grads = _run(model, loss_fn, two_views, x_a, x_b)
    for rank in range(WORLD):
        loss, grads = ddp_results[rank][name]
        torch.testing.assert_close(loss, ref_loss, rtol=1e-10, atol=0)
        for g, r in zip(grads, ref_grads, strict=True):
            torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-12)


def test_ddp_without_gather_uses_local_batch(ddp_results):
    # gather_distributed=False: each rank's value is the loss of its own half
    loss_fn, _, _ = _cases()["vicreg_local"]
    x_a, x_b = _batch()
    for rank in range(WORLD):
        sl = slice(24 * rank, 24 * rank + 24)
        ref, _ = _run(_model(), loss_fn, True, x_a[sl], x_b[sl])
        torch.testing.assert_close(ddp_results[rank]["vicreg_local"][0], ref)
    assert not torch.allclose(ddp_results[0]["vicreg_local"][0], ddp_results[1]["vicreg_local"][0])


def test_nan_on_one_rank_raises_on_every_rank(ddp_results):
    for rank in range(WORLD):
        msg = ddp_results[rank]["nan_error"]
        assert msg is not None and "NaN" in msg, msg


def test_ddp_supervised_loss_gradient_is_the_global_batch_gradient(ddp_results):
    loss_fn, _, _ = _cases()["supervised"]
    x_a, x_b = _batch()
    ref_loss, ref_grads = _run(_model(), loss_fn, True, x_a, x_b, _labels())
    mean_loss = sum(ddp_results[r]["supervised"][0] for r in range(WORLD)) / WORLD
    torch.testing.assert_close(mean_loss, ref_loss, rtol=1e-10, atol=0)
    for rank in range(WORLD):
        for g, r in zip(ddp_results[rank]["supervised"][1], ref_grads, strict=True):
            torch.testing.assert_close(g, r, rtol=1e-9, atol=1e-12)
