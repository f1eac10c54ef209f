"""The SSL trainer: ``train(config) -> RunResult``.

Reproducibility: model init comes from ``seed``; the data order of epoch ``e`` is a permutation
drawn from a generator seeded with ``(seed, e)`` and the augmentation of step ``s`` from
``(seed, e, s)`` — so a run resumed from a checkpoint (model, optimizer, step counter, RNG states
of python/numpy/torch, partial-epoch metric sums) continues exactly as the uninterrupted run.

Data paths: in-memory tensors (``num_workers == 0`` and a ``TensorDataset``; the fast path for
MNIST-1D) build each GLOBAL batch from the epoch permutation, augment it as a batch, and give
rank ``r`` the contiguous slice ``[r·b, (r+1)·b)``, so that the gathered global batch under DDP is
exactly the single-process batch (same order). Otherwise a ``DataLoader`` over
``TwoViewDataset`` with a ``DistributedSampler`` (seeded with ``seed``, ``set_epoch(e)``) and
per-sample augmentation seeded by ``(seed, e, index)``.

DDP (``torchrun --nproc_per_node=N -m vcreg train ...``): the process group is initialised
from the torchrun environment (NCCL on CUDA, gloo on CPU), the model is wrapped in
``DistributedDataParallel``, batch norms become synchronized (``nn.SyncBatchNorm`` on CUDA; an
all-reduce batch norm on CPU, where ``SyncBatchNorm`` is unsupported), and the losses compute on
the embeddings gathered from all ranks. Rank 0 writes checkpoints, metrics and monitoring.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from vcreg.training.checkpoint import (
    atomic_write_text,
    get_rng_state,
    load_model_state,
    save_checkpoint,
    set_rng_state,
)
from vcreg.training.config import TrainConfig
from vcreg.training.optim import build_optimizer, lr_at
from vcreg.training.runfolder import open_run_folder, resume_state, retire_stale_eval

__all__ = [
    "RunResult",
    "SSLModel",
    "TrainingDivergedError",
    "train",
    "build_model",
    "build_loss",
    "resolve_device",
    "mix_seed",
]

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
# config fields that may differ between the original run and its resumption
_RESUME_FREE = ("device", "threads", "tensorboard", "data.num_workers", "data.root")


class TrainingDivergedError(RuntimeError):
    """The loss became NaN/Inf; the last good checkpoint is left untouched."""


@dataclass
class RunResult:
    """What :func:`train` returns.

    ``status``: "completed" or "interrupted" (SIGINT/SIGTERM or ``stop_after_epochs``);
    ``final_metrics``: the last epoch's metrics; ``history``: one dict per epoch (as in
    ``metrics.jsonl``); ``encoder``/``projector``: the trained modules (eval mode, on ``device``).
    """

    out_dir: Path | None
    status: str
    final_metrics: dict[str, Any]
    history: list[dict[str, Any]]
    encoder: nn.Module
    projector: nn.Module
    config: TrainConfig
    epochs_completed: int
    device: str
    wall_time_s: float
    extra: dict[str, Any] = field(default_factory=dict)


class SSLModel(nn.Module):
    """``projector(encoder(x))``; ``representation(x)`` is the encoder output (the paper's X)."""

    def __init__(self, encoder: nn.Module, projector: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.projector = projector

    def forward(self, x: Tensor) -> Tensor:
        return self.projector(self.encoder(x))


# -- building blocks -----------------------------------------------------------------------------


def mix_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (numpy SeedSequence)."""
    state = np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(
        1, dtype=np.uint64
    )
    return int(state[0] % (2**63))


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available (``cuda:LOCAL_RANK`` under torchrun), else CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available")
        if device == "cuda":
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
    return torch.device(device)


def build_model(cfg: TrainConfig, input_shape: tuple[int, ...]) -> SSLModel:
    """Encoder + projector from the config, initialised from ``cfg.seed``."""
    from vcreg.models import build_encoder
    from vcreg.projectors import MLPProjector, RandomFeatureProjector

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(mix_seed(cfg.seed, 1))
        encoder = build_encoder(
            cfg.encoder.name, input_shape, cfg.encoder.repr_dim, **cfg.encoder.options
        )
    pr, d = cfg.projector, cfg.encoder.repr_dim
    projector: nn.Module
    if pr.kind == "mlp":
        projector = MLPProjector(
            d,
            pr.spec,
            batch_norm=pr.batch_norm,
            activation=pr.activation,
            frozen=pr.frozen,
            seed=mix_seed(cfg.seed, 2) % 2**62,
        )
    elif pr.kind == "random_features":
        projector = RandomFeatureProjector(
            d,
            pr.features_per_dim,
            kernel=pr.kernel,
            bandwidth=pr.bandwidth,
            seed=mix_seed(cfg.seed, 3) % 2**31,
            scale=pr.scale,
            standardize=pr.standardize,
        )
    else:
        projector = nn.Identity()
        projector.out_dim = d  # type: ignore[assignment]
    return SSLModel(encoder, projector)


class _TwoViewVCReg(nn.Module):
    """VCReg on each view, averaged, plus ``invariance``·MSE between the views (default 0).

    Under DDP both views are gathered first, so all terms are those of the global batch.
    ``.terms``: "variance", "covariance" (averaged over the views, unweighted), "invariance".
    """

    def __init__(self, invariance: float = 0.0, **params: Any) -> None:
        super().__init__()
        from vcreg.losses import VCRegLoss

        self.invariance = float(invariance)
        self.vcreg = VCRegLoss(**params, gather_distributed=False, check_finite=False)

    def forward(self, z_a: Tensor, z_b: Tensor) -> Tensor:
        from vcreg.distributed import gather_with_grad, should_gather

        if should_gather(None):
            z_a, z_b = gather_with_grad(z_a), gather_with_grad(z_b)
        la, lb = self.vcreg(z_a), self.vcreg(z_b)
        inv = F.mse_loss(z_a.float(), z_b.float())
        loss = (la + lb) / 2 + self.invariance * inv
        loss.terms = {  # type: ignore[attr-defined]
            "invariance": inv.detach(),
            "variance": (la.terms["variance"] + lb.terms["variance"]) / 2,
            "covariance": (la.terms["covariance"] + lb.terms["covariance"]) / 2,
        }
        return loss


def build_loss(cfg: TrainConfig) -> nn.Module:
    """The configured two-view loss (gathers across DDP ranks automatically)."""
    from vcreg import losses

    params = dict(cfg.loss.params)
    if cfg.loss.name == "vcreg":
        return _TwoViewVCReg(**params)
    cls = {
        "vicreg": losses.VICRegLoss,
        "barlow": losses.BarlowTwinsLoss,
        "wmse": losses.WMSELoss,
        "infonce": losses.InfoNCELoss,
    }[cfg.loss.name]
    return cls(**params, check_finite=False)


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
        from vcreg.distributed import is_distributed

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
        from torch.distributed.nn.functional import all_reduce

        c = x.shape[1]
        dims = [0, *range(2, x.dim())]
        shape = [1, c] + [1] * (x.dim() - 2)
        count = x.new_tensor([x.numel() / c], dtype=torch.float32)
        s = all_reduce(torch.cat([x.float().sum(dims), count]))
        n = s[c]
        mean = s[:c] / n
        centered = x.float() - mean.view(shape)
        var = all_reduce((centered * centered).sum(dims)) / n
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


# -- data ----------------------------------------------------------------------------------------


class _Batches:
    """Per-epoch batches of (view_a, view_b) for this rank; deterministic in (seed, epoch, step)."""

    def __init__(self, cfg: TrainConfig, train_ds, aug, world: int, rank: int) -> None:
        self.cfg, self.aug, self.world, self.rank = cfg, aug, world, rank
        self.global_batch = cfg.batch_size
        self.local_batch = cfg.batch_size // world
        self.in_memory = cfg.data.num_workers == 0 and hasattr(train_ds, "tensors")
        if self.in_memory:
            self.x = train_ds.tensors[0]
            self.n = len(self.x)
            self.steps = self.n // self.global_batch
        else:
            from torch.utils.data import DistributedSampler

            from vcreg.data import TwoViewDataset

            self.ds = TwoViewDataset(train_ds, aug, seed=mix_seed(cfg.seed, 5) % 2**31)
            self.sampler = DistributedSampler(
                self.ds,
                num_replicas=world,
                rank=rank,
                shuffle=True,
                seed=cfg.seed,
                drop_last=True,
            )
            self.n = len(train_ds)
            self.steps = len(self.sampler) // self.local_batch

    def epoch(self, epoch: int, start_step: int, pin: bool):
        if self.in_memory:
            g = torch.Generator().manual_seed(mix_seed(self.cfg.seed, 4, epoch))
            perm = torch.randperm(self.n, generator=g)
            lo, hi = self.rank * self.local_batch, (self.rank + 1) * self.local_batch
            for step in range(start_step, self.steps):
                idx = perm[step * self.global_batch : (step + 1) * self.global_batch]
                xb = self.x[idx]
                ga = torch.Generator().manual_seed(mix_seed(self.cfg.seed, 6, epoch, step))
                va, vb = self.aug(xb, generator=ga), self.aug(xb, generator=ga)
                yield va[lo:hi], vb[lo:hi]
            return
        from torch.utils.data import DataLoader

        self.sampler.set_epoch(epoch)
        self.ds.set_epoch(epoch)
        indices = list(self.sampler)[start_step * self.local_batch : self.steps * self.local_batch]
        loader = DataLoader(
            self.ds,
            batch_size=self.local_batch,
            sampler=indices,
            drop_last=True,
            num_workers=self.cfg.data.num_workers,
            pin_memory=pin,
        )
        for va, vb, _y in loader:
            yield va, vb


def _subset(ds, n: int | None):
    if n is None or n >= len(ds):
        return ds
    if hasattr(ds, "tensors"):
        from torch.utils.data import TensorDataset

        return TensorDataset(*(t[:n] for t in ds.tensors))
    from torch.utils.data import Subset

    return Subset(ds, range(n))


def load_bundle(cfg: TrainConfig):
    """The dataset bundle of a config (``vcreg.data.load_dataset``)."""
    from vcreg.data import load_dataset

    return load_dataset(cfg.data.name, cfg.data.root, **cfg.data.options)


def make_views(cfg: TrainConfig, bundle) -> Callable[..., Tensor]:
    from vcreg.data import make_augmentation

    name = (
        bundle.default_augmentation
        if cfg.augmentation.name == "default"
        else (cfg.augmentation.name)
    )
    return make_augmentation(name, bundle.input_shape, **cfg.augmentation.params)


# -- signals -------------------------------------------------------------------------------------


class _StopFlag:
    """Sets a flag on SIGINT/SIGTERM (a second SIGINT interrupts immediately)."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""
        self._old: dict[int, Any] = {}

    def _handler(self, signum, frame) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        self.signal_name = signal.Signals(signum).name

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


# -- the loop ------------------------------------------------------------------------------------


def _config_diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(a) | set(b)):
        path = f"{prefix}{key}"
        if path in _RESUME_FREE:
            continue
        va, vb = a.get(key), b.get(key)
        if (
            isinstance(va, dict)
            and isinstance(vb, dict)
            and path
            not in ("data.options", "encoder.options", "loss.params", "augmentation.params")
        ):
            out.extend(_config_diff(va, vb, path + "."))
        elif va != vb:
            out.append(f"{path}: checkpoint has {va!r}, config has {vb!r}")
    return out


def _init_distributed(device: torch.device) -> tuple[int, int, bool]:
    """(world, rank, created) — creates the process group from the torchrun environment."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank(), False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return dist.get_world_size(), dist.get_rank(), True
    return 1, 0, False


def train(
    config: TrainConfig | dict[str, Any] | str | Path,
    out_dir: str | Path | None = None,
    resume: bool | str = False,
    progress: bool = True,
    *,
    bundle: Any = None,
    stop_after_epochs: int | None = None,
    on_step: Callable[[int, int], None] | None = None,
) -> RunResult:
    """Train an encoder + projector with the configured SSL loss.

    Args:
        config: a :class:`TrainConfig`, a dict (validated), or a YAML path.
        out_dir: run folder for ``checkpoint.pt``, ``metrics.jsonl``, ``config.yaml``,
            ``run.json`` (``None``: nothing is written, no checkpoints — cheapest for sweeps).
        resume: continue from ``out_dir/checkpoint.pt`` (same config required, except device,
            threads, tensorboard, data.root/num_workers); ``"previous"``: the same, but fall
            back to ``checkpoint.prev.pt`` if ``checkpoint.pt`` is unreadable.
        progress: tqdm progress bar with the loss terms.
        bundle: an already loaded ``DatasetBundle`` for ``config.data`` (saves reloading).
        stop_after_epochs: stop as if interrupted once this many epochs are done (in total).
        on_step: ``on_step(epoch, step)`` called after every optimizer step (for monitoring or
            tests).

    Raises ``ValueError`` for an invalid config (before any work), :class:`TrainingDivergedError`
    when the loss becomes NaN/Inf, ``FileExistsError`` for an ``out_dir`` holding another run
    or files vcreg did not write, ``FolderLockedError`` if another process trains in it,
    :class:`CheckpointError` for an unreadable checkpoint (see :mod:`.runfolder`).
    """
    t_start = time.time()
    cfg = _as_config(config)
    out = Path(out_dir) if out_dir is not None else None
    lock = open_run_folder(out, resume=bool(resume))  # one writer; refuses a foreign folder
    try:
        state = (
            resume_state(out, cfg.to_dict(), resume == "previous", _config_diff) if resume else None
        )
        device = resolve_device(cfg.device)
        world, rank, created_pg = _init_distributed(device)
        try:
            return _train(
                cfg,
                out,
                state,
                progress and rank == 0,
                bundle,
                stop_after_epochs,
                on_step,
                device,
                world,
                rank,
                t_start,
            )
        finally:
            if created_pg:
                dist.destroy_process_group()
    finally:
        if lock is not None:
            lock.release()


def _as_config(config: Any) -> TrainConfig:
    if isinstance(config, TrainConfig):
        return TrainConfig.from_dict(config.to_dict())  # re-validate
    if isinstance(config, dict):
        return TrainConfig.from_dict(config)
    if isinstance(config, str | Path):
        return TrainConfig.from_yaml(config)
    raise TypeError(f"config must be a TrainConfig, dict or YAML path, got {type(config).__name__}")


def _seed_all(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (global state is what we save)
    torch.manual_seed(seed)


def _train(
    cfg, out, state, progress, bundle, stop_after_epochs, on_step, device, world, rank, t_start
) -> RunResult:
    from tqdm.auto import tqdm

    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    if cfg.batch_size % world != 0:
        raise ValueError(
            f"batch_size={cfg.batch_size} (global) must be divisible by the number of "
            f"processes ({world})"
        )
    if bundle is None:
        bundle = load_bundle(cfg)
    train_ds = _subset(bundle.train, cfg.data.train_samples)
    if len(train_ds) < cfg.batch_size:
        raise ValueError(
            f"batch_size={cfg.batch_size} exceeds the {len(train_ds)} training samples"
        )
    aug = make_views(cfg, bundle)
    _seed_all(cfg.seed)
    model = build_model(cfg, bundle.input_shape)
    if world > 1:
        model = convert_sync_batchnorm(model, device)
    model = model.to(device)
    loss_fn = build_loss(cfg).to(device)
    batches = _Batches(cfg, train_ds, aug, world, rank)
    if batches.steps < 1:
        raise ValueError(
            f"batch_size={cfg.batch_size} leaves no full batch per process "
            f"({batches.n} samples, {world} processes)"
        )
    steps_per_epoch = batches.steps
    total_steps = cfg.epochs * steps_per_epoch
    optimizer = build_optimizer([model], cfg.optimizer)

    start_epoch, start_step, history, accum = 0, 0, [], _new_accum()
    if state is not None:
        load_model_state(model, state, out / CHECKPOINT)
        optimizer.load_state_dict(state["optimizer"])
        start_epoch, start_step = int(state["epoch"]), int(state["step"])
        history = list(state["history"])
        accum = dict(state["accum"]) if state.get("accum") else _new_accum()
        set_rng_state(state["rng"])

    net: nn.Module = model
    if world > 1:
        has_grad = any(p.requires_grad for p in model.parameters())
        if has_grad:
            from torch.nn.parallel import DistributedDataParallel

            net = DistributedDataParallel(
                model,
                device_ids=[device.index] if device.type == "cuda" else None,
                broadcast_buffers=False,
            )
        else:
            net = model
    use_amp = cfg.amp == "bf16" or (cfg.amp == "auto" and device.type == "cuda")
    amp_ctx = (
        (lambda: torch.autocast(device.type, dtype=torch.bfloat16))
        if use_amp
        else contextlib.nullcontext
    )

    writer = _tensorboard(cfg, out) if rank == 0 else None
    if out is not None and rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        import yaml

        atomic_write_text(out / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    monitor = _Monitor(cfg, bundle, train_ds, device) if rank == 0 else None

    def checkpoint(epoch: int, step: int, acc: dict) -> None:
        if out is None or rank != 0:
            return
        save_checkpoint(
            out / CHECKPOINT,
            {
                "config": cfg.to_dict(),
                "epoch": epoch,
                "step": step,
                "model": _unwrap(model).state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": {
                    "global_step": epoch * steps_per_epoch + step,
                    "steps_per_epoch": steps_per_epoch,
                },
                "rng": get_rng_state(),
                "history": history,
                "accum": acc,
                "world_size": world,
            },
        )
        retire_stale_eval(out, epoch, step)  # an eval.json of an older checkpoint would mislead

    status = "completed"
    net.train()
    with _StopFlag() as stop:
        for epoch in range(start_epoch, cfg.epochs):
            if stop_after_epochs is not None and epoch >= stop_after_epochs:
                status = "interrupted"
                break
            bar = tqdm(
                total=steps_per_epoch,
                initial=start_step,
                disable=not progress,
                desc=f"epoch {epoch + 1}/{cfg.epochs}",
                leave=False,
                dynamic_ncols=True,
            )
            t_epoch = time.time()
            step = start_step
            interrupted = False
            for step, (va, vb) in enumerate(
                batches.epoch(epoch, start_step, device.type == "cuda"), start=start_step
            ):
                gstep = epoch * steps_per_epoch + step
                lr = lr_at(gstep, total_steps, steps_per_epoch, cfg.optimizer.lr, cfg.schedule)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                va = va.to(device, non_blocking=True)
                vb = vb.to(device, non_blocking=True)
                with amp_ctx():
                    za, zb = net(va), net(vb)
                loss = loss_fn(za.float(), zb.float())
                value = float(loss.item())
                terms = {k: float(v) for k, v in loss.terms.items()}
                if not math.isfinite(value):
                    bar.close()
                    raise TrainingDivergedError(
                        _diverged_message(epoch, step, value, terms, lr, out, history)
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                accum["loss"] += value
                for k, v in terms.items():
                    accum["terms"][k] = accum["terms"].get(k, 0.0) + v
                accum["steps"] += 1
                bar.update(1)
                bar.set_postfix(
                    {"loss": f"{value:.3f}", **{k[:3]: f"{v:.3f}" for k, v in terms.items()}},
                    refresh=False,
                )
                if on_step is not None:
                    on_step(epoch, step)
                if _agree(stop.requested, device, world):
                    interrupted = True
                    break
            bar.close()
            accum["time"] += time.time() - t_epoch
            if interrupted:
                status = "interrupted"
                checkpoint(epoch, step + 1, accum)
                if progress:
                    tqdm.write(
                        f"{stop.signal_name or 'stop'} received: checkpoint saved at epoch "
                        f"{epoch + 1}, step {step + 1}" + (f" in {out}" if out else "")
                    )
                break
            start_step = 0
            metrics = _epoch_metrics(epoch, accum, steps_per_epoch, cfg, lr)
            if monitor is not None and monitor.due(epoch):
                metrics.update(monitor(_unwrap(model)))
                net.train()
            history.append(metrics)
            accum = _new_accum()
            if rank == 0:
                if writer is not None:
                    for k, v in metrics.items():
                        if isinstance(v, int | float):
                            writer.add_scalar(k, v, epoch + 1)
                if out is not None:
                    atomic_write_text(out / METRICS, "".join(json.dumps(m) + "\n" for m in history))
                if progress:
                    tqdm.write(_epoch_line(metrics, cfg.epochs))
            if (epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.epochs:
                checkpoint(epoch + 1, 0, _new_accum())
            elif stop_after_epochs is not None and epoch + 1 >= stop_after_epochs:
                checkpoint(epoch + 1, 0, _new_accum())
    if writer is not None:
        writer.close()
    enc, proj = _unwrap(model).encoder.eval(), _unwrap(model).projector.eval()
    final = history[-1] if history else {}
    wall = time.time() - t_start
    if out is not None and rank == 0:
        atomic_write_text(
            out / "run.json",
            json.dumps(
                {
                    "status": status,
                    "epochs_completed": len(history),
                    "epochs": cfg.epochs,
                    "final_metrics": final,
                    "device": str(device),
                    "world_size": world,
                    "wall_time_s_last_session": wall,
                },
                indent=1,
            ),
        )
    return RunResult(
        out,
        status,
        final,
        history,
        enc,
        proj,
        cfg,
        len(history),
        str(device),
        wall,
        {"world_size": world, "steps_per_epoch": steps_per_epoch},
    )


def _unwrap(m: nn.Module) -> SSLModel:
    return m.module if hasattr(m, "module") else m  # type: ignore[return-value]


def _agree(flag: bool, device: torch.device, world: int) -> bool:
    """All ranks stop at the same step: a stop request on any rank stops them all."""
    if world == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t)
    return bool(t.item() > 0)


def _new_accum() -> dict[str, Any]:
    return {"loss": 0.0, "terms": {}, "steps": 0, "time": 0.0}


def _epoch_metrics(epoch: int, acc: dict, steps: int, cfg: TrainConfig, lr: float) -> dict:
    n = max(acc["steps"], 1)
    m: dict[str, Any] = {
        "epoch": epoch + 1,
        "steps": acc["steps"],
        "lr": lr,
        "loss": acc["loss"] / n,
    }
    for k, v in sorted(acc["terms"].items()):
        m[f"loss_{k}"] = v / n
    m["time_s"] = acc["time"]
    m["samples_per_s"] = acc["steps"] * cfg.batch_size / max(acc["time"], 1e-9)
    return m


def _epoch_line(m: dict, epochs: int) -> str:
    parts = [f"epoch {m['epoch']}/{epochs}", f"loss {m['loss']:.4f}"]
    for k, v in m.items():
        if k.startswith("loss_"):
            parts.append(f"{k[5:]} {v:.4f}")
    for k in ("knn_acc", "linear_acc", "pairwise_hsic_mean", "pairwise_nhsic_mean", "dhsic"):
        if k in m:
            parts.append(f"{k} {m[k]:.4g}")
    parts.append(f"{m['samples_per_s']:.0f} samples/s")
    return " | ".join(parts)


def _diverged_message(epoch, step, value, terms, lr, out, history) -> str:
    where = (
        f"the last good checkpoint ({out / CHECKPOINT}, epoch {history[-1]['epoch']}) is kept"
        if out is not None and history and (out / CHECKPOINT).exists()
        else "no checkpoint was written before the divergence"
    )
    return (
        f"training diverged: the loss is {value} at epoch {epoch + 1}, step {step + 1} "
        f"(terms {terms}, lr {lr:.3g}); {where}. Lower optimizer.lr, add warm-up "
        f"(schedule.warmup_epochs) or check the data for NaN/Inf."
    )


def _tensorboard(cfg: TrainConfig, out: Path | None):
    if out is None or cfg.tensorboard is False:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        if cfg.tensorboard is True:
            warnings.warn(
                "tensorboard=true but the tensorboard package is not installed",
                RuntimeWarning,
                stacklevel=3,
            )
        return None
    return SummaryWriter(str(out / "tensorboard"))


class _Monitor:
    """Independence measures + online probe on fixed subsets, every ``monitor.every`` epochs."""

    def __init__(self, cfg: TrainConfig, bundle, train_ds, device: torch.device) -> None:
        from vcreg.evaluation import dataset_tensors

        self.cfg, self.device = cfg, device
        m = cfg.monitor
        self.independence_missing = False
        self.enabled = m.every > 0 and (m.hsic or m.dhsic or m.probe != "none")
        if not self.enabled:
            return
        self.x_eval, self.y_eval = dataset_tensors(bundle.test, m.samples)
        self.x_probe, self.y_probe = dataset_tensors(train_ds, m.probe_train_samples)

    def due(self, epoch: int) -> bool:
        return self.enabled and (
            (epoch + 1) % self.cfg.monitor.every == 0 or epoch + 1 == self.cfg.epochs
        )

    def __call__(self, model: SSLModel) -> dict[str, float]:
        from vcreg.evaluation import encode, independence_metrics, knn_accuracy, ridge_accuracy

        m = self.cfg.monitor
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            bs = self.cfg.evaluation.batch_size
            f_eval = encode(model.encoder, self.x_eval, bs, self.device)
            out: dict[str, float] = {}
            if (m.hsic or m.dhsic) and not self.independence_missing:
                try:
                    out.update(independence_metrics(f_eval, hsic=m.hsic, dhsic=m.dhsic))
                except ImportError as exc:  # vcreg.independence absent: warn once, go on
                    self.independence_missing = True
                    warnings.warn(
                        f"independence monitoring skipped: {exc}", RuntimeWarning, stacklevel=2
                    )
            if m.probe != "none":
                f_train = encode(model.encoder, self.x_probe, bs, self.device)
                if m.probe == "knn":
                    out["knn_acc"] = knn_accuracy(
                        f_train, self.y_probe, f_eval, self.y_eval, k=m.knn_k
                    )
                else:
                    out["linear_acc"] = ridge_accuracy(f_train, self.y_probe, f_eval, self.y_eval)
            out["repr_std_mean"] = float(f_eval.std(0).mean())
        return out
