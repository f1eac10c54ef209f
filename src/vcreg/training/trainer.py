"""The SSL trainer: ``train(config, out_dir=None, ..., callbacks=[...]) -> RunResult``.

:func:`train` reads top to bottom: set up (config, resume state, device, process group, model,
loss, optimizer, data, callbacks), the epoch loop, finish (``run.json``, :class:`RunResult`).
The pieces live in their own modules: data feeding (:mod:`~vcreg.training.feeding`), the run
folder (:mod:`~vcreg.training.runfolder`; one writer, no overwrite), callbacks (:mod:`~vcreg.training.callbacks`; the online
monitor and TensorBoard are callbacks), signals (:mod:`~vcreg.training.signals`), the model
(:mod:`vcreg.models`), the loss registry (:mod:`vcreg.losses`), collectives
(:mod:`vcreg.distributed`), the device rule (:mod:`vcreg._device`).

Reproducibility: model init comes from ``seed``; data order and augmentations are seeded per
(epoch, step) (see :mod:`~vcreg.training.feeding`) — so a run resumed from a checkpoint (model,
optimizer, step counter, RNG states of python/numpy/torch, partial-epoch metric sums) continues
exactly as the uninterrupted run.

DDP (``torchrun --nproc_per_node=N -m vcreg train ...``): the process group is initialised
from the torchrun environment (NCCL on CUDA, gloo on CPU), the model is wrapped in
``DistributedDataParallel``, batch norms become synchronized
(:func:`vcreg.distributed.convert_sync_batchnorm`), and the losses compute on the embeddings
gathered from all ranks. Rank 0 writes checkpoints, metrics and monitoring.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from vcreg import losses
from vcreg._device import resolve_device
from vcreg._progress import resolve_progress
from vcreg._seed import mix_seed
from vcreg.distributed import any_rank, convert_sync_batchnorm, init_from_env
from vcreg.models import SSLModel, build_model
from vcreg.training import runfolder
from vcreg.training.callbacks import (
    Callback,
    StepCallback,
    TrainState,
    check_callbacks,
    run_hooks,
)
from vcreg.training.checkpoint import (
    get_rng_state,
    load_model_state,
    save_checkpoint,
    set_rng_state,
)
from vcreg.training.config import TrainConfig
from vcreg.training.feeding import Batches, load_bundle, make_views, subset
from vcreg.training.monitor import Monitor
from vcreg.training.optim import build_optimizer, lr_at
from vcreg.training.regime import (
    RegimeWarning,
    hinge_balance,
    measure_regime,
    regime_summary,
)
from vcreg.training.runfolder import open_run_folder, resume_state
from vcreg.training.signals import StopFlag
from vcreg.training.tensorboard import TensorBoardLogger, open_writer

__all__ = [
    "RunResult",
    "SSLModel",
    "TrainingDivergedError",
    "train",
    "build_model",
    "build_loss",
    "load_bundle",
    "resolve_device",
    "mix_seed",
]


class TrainingDivergedError(RuntimeError):
    """The loss became NaN/Inf; the last good checkpoint is left untouched."""


@dataclass
class RunResult:
    """What :func:`train` returns.

    ``status``: "completed" or "interrupted" (SIGINT/SIGTERM, ``stop_after_epochs`` or a
    callback's ``should_stop``); ``final_metrics``: the last epoch's metrics; ``history``: one
    dict per epoch (as in ``metrics.jsonl``); ``encoder``/``projector``: the trained modules
    (eval mode, on ``device``).
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


def build_loss(cfg: TrainConfig) -> nn.Module:
    """The configured two-view loss from the registry (gathers across DDP ranks automatically;
    no per-step NaN check — the trainer's divergence guard raises instead)."""
    return losses.build_loss(cfg.loss.name, cfg.loss.params, check_finite=False)


def train(
    config: TrainConfig | dict[str, Any] | str | Path,
    out_dir: str | Path | None = None,
    resume: bool | str = False,
    progress: bool | str = True,
    *,
    bundle: Any = None,
    stop_after_epochs: int | None = None,
    callbacks: Iterable[Any] = (),
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
        progress: ``True``: a tqdm bar per epoch on a terminal, one line per epoch otherwise;
            ``"log"``: the lines only; ``"bar"``; ``False``: nothing (:mod:`vcreg._progress`).
        bundle: an already loaded ``DatasetBundle`` for ``config.data`` (saves reloading).
        stop_after_epochs: stop as if interrupted once this many epochs are done (in total).
        callbacks: objects with ``on_train_start`` / ``on_step_end`` / ``on_epoch_end`` /
            ``on_train_end(state)`` hooks (:class:`vcreg.training.Callback`), called in order
            after the built-in monitor.
        on_step: shorthand for a callback calling ``on_step(epoch, step)`` after every step.

    Raises ``ValueError`` for an invalid config (before any work), :class:`TrainingDivergedError`
    when the loss becomes NaN/Inf, ``FileExistsError`` for an ``out_dir`` holding another run
    or files vcreg did not write, ``FolderLockedError`` if another process trains in it,
    :class:`CheckpointError` for an unreadable checkpoint (see :mod:`.runfolder`).
    """
    t_start = time.time()
    cfg = _as_config(config)
    user_callbacks = check_callbacks(callbacks)
    if on_step is not None:
        user_callbacks.append(StepCallback(on_step))
    out = Path(out_dir) if out_dir is not None else None
    with contextlib.ExitStack() as cleanup:
        lock = open_run_folder(out, resume=bool(resume))  # one writer; refuses a foreign folder
        if lock is not None:
            cleanup.callback(lock.release)
        saved = resume_state(out, cfg.to_dict(), resume == "previous") if resume else None
        device = resolve_device(cfg.device)
        world, rank, created_pg = init_from_env(device)
        if created_pg:
            cleanup.callback(dist.destroy_process_group)
        mode = resolve_progress(progress) if rank == 0 else "off"
        run = _setup(cfg, out, saved, bundle, device, world, rank, mode)
        run.callbacks = _builtin_callbacks(run) + user_callbacks + _logging_callbacks(run)
        run_hooks(run.callbacks, "on_train_start", run.state)
        status = _epoch_loop(run, stop_after_epochs)
        run_hooks(run.callbacks, "on_train_end", run.state)
        return _finish(run, status, t_start)


# -- setup ---------------------------------------------------------------------------------------


@dataclass
class _Run:
    """Everything the loop needs (one object instead of a closure over a dozen variables)."""

    cfg: TrainConfig
    out: Path | None
    device: torch.device
    world: int
    rank: int
    progress: str  # "bar", "log" or "off" (vcreg._progress)
    model: SSLModel
    net: nn.Module
    loss_fn: nn.Module
    optimizer: torch.optim.Optimizer
    batches: Batches
    state: TrainState
    start_epoch: int = 0
    start_step: int = 0
    accum: dict[str, Any] = field(default_factory=lambda: _new_accum())
    callbacks: list[Any] = field(default_factory=list)

    @property
    def steps_per_epoch(self) -> int:
        return self.batches.steps

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.state.history


def _setup(cfg, out, saved, bundle, device, world, rank, progress) -> _Run:
    """Data, model, loss, optimizer (restored from ``saved``), in the order the RNG needs."""
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    if cfg.batch_size % world != 0:
        raise ValueError(
            f"batch_size={cfg.batch_size} (global) must be divisible by the number of "
            f"processes ({world})"
        )
    bundle = load_bundle(cfg) if bundle is None else bundle
    train_ds = subset(bundle.train, cfg.data.train_samples)
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
    batches = Batches(cfg, train_ds, aug, world, rank, device)
    if batches.steps < 1:
        raise ValueError(
            f"batch_size={cfg.batch_size} leaves no full batch per process "
            f"({batches.n} samples, {world} processes)"
        )
    optimizer = build_optimizer([model], cfg.optimizer)
    state = TrainState(cfg, model, optimizer, device, out, rank, world, bundle, train_ds)
    state.steps_per_epoch = batches.steps
    run = _Run(
        cfg, out, device, world, rank, progress, model, model, loss_fn, optimizer, batches, state
    )
    if saved is not None:
        _restore(run, saved)
    run.net = _wrap_ddp(model, device, world)
    if out is not None and rank == 0:
        runfolder.write_config(out, cfg)
    return run


def _restore(run: _Run, saved: dict[str, Any]) -> None:
    load_model_state(run.model, saved, run.out / runfolder.CHECKPOINT)
    run.optimizer.load_state_dict(saved["optimizer"])
    run.start_epoch, run.start_step = int(saved["epoch"]), int(saved["step"])
    run.state.history = list(saved["history"])
    run.accum = dict(saved["accum"]) if saved.get("accum") else _new_accum()
    set_rng_state(saved["rng"])


def _wrap_ddp(model: SSLModel, device: torch.device, world: int) -> nn.Module:
    # a model without trainable parameters (e.g. identity projector + frozen encoder) has
    # nothing for DDP to synchronise, and DDP refuses it
    if world == 1 or not any(p.requires_grad for p in model.parameters()):
        return model
    return DistributedDataParallel(
        model,
        device_ids=[device.index] if device.type == "cuda" else None,
        broadcast_buffers=False,
    )


def _builtin_callbacks(run: _Run) -> list[Callback]:
    return [Monitor(run.cfg)] if run.rank == 0 else []


def _logging_callbacks(run: _Run) -> list[Callback]:
    # after the user's callbacks, so that what they add to the metrics is logged too
    writer = open_writer(run.cfg.tensorboard, run.out) if run.rank == 0 else None
    return [TensorBoardLogger(writer)] if writer is not None else []


def _as_config(config: Any) -> TrainConfig:
    if isinstance(config, TrainConfig):
        return TrainConfig.from_dict(config.to_dict())  # re-validate
    if isinstance(config, dict):
        return TrainConfig.from_dict(config)
    if isinstance(config, str | Path):
        return TrainConfig.from_yaml(config)
    raise TypeError(f"config must be a TrainConfig, dict or YAML path, got {type(config).__name__}")


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (global state is what we save)
    torch.manual_seed(seed)


# -- the loop ------------------------------------------------------------------------------------


def _epoch_loop(run: _Run, stop_after_epochs: int | None) -> str:
    """Epochs from the resume point on; returns the status ("completed" / "interrupted")."""
    cfg = run.cfg
    run.net.train()
    with StopFlag() as stop:
        for epoch in range(run.start_epoch, cfg.epochs):
            if stop_after_epochs is not None and epoch >= stop_after_epochs:
                return "interrupted"
            step, interrupted = _run_epoch(run, epoch, stop)
            if interrupted:
                _checkpoint(run, epoch, step + 1, run.accum)
                where = f" in {run.out}" if run.out else ""
                _say(
                    run,
                    f"{stop.signal_name or 'stop'} received: checkpoint saved at epoch "
                    f"{epoch + 1}, step {step + 1}{where}",
                )
                return "interrupted"
            _end_epoch(run, epoch)
            done = epoch + 1
            if (
                done % cfg.checkpoint_every == 0
                or done == cfg.epochs
                or (stop_after_epochs is not None and done >= stop_after_epochs)
            ):
                _checkpoint(run, done, 0, _new_accum())
    return "completed"


def _run_epoch(run: _Run, epoch: int, stop: StopFlag) -> tuple[int, bool]:
    """The steps of one epoch; ``(last step, interrupted)``."""
    cfg, st = run.cfg, run.state
    t_epoch = time.time()
    step, interrupted = run.start_step, False
    pin = run.device.type == "cuda"
    with tqdm(
        total=run.steps_per_epoch,
        initial=run.start_step,
        disable=run.progress != "bar",
        desc=f"epoch {epoch + 1}/{cfg.epochs}",
        leave=False,
        dynamic_ncols=True,
    ) as bar:
        batches = run.batches.epoch(epoch, run.start_step, pin)
        for step, (va, vb, y) in enumerate(batches, start=run.start_step):
            value, terms = _train_step(run, epoch, step, va, vb, y)
            _accumulate(run.accum, value, terms)
            bar.update(1)
            postfix = {"loss": f"{value:.3f}", **{k[:3]: f"{v:.3f}" for k, v in terms.items()}}
            bar.set_postfix(postfix, refresh=False)
            st.epoch, st.step, st.loss, st.loss_terms = epoch, step, value, terms
            run_hooks(run.callbacks, "on_step_end", st)
            if any_rank(stop.requested or st.should_stop, run.device):
                interrupted = True
                break
    run.accum["time"] += time.time() - t_epoch
    return step, interrupted


def _train_step(run: _Run, epoch: int, step: int, va: Tensor, vb: Tensor, y: Tensor):
    """One optimizer step; ``(loss value, loss terms)``; raises on a non-finite loss."""
    cfg, spe = run.cfg, run.steps_per_epoch
    lr = lr_at(epoch * spe + step, cfg.epochs * spe, spe, cfg.optimizer.lr, cfg.schedule)
    for group in run.optimizer.param_groups:
        group["lr"] = lr
    run.state.lr = lr
    va = va.to(run.device, non_blocking=True)
    vb = vb.to(run.device, non_blocking=True)
    with _autocast(cfg, run.device):
        za, zb = run.net(va), run.net(vb)
    if getattr(run.loss_fn, "needs_labels", False):  # the supervised control
        loss = run.loss_fn(za.float(), zb.float(), y.to(run.device, non_blocking=True))
    else:
        loss = run.loss_fn(za.float(), zb.float())
    value = float(loss.item())
    terms = {k: float(v) for k, v in loss.terms.items()}
    if not math.isfinite(value):
        raise TrainingDivergedError(
            _diverged_message(epoch, step, value, terms, lr, run.out, run.history)
        )
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    return value, terms


def _autocast(cfg: TrainConfig, device: torch.device):
    """bf16 autocast when ``amp`` asks for it ("auto": on CUDA only)."""
    if cfg.amp == "bf16" or (cfg.amp == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _end_epoch(run: _Run, epoch: int) -> None:
    """Epoch metrics -> callbacks -> history, ``metrics.jsonl``, progress line."""
    cfg, st, spe = run.cfg, run.state, run.steps_per_epoch
    last_lr = lr_at(epoch * spe + spe - 1, cfg.epochs * spe, spe, cfg.optimizer.lr, cfg.schedule)
    metrics = _epoch_metrics(epoch, run.accum, cfg, last_lr)
    run.start_step = 0
    st.epoch, st.metrics = epoch, metrics
    run_hooks(run.callbacks, "on_epoch_end", st)
    run.net.train()  # a callback may have switched modes
    st.history.append(metrics)
    run.accum = _new_accum()
    if run.rank == 0:
        if run.out is not None:
            runfolder.write_metrics(run.out, st.history)
        _say(run, _epoch_line(metrics, cfg.epochs))


def _checkpoint(run: _Run, epoch: int, step: int, accum: dict[str, Any]) -> None:
    """Save the resumable state (rank 0, when there is a run folder)."""
    if run.out is None or run.rank != 0:
        return
    spe = run.steps_per_epoch
    save_checkpoint(
        run.out / runfolder.CHECKPOINT,
        {
            "config": run.cfg.to_dict(),
            "epoch": epoch,
            "step": step,
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scheduler": {"global_step": epoch * spe + step, "steps_per_epoch": spe},
            "rng": get_rng_state(),
            "history": run.history,
            "accum": accum,
            "world_size": run.world,
        },
    )
    runfolder.retire_stale_eval(run.out, epoch, step)  # an eval.json of an older one misleads


# -- finish --------------------------------------------------------------------------------------


def _finish(run: _Run, status: str, t_start: float) -> RunResult:
    """``run.json`` and the :class:`RunResult`."""
    enc, proj = run.model.encoder.eval(), run.model.projector.eval()
    final = run.history[-1] if run.history else {}
    regime = _regime(run) if status == "completed" and run.rank == 0 else None
    wall = time.time() - t_start
    if run.out is not None and run.rank == 0:
        runfolder.write_run_summary(
            run.out,
            {
                "status": status,
                "epochs_completed": len(run.history),
                "epochs": run.cfg.epochs,
                "final_metrics": final,
                "regime": regime,
                "device": str(run.device),
                "world_size": run.world,
                "wall_time_s_last_session": wall,
            },
        )
    extra = {"world_size": run.world, "steps_per_epoch": run.steps_per_epoch, "regime": regime}
    return RunResult(
        run.out,
        status,
        final,
        run.history,
        enc,
        proj,
        run.cfg,
        len(run.history),
        str(run.device),
        wall,
        extra,
    )


def _regime(run: _Run) -> dict[str, Any] | None:
    """The run's regime (:mod:`~vcreg.training.regime`); warns when a hinge loss missed it.

    Measured on the monitor's held-out samples, in a forked RNG (the projector runs in training
    mode on a copy, as the monitor does)."""
    if not run.history or "loss_variance" not in run.history[-1]:
        return None
    devices = [run.device] if run.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        diag = measure_regime(
            run.model.encoder,
            run.model.projector,
            run.state.bundle.test,
            max(run.cfg.monitor.samples, 2),
            run.device,
            run.cfg.evaluation.batch_size,
            balance=hinge_balance(run.loss_fn, run.cfg.batch_size),
        )
    summary = regime_summary(run.history, diag)
    if summary["warning"]:  # one channel: the warning (the CLI prints it as one line)
        warnings.warn(summary["warning"], RegimeWarning, stacklevel=4)
    else:
        _say(
            run,
            f"VCReg constraint met: {100 * summary['emb_at_target_frac']:.0f} % of embedding dims "
            f"at the hinge (target std {summary['emb_hinge_target']:.2f}), off-diagonal "
            f"correlation {summary['emb_offdiag_excess']:.1f}x the independent-features level",
        )
    return summary


# -- metrics and messages ------------------------------------------------------------------------


def _new_accum() -> dict[str, Any]:
    return {"loss": 0.0, "terms": {}, "steps": 0, "time": 0.0}


def _accumulate(acc: dict[str, Any], value: float, terms: dict[str, float]) -> None:
    acc["loss"] += value
    for k, v in terms.items():
        acc["terms"][k] = acc["terms"].get(k, 0.0) + v
    acc["steps"] += 1


def _epoch_metrics(epoch: int, acc: dict, cfg: TrainConfig, lr: float) -> dict:
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


def _say(run: _Run, line: str) -> None:
    """A progress line: above the bar when one is drawn, plain otherwise, none when off."""
    if run.progress == "bar":
        tqdm.write(line)
    elif run.progress == "log":
        print(line, flush=True)


def _epoch_line(m: dict, epochs: int) -> str:
    parts = [f"epoch {m['epoch']}/{epochs}", f"loss {m['loss']:.4f}"]
    for k, v in m.items():
        if k.startswith("loss_"):
            parts.append(f"{k[5:]} {v:.4f}")
    for k in ("knn_acc", "linear_acc", "pairwise_hsic_mean", "pairwise_nhsic_mean", "dhsic"):
        if k in m:
            parts.append(f"{k} {m[k]:.4g}")
    if m.get("emb_at_hinge_frac") is not None:  # the regime, on monitored epochs
        parts.append(
            f"emb std {m['emb_std_mean']:.3f}, at hinge {100 * m['emb_at_hinge_frac']:.0f} %, "
            f"off-diag {m.get('emb_offdiag_excess') or float('nan'):.1f}x indep."
        )
    parts.append(f"{m['samples_per_s']:.0f} samples/s")
    return " | ".join(parts)


def _diverged_message(epoch, step, value, terms, lr, out, history) -> str:
    ckpt = out / runfolder.CHECKPOINT if out is not None else None
    where = (
        f"the last good checkpoint ({ckpt}, epoch {history[-1]['epoch']}) is kept"
        if ckpt is not None and history and ckpt.exists()
        else "no checkpoint was written before the divergence"
    )
    return (
        f"training diverged: the loss is {value} at epoch {epoch + 1}, step {step + 1} "
        f"(terms {terms}, lr {lr:.3g}); {where}. Lower optimizer.lr, add warm-up "
        f"(schedule.warmup_epochs) or check the data for NaN/Inf."
    )
