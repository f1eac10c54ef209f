"""Optimizers (Adam, AdamW, SGD, LARS) and the warm-up + cosine learning-rate schedule.

LARS follows the official VICReg / Barlow Twins implementation (You et al. 2017): for each
parameter ``p`` with gradient ``g``: ``g ← g + wd·p``; ``g ← g · η‖p‖/‖g‖`` (trust ratio, 1 if
either norm is 0); ``m ← momentum·m + g``; ``p ← p − lr·m``. Biases and normalization parameters
(1-d tensors) are excluded from both weight decay and the trust-ratio adaptation when
``exclude_bias_and_norm`` is set (official convention), for every optimizer.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import nn

from vcreg.training.config import OptimizerConfig, ScheduleConfig

__all__ = ["LARS", "build_optimizer", "lr_at", "param_groups"]


class LARS(torch.optim.Optimizer):
    """Layer-wise Adaptive Rate Scaling with momentum (official VICReg/Barlow Twins variant).

    Param-group options: ``lr``, ``weight_decay``, ``momentum``, ``eta`` (trust coefficient),
    ``lars_adaptation`` (False: plain SGD-momentum for this group, e.g. biases and norms).
    """

    def __init__(
        self,
        params: Iterable,
        lr: float,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        eta: float = 0.001,
        lars_adaptation: bool = True,
    ) -> None:
        if lr <= 0 or weight_decay < 0 or not 0 <= momentum < 1 or eta <= 0:
            raise ValueError(
                f"LARS needs lr > 0, weight_decay >= 0, 0 <= momentum < 1, eta > 0; got "
                f"lr={lr}, weight_decay={weight_decay}, momentum={momentum}, eta={eta}"
            )
        defaults = dict(
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            eta=eta,
            lars_adaptation=lars_adaptation,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                dp = p.grad
                if group["weight_decay"] != 0:
                    dp = dp.add(p, alpha=group["weight_decay"])
                if group["lars_adaptation"]:
                    p_norm = torch.linalg.vector_norm(p)
                    u_norm = torch.linalg.vector_norm(dp)
                    one = torch.ones_like(p_norm)
                    q = torch.where(
                        p_norm > 0,
                        torch.where(u_norm > 0, group["eta"] * p_norm / u_norm, one),
                        one,
                    )
                    dp = dp.mul(q)
                state = self.state[p]
                if "mu" not in state:
                    state["mu"] = torch.zeros_like(p)
                mu = state["mu"]
                mu.mul_(group["momentum"]).add_(dp)
                p.add_(mu, alpha=-group["lr"])
        return loss


def _is_bias_or_norm(name: str, p: nn.Parameter, norm_params: set[int]) -> bool:
    return p.ndim <= 1 or id(p) in norm_params


def param_groups(modules: Iterable[nn.Module], cfg: OptimizerConfig) -> list[dict]:
    """Trainable parameters split into (weights) and (biases + normalization parameters)."""
    norm_types = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
    norm_params: set[int] = set()
    decay, no_decay = [], []
    seen: set[int] = set()
    for module in modules:
        for m in module.modules():
            if isinstance(m, norm_types):
                norm_params.update(id(p) for p in m.parameters(recurse=False))
        for name, p in module.named_parameters():
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            if cfg.exclude_bias_and_norm and _is_bias_or_norm(name, p, norm_params):
                no_decay.append(p)
            else:
                decay.append(p)
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": cfg.weight_decay, "lars_adaptation": True})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0, "lars_adaptation": False})
    return groups


def build_optimizer(modules: Iterable[nn.Module], cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """The configured optimizer over the trainable parameters of ``modules``."""
    groups = param_groups(list(modules), cfg)
    if not groups:
        raise ValueError("nothing to train: the encoder and projector have no trainable parameters")
    if cfg.name != "lars":
        for g in groups:
            g.pop("lars_adaptation")
    if cfg.name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=tuple(cfg.betas))
    if cfg.name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas))
    if cfg.name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum)
    if cfg.name == "lars":
        return LARS(groups, lr=cfg.lr, momentum=cfg.momentum, eta=cfg.eta)
    raise ValueError(f"unknown optimizer {cfg.name!r}")


def lr_at(
    step: int, total_steps: int, steps_per_epoch: int, base_lr: float, sched: ScheduleConfig
) -> float:
    """Learning rate of optimizer step ``step`` (0-based): linear warm-up from ``base_lr/W`` to
    ``base_lr`` over ``W = warmup_epochs·steps_per_epoch`` steps, then cosine from ``base_lr`` to
    ``final_lr_ratio·base_lr`` at the last step (or constant)."""
    warmup = int(round(sched.warmup_epochs * steps_per_epoch))
    if step < warmup:
        return base_lr * (step + 1) / warmup
    if sched.kind == "constant":
        return base_lr
    span = max(total_steps - warmup - 1, 1)
    t = min(max(step - warmup, 0) / span, 1.0)
    end = base_lr * sched.final_lr_ratio
    return end + (base_lr - end) * 0.5 * (1.0 + math.cos(math.pi * t))
