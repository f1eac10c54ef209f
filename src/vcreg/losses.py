"""Loss modules of the VCReg family (VCReg, VICReg, Barlow Twins, W-MSE), InfoNCE (the
contrastive control without VCReg), and the loss registry.

Every module returns a 0-d tensor (float32, or float64 for float64 input; fp16/bf16 inputs are
computed in float32) that can be ``.backward()``-ed, with ``.terms``: a dict of detached 0-d
tensors for logging (see :class:`LossOutput`).

Distributed training (``gather_distributed``): ``None`` (default) gathers the embeddings of all
ranks automatically when a multi-rank ``torch.distributed`` process group is initialised,
``True`` does the same (and is a no-op without a process group), ``False`` never gathers. When
gathering, the *whole* loss (all terms, including VICReg's invariance MSE) is computed on the
global batch with an autograd-aware all-gather, so every rank gets the same value as a single
process on the concatenated batch, and, after DDP's gradient averaging, the same gradients.

``check_finite=True`` raises on NaN/Inf input in eager mode (one host sync per call); under
``torch.compile`` the check is skipped so the forward stays one graph, and a NaN/Inf input gives a
NaN/Inf loss for the trainer's divergence guard (docs/sections/losses.md, "torch.compile").

Registry: the two-view losses that ``vcreg train`` (config ``loss.name``) can use, name -> class.
:func:`register_loss` adds one (the trainer and the config validator both read the registry);
:func:`loss_class`, :func:`loss_params`, :func:`available_losses` and :func:`build_loss` read it.
A registered class is an ``nn.Module`` whose ``forward(z_a, z_b)`` returns a :class:`LossOutput`;
its keyword arguments (minus :data:`INFRASTRUCTURE_PARAMS`) are the config's ``loss.params``.
"""

from __future__ import annotations

import inspect
from typing import Any, Protocol, TypeVar, runtime_checkable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from . import functional as VF
from .distributed import gather_with_grad, should_gather

__all__ = [
    "LossOutput",
    "VCRegLoss",
    "TwoViewVCRegLoss",
    "VICRegLoss",
    "BarlowTwinsLoss",
    "WMSELoss",
    "InfoNCELoss",
    "SupervisedLoss",
    "INFRASTRUCTURE_PARAMS",
    "register_loss",
    "loss_class",
    "loss_params",
    "available_losses",
    "build_loss",
]


@runtime_checkable
class LossOutput(Protocol):
    """What the loss modules return: a 0-d tensor with a ``terms`` dict (detached values)."""

    terms: dict[str, Tensor]

    def backward(self, *args, **kwargs) -> None: ...

    def item(self) -> float: ...


class _GatheringLoss(nn.Module):
    def __init__(self, gather_distributed: bool | None, check_finite: bool) -> None:
        super().__init__()
        if gather_distributed not in (None, True, False):
            raise ValueError(
                f"gather_distributed must be None, True or False, got {gather_distributed!r}"
            )
        self.gather_distributed = gather_distributed
        self.check_finite = check_finite

    def _prepare(self, *views: Tensor) -> tuple[Tensor, ...]:
        """Validate locally (NaN/Inf, shapes), then gather across ranks if requested."""
        names = ("z_a", "z_b") if len(views) == 2 else ("z",)
        if len(views) == 2 and isinstance(views[0], Tensor) and isinstance(views[1], Tensor):
            if views[0].shape != views[1].shape:
                raise ValueError(
                    f"the two views must have the same shape, got z_a {tuple(views[0].shape)} "
                    f"and z_b {tuple(views[1].shape)}"
                )
        gather = should_gather(self.gather_distributed)
        out = []
        for z, name in zip(views, names, strict=True):
            if not gather:
                out.append(VF.as_embeddings(z, name, check_finite=self.check_finite))
                continue
            # Per-rank batches may hold 1 sample. NaN/Inf and the batch size are checked on the
            # gathered batch, which every rank sees alike: all ranks raise together instead of
            # one raising while the others wait forever in the collective.
            low = z.dtype if isinstance(z, Tensor) else None
            z = VF.as_embeddings(z, name, check_finite=False, min_samples=1)
            if self.check_finite and low in (torch.float16, torch.bfloat16):
                VF._guard_low_precision_grad(z, name, low)  # (as the local path does)
            z = gather_with_grad(z)
            out.append(VF.as_embeddings(z, name, check_finite=self.check_finite))
        return tuple(out)


class VCRegLoss(_GatheringLoss):
    """Single-view VCReg ``μ·v(Z) + ν·c(Z)`` (docs/PAPER.md); ``.terms = {"variance", "covariance"}``.

    Args:
        mu: weight of the variance hinge ``v``. nu: weight of the covariance term ``c``.
        gamma, eps: target std and numerical epsilon of ``v``.
        method: covariance path, "auto" (Gram trick when n < k), "cov" or "gram".
        gather_distributed: see module docstring.
        check_finite: raise ValueError on NaN/Inf input (eager: one device sync per call;
            skipped under torch.compile, see the module docstring).
    """

    def __init__(
        self,
        mu: float = 25.0,
        nu: float = 1.0,
        gamma: float = 1.0,
        eps: float = 1e-4,
        gather_distributed: bool | None = None,
        method: VF.CovMethod = "auto",
        check_finite: bool = True,
    ) -> None:
        super().__init__(gather_distributed, check_finite)
        VF._check_method(method)
        self.mu, self.nu, self.gamma, self.eps, self.method = mu, nu, gamma, eps, method

    def forward(self, z: Tensor) -> Tensor:
        (z,) = self._prepare(z)
        args = (self.mu, self.nu, self.gamma, self.eps, self.method)
        return VF._vcreg_loss(z, *args, check_overflow=self.check_finite)

    def extra_repr(self) -> str:
        return f"mu={self.mu}, nu={self.nu}, gamma={self.gamma}, eps={self.eps}"


class TwoViewVCRegLoss(_GatheringLoss):
    """VCReg of a two-view batch: ``[VCReg(Z_a) + VCReg(Z_b)]/2 + invariance·MSE(Z_a, Z_b)``.

    The trainer's ``loss.name = "vcreg"``. ``invariance`` (default 0) weighs an MSE between the
    views; 0 is pure VCReg on each view, averaged. Other arguments as :class:`VCRegLoss`. Under
    DDP both views are gathered first (the same path as every loss here), so all terms are those
    of the global batch. ``.terms``: "variance", "covariance" (averaged over the views,
    unweighted), "invariance" (the unweighted MSE).
    """

    def __init__(
        self,
        invariance: float = 0.0,
        mu: float = 25.0,
        nu: float = 1.0,
        gamma: float = 1.0,
        eps: float = 1e-4,
        gather_distributed: bool | None = None,
        method: VF.CovMethod = "auto",
        check_finite: bool = True,
    ) -> None:
        super().__init__(gather_distributed, check_finite)
        VF._check_method(method)
        self.invariance = float(invariance)
        self.mu, self.nu, self.gamma, self.eps, self.method = mu, nu, gamma, eps, method

    def forward(self, z_a: Tensor, z_b: Tensor) -> Tensor:
        z_a, z_b = self._prepare(z_a, z_b)
        args = (self.mu, self.nu, self.gamma, self.eps, self.method)
        la = VF._vcreg_loss(z_a, *args, check_overflow=False)
        lb = VF._vcreg_loss(z_b, *args, check_overflow=False)
        inv = F.mse_loss(z_a, z_b)  # float32/float64 after _prepare
        loss = (la + lb) / 2 + self.invariance * inv
        cov = (la.terms["covariance"] + lb.terms["covariance"]) / 2
        terms = {"invariance": inv, "covariance": cov, "total": loss}
        VF._check_overflow(terms, (z_a, z_b), self.check_finite)
        loss.terms = {  # type: ignore[attr-defined]
            "invariance": inv.detach(),
            "variance": (la.terms["variance"] + lb.terms["variance"]) / 2,
            "covariance": cov,
        }
        return loss

    def extra_repr(self) -> str:
        return f"invariance={self.invariance}, mu={self.mu}, nu={self.nu}, gamma={self.gamma}"


class VICRegLoss(_GatheringLoss):
    """VICReg ``λ·MSE + μ·[v(Z_a) + v(Z_b)]/2 + ν·[c(Z_a) + c(Z_b)]`` (official conventions).

    Defaults λ = μ = 25, ν = 1. ``.terms``: ``"invariance"``, ``"variance"`` (already /2),
    ``"covariance"``. See :func:`vcreg.functional.vicreg_loss`.
    """

    def __init__(
        self,
        lambda_: float = 25.0,
        mu: float = 25.0,
        nu: float = 1.0,
        gamma: float = 1.0,
        eps: float = 1e-4,
        gather_distributed: bool | None = None,
        method: VF.CovMethod = "auto",
        check_finite: bool = True,
    ) -> None:
        super().__init__(gather_distributed, check_finite)
        VF._check_method(method)
        self.lambda_, self.mu, self.nu = lambda_, mu, nu
        self.gamma, self.eps, self.method = gamma, eps, method

    def forward(self, z_a: Tensor, z_b: Tensor) -> Tensor:
        z_a, z_b = self._prepare(z_a, z_b)
        args = (self.lambda_, self.mu, self.nu, self.gamma, self.eps, self.method)
        return VF._vicreg_loss(z_a, z_b, *args, check_overflow=self.check_finite)

    def extra_repr(self) -> str:
        return f"lambda_={self.lambda_}, mu={self.mu}, nu={self.nu}"


class BarlowTwinsLoss(_GatheringLoss):
    """Barlow Twins ``Σ_i (1 − C_ii)² + λ Σ_{i≠j} C_ij²``, ``C = BN(Z_a)ᵀBN(Z_b)/n``, λ = 0.0051.

    BN: no affine parameters, biased batch statistics, ``bn_eps = 1e-5``; under DDP the
    statistics are those of the global batch (as the official code's SyncBatchNorm).
    ``.terms``: ``"invariance"`` (on-diagonal), ``"redundancy"`` (off-diagonal, before λ).
    """

    def __init__(
        self,
        lambda_: float = 0.0051,
        bn_eps: float = 1e-5,
        gather_distributed: bool | None = None,
        method: VF.CovMethod = "auto",
        check_finite: bool = True,
    ) -> None:
        super().__init__(gather_distributed, check_finite)
        VF._check_method(method)
        self.lambda_, self.bn_eps, self.method = lambda_, bn_eps, method

    def forward(self, z_a: Tensor, z_b: Tensor) -> Tensor:
        z_a, z_b = self._prepare(z_a, z_b)
        return VF.barlow_twins_loss(
            z_a, z_b, self.lambda_, self.bn_eps, self.method, check_finite=False
        )

    def extra_repr(self) -> str:
        return f"lambda_={self.lambda_}, bn_eps={self.bn_eps}"


class WMSELoss(_GatheringLoss):
    """W-MSE: ``2 − 2·cos`` between per-sub-batch Cholesky-whitened views (Ermolov et al. 2021).

    Args:
        w_size: whitening sub-batch size (``None`` = whole batch); must be ≥ 2·dim and divide the
            (global) batch size, otherwise ``ValueError``.
        w_iter: number of random sub-batch splits averaged.
        eps: covariance shrinkage ``(1−ε)·C + ε·I`` (official default 0). A singular covariance
            does not crash: ε is raised automatically with a ``RuntimeWarning``.
        detach_whitening: stop the gradient through the whitening matrix (default False: the
            gradient flows through the Cholesky factor, as in the official code and lightly).
        generator: RNG for the sub-batch permutation (default: global torch RNG). Under DDP the
            permutation drawn on rank 0 is broadcast so all ranks use the same split.
    """

    def __init__(
        self,
        w_size: int | None = 128,
        w_iter: int = 1,
        eps: float = 0.0,
        detach_whitening: bool = False,
        gather_distributed: bool | None = None,
        generator: torch.Generator | None = None,
        check_finite: bool = True,
    ) -> None:
        super().__init__(gather_distributed, check_finite)
        if w_size is not None and int(w_size) < 2:
            raise ValueError(f"w_size must be >= 2 (or None for the whole batch), got {w_size}")
        if int(w_iter) < 1:
            raise ValueError(f"w_iter must be >= 1, got {w_iter}")
        if not 0.0 <= eps < 1.0:
            raise ValueError(f"eps (whitening shrinkage) must be in [0, 1), got {eps}")
        self.w_size, self.w_iter, self.eps = w_size, int(w_iter), float(eps)
        self.detach_whitening = detach_whitening
        self.generator = generator

    def forward(self, z_a: Tensor, z_b: Tensor) -> Tensor:
        gathered = should_gather(self.gather_distributed)
        z_a, z_b = self._prepare(z_a, z_b)
        perm = None
        if gathered:
            n = z_a.shape[0]
            perm = torch.stack(
                [torch.randperm(n, generator=self.generator) for _ in range(self.w_iter)]
            )
            perm = perm.to(z_a.device)
            dist.broadcast(perm, src=0)
        return VF.wmse_loss(
            z_a,
            z_b,
            self.w_size,
            self.w_iter,
            self.eps,
            detach_whitening=self.detach_whitening,
            generator=self.generator,
            perm=perm,
            check_finite=False,
        )

    def extra_repr(self) -> str:
        return f"w_size={self.w_size}, w_iter={self.w_iter}, eps={self.eps}"


class InfoNCELoss(_GatheringLoss):
    """SimCLR's NT-Xent / InfoNCE with temperature ``τ`` (default 0.5, lightly's default), the
    contrastive control without a variance-covariance term; see
    :func:`vcreg.functional.info_nce_loss`. Under DDP the negatives are the whole global batch
    (gathered with gradients, as the other losses). ``.terms``: ``"contrastive"``,
    ``"positive_cosine"``.
    """

    def __init__(
        self,
        temperature: float = 0.5,
        gather_distributed: bool | None = None,
        check_finite: bool = True,
    ) -> None:
        super().__init__(gather_distributed, check_finite)
        if not (isinstance(temperature, int | float) and temperature > 0):
            raise ValueError(f"temperature must be a positive number, got {temperature!r}")
        self.temperature = float(temperature)

    def forward(self, z_a: Tensor, z_b: Tensor) -> Tensor:
        z_a, z_b = self._prepare(z_a, z_b)
        return VF.info_nce_loss(z_a, z_b, self.temperature, check_finite=False)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


class SupervisedLoss(nn.Module):
    """Supervised cross-entropy on both views, ``[CE(Z_a, y) + CE(Z_b, y)]/2``: the
    reproduction's supervised control (the projector is the classification head, its output
    dimension ≥ the number of classes). ``needs_labels = True`` makes the trainer pass the
    batch's labels. Under DDP each rank averages its local batch and DDP averages the gradients:
    with equal per-rank batches (the trainer requires them) that is exactly the global-batch
    gradient, so nothing is gathered. ``.terms``: ``"cross_entropy"``, ``"accuracy"``.
    """

    needs_labels = True

    def __init__(self, label_smoothing: float = 0.0, check_finite: bool = True) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
        self.label_smoothing, self.check_finite = float(label_smoothing), check_finite

    def forward(self, z_a: Tensor, z_b: Tensor, y: Tensor) -> Tensor:
        z_a, z_b = VF._pair(z_a, z_b, self.check_finite, min_samples=1)
        if y.shape != z_a.shape[:1]:
            raise ValueError(f"need one label per sample, got {tuple(y.shape)} for {len(z_a)}")
        if int(y.max()) >= z_a.shape[1] or int(y.min()) < 0:
            raise ValueError(
                f"labels up to {int(y.max())} need a projector (classification head) with more "
                f"than {int(y.max())} outputs, got {z_a.shape[1]}"
            )
        y = y.long()
        ls = self.label_smoothing
        ce = (
            F.cross_entropy(z_a, y, label_smoothing=ls)
            + F.cross_entropy(z_b, y, label_smoothing=ls)
        ) / 2
        acc = ((z_a.argmax(1) == y).float().mean() + (z_b.argmax(1) == y).float().mean()) / 2
        VF._check_overflow({"cross_entropy": ce}, (z_a, z_b), self.check_finite)
        ce.terms = {"cross_entropy": ce.detach(), "accuracy": acc.detach()}  # type: ignore[attr-defined]
        return ce

    def extra_repr(self) -> str:
        return f"label_smoothing={self.label_smoothing}"


# -- registry ------------------------------------------------------------------------------------

#: constructor arguments the trainer sets itself; never part of a config's ``loss.params``
INFRASTRUCTURE_PARAMS = frozenset(
    {"self", "gather_distributed", "check_finite", "generator", "method"}
)

_REGISTRY: dict[str, type[nn.Module]] = {}
_L = TypeVar("_L", bound=type[nn.Module])


def register_loss(name: str, cls: _L | None = None, *, replace: bool = False) -> Any:
    """Register a two-view loss class under ``name`` (usable as ``loss.name`` in a config).

    ``register_loss("mine", MyLoss)`` or as a class decorator ``@register_loss("mine")``.
    Re-registering a taken name raises ``ValueError`` unless ``replace=True``.
    """
    if not isinstance(name, str) or not name or name != name.strip():
        raise ValueError(f"a loss name must be a non-empty string without spaces, got {name!r}")

    def _add(c: _L) -> _L:
        if not (isinstance(c, type) and issubclass(c, nn.Module)):
            raise TypeError(f"register_loss({name!r}) needs an nn.Module subclass, got {c!r}")
        if name in _REGISTRY and _REGISTRY[name] is not c and not replace:
            raise ValueError(
                f"loss {name!r} is already registered ({_REGISTRY[name].__name__}); "
                "pass replace=True to replace it"
            )
        _REGISTRY[name] = c
        return c

    return _add if cls is None else _add(cls)


def available_losses() -> tuple[str, ...]:
    """Registered loss names, in registration order."""
    return tuple(_REGISTRY)


def loss_class(name: str) -> type[nn.Module]:
    """The class registered under ``name``; ``ValueError`` listing the names otherwise."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown loss {name!r}; available: {list(_REGISTRY)}")
    return _REGISTRY[name]


def loss_params(name: str) -> set[str]:
    """The keyword arguments of loss ``name`` a config may set (``loss.params``)."""
    sig = inspect.signature(loss_class(name).__init__)
    return {
        p.name
        for p in sig.parameters.values()
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    } - INFRASTRUCTURE_PARAMS


def build_loss(name: str, params: dict[str, Any] | None = None, **fixed: Any) -> nn.Module:
    """Instantiate loss ``name`` with ``params``; ``fixed`` infrastructure arguments (e.g.
    ``check_finite=False``) are passed only where the class accepts them."""
    cls = loss_class(name)
    accepted = inspect.signature(cls.__init__).parameters
    extra = {k: v for k, v in fixed.items() if k in accepted}
    return cls(**dict(params or {}), **extra)


register_loss("vicreg", VICRegLoss)
register_loss("vcreg", TwoViewVCRegLoss)
register_loss("barlow", BarlowTwinsLoss)
register_loss("wmse", WMSELoss)
register_loss("infonce", InfoNCELoss)
register_loss("supervised", SupervisedLoss)
