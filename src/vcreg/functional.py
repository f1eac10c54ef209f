"""Functional forms of the VCReg family of losses (Mialon, Balestriero & LeCun, arXiv 2209.14905).

Conventions (``docs/sections/losses.md`` and ``docs/PAPER.md``):

* Embeddings ``z`` are ``(n, k)``: ``n`` samples, ``k`` features. Inputs with more than two
  dimensions ``(n, ..., k)`` are flattened to ``(n * ..., k)``: every leading position counts as a
  sample (a dense/patch embedding contributes one row per position).
* ``C(Z) = Z̄ᵀZ̄ / (n − 1)`` is the unbiased covariance, ``Z̄`` the batch-centred embeddings.
* float16 / bfloat16 inputs are computed in float32 (also inside ``torch.autocast`` regions, which
  the losses switch off locally); results are float32 (float64 stays float64).
* Bad input (not a tensor, non-floating dtype, < 2 dims, fewer than 2 samples, NaN/Inf,
  mismatched views) raises ``ValueError`` / ``TypeError`` with a message naming the problem.
* Magnitude (docs/sections/losses.md): scale-free losses (Barlow Twins, W-MSE, InfoNCE) divide
  their input by exact powers of two first, so they are right at any finite ``|z|``; the
  covariance statistics are computed on ``Z̄ / s`` and scaled back one power of two at a time,
  so a term is finite whenever its value is representable. A term beyond the dtype's range
  raises ``ValueError`` naming it and ``|z|``, and so does a float16/bfloat16 input's gradient
  that overflows its dtype (eager mode with ``check_finite``; otherwise it is inf, which the
  trainer stops on).

Each loss returns a 0-d tensor; the multi-term losses attach ``.terms``, a dict of detached
0-d tensors for logging.
"""

from __future__ import annotations

import contextlib
import functools
import math
import warnings
from collections.abc import Callable
from typing import Literal, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "as_embeddings",
    "variance_loss",
    "covariance_loss",
    "block_covariance_norms",
    "invariance_loss",
    "vcreg_loss",
    "vicreg_loss",
    "barlow_twins_loss",
    "wmse_loss",
    "wmse_size_problems",
    "whiten",
    "info_nce_loss",
]

CovMethod = Literal["auto", "cov", "gram"]
_METHODS = ("auto", "cov", "gram")


_F = TypeVar("_F", bound=Callable)


def _float32_compute(fn: _F) -> _F:
    """Run ``fn`` with autocast disabled, so the statistics are never computed in fp16/bf16
    inside a user's ``torch.autocast`` region (inputs are upcast by :func:`as_embeddings`)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with contextlib.ExitStack() as stack:
            for device in ("cpu", "cuda"):
                if torch.is_autocast_enabled(device):
                    stack.enter_context(torch.autocast(device, enabled=False))
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def as_embeddings(
    z: Tensor, name: str = "z", *, check_finite: bool = True, min_samples: int = 2
) -> Tensor:
    """Validate an embedding batch and return it as a 2-D float32/float64 tensor.

    ``(n, ..., k)`` is flattened to ``(n·…, k)``; float16/bfloat16 are upcast to float32.
    """
    if not isinstance(z, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(z).__name__}")
    if not (z.is_floating_point()):
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {z.dtype}")
    if z.dim() < 2:
        raise ValueError(
            f"{name} must have shape (batch, dim) (or (batch, ..., dim)), got shape "
            f"{tuple(z.shape)}"
        )
    if z.dim() > 2:
        z = z.reshape(-1, z.shape[-1])
    if z.shape[0] < min_samples:
        raise ValueError(
            f"{name} has batch size {z.shape[0]}; the variance/covariance statistics need at "
            f"least {min_samples} samples"
        )
    if z.shape[1] < 1:
        raise ValueError(f"{name} has no features (shape {tuple(z.shape)})")
    if z.dtype in (torch.float16, torch.bfloat16):
        low, z = z.dtype, z.float()
        if check_finite:
            _guard_low_precision_grad(z, name, low)
    # one cheap reduction first; the element-wise test only runs if the sum is not finite
    # (NaN/Inf, or — rarely — an overflowing sum of huge finite values). Raising needs a host
    # sync, a graph break under torch.compile: there the check is skipped and a NaN/Inf input
    # yields a NaN/Inf loss, which the trainer's divergence guard stops on (module docstring).
    if (
        check_finite
        and not torch.compiler.is_compiling()
        and not bool(torch.isfinite(z.detach().sum()))
        and not bool(torch.isfinite(z).all())
    ):
        raise ValueError(f"{name} contains NaN or Inf values")
    return z


def _pair(z_a: Tensor, z_b: Tensor, check_finite: bool, min_samples: int = 2):
    if isinstance(z_a, Tensor) and isinstance(z_b, Tensor) and z_a.shape != z_b.shape:
        raise ValueError(
            f"the two views must have the same shape, got z_a {tuple(z_a.shape)} and "
            f"z_b {tuple(z_b.shape)}"
        )
    z_a = as_embeddings(z_a, "z_a", check_finite=check_finite, min_samples=min_samples)
    z_b = as_embeddings(z_b, "z_b", check_finite=check_finite, min_samples=min_samples)
    dtype = torch.promote_types(z_a.dtype, z_b.dtype)
    return z_a.to(dtype), z_b.to(dtype)


def _check_method(method: str) -> None:
    if method not in _METHODS:
        raise ValueError(f"unknown covariance method {method!r}; choose one of {_METHODS}")


def _use_gram(method: str, n: int, k: int) -> bool:
    # Gram costs O(n²k), covariance O(nk²): pick the smaller side.
    return method == "gram" or (method == "auto" and n < k)


def _with_terms(loss: Tensor, terms: dict[str, Tensor]) -> Tensor:
    loss.terms = {name: value.detach() for name, value in terms.items()}
    return loss


def _max_pow2_exponent(dtype: torch.dtype) -> int:
    """The largest ``e`` with ``2**e`` finite in ``dtype`` (127 for float32)."""
    return math.frexp(torch.finfo(dtype).max)[1] - 1


def _pow2_scale(zc: Tensor) -> Tensor:
    """The power of two ``s ≥ max|zc|`` (1 for an all-zero batch), as a 0-d tensor.

    Dividing by a power of two is exact, so statistics computed on ``zc / s`` and scaled back
    are bit-identical to the direct ones whenever the latter do not overflow — and they do not
    overflow (or cancel ``inf − inf``) for embeddings of any finite magnitude (``|z| ≳ 1e9`` in
    float32 would: ``Σ C_ij²`` grows like ``|z|⁴``). The exponent is capped so that ``s`` itself
    is finite.
    """
    amax = zc.detach().abs().amax()
    _, exponent = torch.frexp(torch.where(torch.isfinite(amax), amax, torch.zeros_like(amax)))
    exponent = exponent.clamp_max(_max_pow2_exponent(zc.dtype))
    return torch.ldexp(torch.ones_like(amax), exponent)


def _pow2_at_least_one(amax: Tensor) -> Tensor:
    """Element-wise power of two ``s ≥ max(amax, 1)``: divides large values down (exactly) and
    leaves values up to 1 alone, so every ``eps`` of a formula keeps its meaning."""
    _, exponent = torch.frexp(torch.where(torch.isfinite(amax), amax, torch.zeros_like(amax)))
    exponent = exponent.clamp(0, _max_pow2_exponent(amax.dtype))
    return torch.ldexp(torch.ones_like(amax), exponent)


def _pow2_rows(z: Tensor) -> Tensor:
    """Per row of ``z``, the power of two ``s`` with ``max|z_i| / s`` in ``[½, 1]`` (1 for a
    zero row), kept within the dtype's normal range: ``(n, 1)``."""
    amax = z.detach().abs().amax(dim=1, keepdim=True)
    _, exponent = torch.frexp(torch.where(torch.isfinite(amax), amax, torch.zeros_like(amax)))
    low = math.frexp(torch.finfo(z.dtype).tiny)[1]
    exponent = exponent.clamp(low, _max_pow2_exponent(z.dtype))
    return torch.ldexp(torch.ones_like(amax), exponent)


def _times_pow2(x: Tensor, s: Tensor, power: int) -> Tensor:
    """``x · sᵖ`` one factor at a time: exact for a power of two ``s``, ``0`` stays ``0`` and a
    product beyond the range is ``inf`` (``sᵖ`` itself may not be representable)."""
    for _ in range(power):
        x = x * s
    return x


_NOT_TWICE = (
    b"vcreg's covariance statistics (covariance_loss / vcreg_loss / vicreg_loss) are not twice "
    b"differentiable: their fused backward cannot be differentiated again (e.g. for a gradient "
    b"penalty); compute the loss with plain autograd ops instead"
)


def _not_twice_differentiable(grad: Tensor) -> Tensor:
    """Make differentiating ``grad`` (from a ``create_graph=True`` backward) raise a clear error;
    ``once_differentiable`` only does so when an incoming gradient itself requires grad."""
    if not torch.is_grad_enabled():
        return grad
    grad = grad.detach().requires_grad_(True)
    return torch._C._functions.DelayedError(_NOT_TWICE, 1)(grad)


class _CovarianceStats(torch.autograd.Function):
    """``(c(Z), C_jj)``: the covariance term ``c = Σ_{i≠j} C_ij² / k`` and the feature variances.

    Computed on ``Z̃ = Z̄ / s``, ``Z̄`` batch-centred, ``s`` the power of two of
    :func:`_pow2_scale` (a constant for autograd), and scaled back one factor of ``s`` at a time
    (:func:`_times_pow2`): ``c = s⁴·off̃/N`` with ``off̃ = Σ_{i≠j} (Z̃ᵀZ̃)_ij²``, ``N = (n−1)²k``,
    and ``C_jj = s²·d̃_j/(n−1)`` with ``d̃_j = Σ_a Z̃_aj²``. So a value is finite whenever it is
    representable, an exact zero stays zero at any ``|z|``, and the backward never multiplies
    an overflowed scale by zero. The backward is closed-form with a single matmul (autograd
    through ``Z̃ᵀZ̃`` would spend two plus the centring's backward, which is the identity here
    because the gradient has zero column means). With ``g_c``, ``g_v`` the incoming gradients,
    ``a = 4·g_c/N`` and ``v = 2·g_v/(n−1)``:

    * Gram path: ``off̃ = ‖Z̃Z̃ᵀ‖_F² − Σ_j d̃_j²``;
      ``∂/∂Z = s·[(a·s²·G̃) Z̃ + Z̃·(v − a·s²·d̃)]``.
    * Covariance path: ``M̃ = Z̃ᵀZ̃`` with its diagonal (= d̃) zeroed before squaring (no
      cancellation); ``∂/∂Z = s·Z̃ (a·s²·M̃_off + diag(v))``.

    Not twice differentiable (double backward raises saying so).
    """

    @staticmethod
    def forward(ctx, z: Tensor, gram: bool):
        ctx.set_materialize_grads(False)
        n, k = z.shape
        zc = z - z.mean(dim=0, keepdim=True)
        scale = _pow2_scale(zc)
        zc = zc / scale
        if gram:
            g = zc @ zc.T
            d = zc.pow(2).sum(dim=0)  # (a column reduction; vector_norm is ~2x slower on CPU)
            # (a difference: rounding can make a zero slightly negative; c ≥ 0 by definition)
            off = (g.pow(2).sum() - d.pow(2).sum()).clamp_min(0.0)
            ctx.save_for_backward(zc, scale, g, d)
        else:
            m = zc.T @ zc
            d = m.diagonal().clone()
            m.diagonal().zero_()
            off = m.pow(2).sum()
            ctx.save_for_backward(zc, scale, m)
        ctx.gram = gram
        cov = _times_pow2(off / ((n - 1) ** 2 * k), scale, 4)
        var = _times_pow2(d / (n - 1), scale, 2)
        return cov, var

    @staticmethod
    def backward(ctx, g_c: Tensor | None, g_v: Tensor | None):
        with torch.no_grad():
            grad = _CovarianceStats._grad(ctx, g_c, g_v)
        return _not_twice_differentiable(grad), None

    @staticmethod
    def _grad(ctx, g_c: Tensor | None, g_v: Tensor | None) -> Tensor:
        # ∂/∂Z = s·Z̃ R with R = a·s²·M̃ + diag(2g_v/(n−1)) (Gram path: the same, through G̃).
        # The factor s² goes into the small matrix one power of two at a time, so exact zeros
        # stay zero; an entry can only overflow where c itself does (|a·M_ij| ≤ sqrt(4a·g_c·c)).
        zc, scale = ctx.saved_tensors[:2]
        n, k = zc.shape
        a = 4.0 * g_c / ((n - 1) ** 2 * k) if g_c is not None else None
        v = 2.0 * g_v / (n - 1) if g_v is not None else zc.new_zeros(k)
        if ctx.gram:
            g, d = ctx.saved_tensors[2:]
            if a is None:
                return zc * v * scale
            col = v - _times_pow2(d * a, scale, 2)
            return torch.addmm(zc * col, _times_pow2(g * a, scale, 2), zc) * scale
        if a is None:
            return zc * v * scale
        right = _times_pow2(ctx.saved_tensors[2] * a, scale, 2)
        right.diagonal().add_(v)
        return (zc @ right) * scale


def _cov_stats(z: Tensor, method: str) -> tuple[Tensor, Tensor]:
    """``(c(Z), C_jj)`` of a validated 2-D ``z`` (see :class:`_CovarianceStats`)."""
    n, k = z.shape
    return _CovarianceStats.apply(z, _use_gram(method, n, k))


def _vc_terms(z: Tensor, gamma: float, eps: float, method: str) -> tuple[Tensor, Tensor]:
    """(v(Z), c(Z)) for a validated 2-D ``z``, sharing one pass over the data. A variance
    beyond the dtype's range is ``inf``: its std is far above ``γ``, so ``v`` is exactly 0."""
    cov, var = _cov_stats(z, method)
    return F.relu(gamma - torch.sqrt(var + eps)).mean(), cov


def _check_overflow(terms: dict[str, Tensor], views: tuple[Tensor, ...], check: bool) -> None:
    """A term that is not finite although its finite input was validated has overflowed its
    dtype: say so (with the input's magnitude) instead of returning inf/NaN. Eager mode only
    (raising needs a host sync; under torch.compile the loss is inf for the divergence guard)."""
    if not check or torch.compiler.is_compiling():
        return
    z = views[0]
    finite = torch.isfinite(torch.stack([v.detach() for v in terms.values()])).all()
    zmax_t = torch.stack([v.detach().abs().max().to(torch.float64) for v in views]).max()
    ok, zmax = (float(t) for t in torch.stack([finite.to(torch.float64), zmax_t]).tolist())
    rounding = torch.finfo(z.dtype).eps * zmax * zmax  # of each covariance entry, even a 0
    # A covariance term whose rounding alone (≈ rounding² per entry) exceeds the dtype's range is
    # meaningless even when this BLAS happens to return a finite value: the outcome would
    # otherwise depend on the CPU's kernels (AVX-512 returned an exact 0 where AVX2 overflowed).
    unresolved = "covariance" in terms and not rounding * rounding <= torch.finfo(z.dtype).max
    if ok and not unresolved:
        return
    bad = [name for name, value in terms.items() if not bool(torch.isfinite(value))]
    if unresolved and "covariance" not in bad:
        bad.insert(0, "covariance")
    if len(bad) > 1 and "total" in bad:  # the total overflows because a term does
        bad.remove("total")
    raise ValueError(
        f"the {'/'.join(bad)} term overflows {z.dtype}: the embeddings reach "
        f"|z| = {zmax:.3g}, so the term exceeds {torch.finfo(z.dtype).max:.3g} (it grows like "
        f"|z|² (invariance) or |z|⁴ (covariance), and at this scale each covariance entry is "
        f"only resolved to ≈ {rounding:.1g}); normalise the embeddings or compute in float64"
    )


def _guard_low_precision_grad(z: Tensor, name: str, low: torch.dtype) -> None:
    """Make a gradient that overflows the caller's float16/bfloat16 a ``ValueError`` in the
    backward (eager mode only: one host sync per backward) instead of a silent ``inf``."""
    if not z.requires_grad or torch.compiler.is_compiling():
        return
    zmax = z.detach().abs().max()

    def check(grad: Tensor) -> Tensor:
        gmax = float(grad.detach().abs().max())
        if not gmax <= torch.finfo(low).max:
            raise ValueError(
                f"the loss's gradient w.r.t. {name} overflows {low}: it reaches {gmax:.3g} at "
                f"|{name}| = {float(zmax):.3g} (the VCReg/VICReg covariance and invariance terms "
                f"grow with the scale of {name}); normalise the embeddings or pass float32"
            )
        return grad

    z.register_hook(check)


# --------------------------------------------------------------------------- VCReg terms


@_float32_compute
def variance_loss(
    z: Tensor, gamma: float = 1.0, eps: float = 1e-4, *, check_finite: bool = True
) -> Tensor:
    """Hinge on the standard deviation: ``v(Z) = (1/k) Σ_j relu(γ − sqrt(C_jj + ε))``.

    ``C_jj`` is the unbiased (``n − 1``) variance of feature ``j`` (official VICReg code).
    """
    z = as_embeddings(z, check_finite=check_finite)
    # per-feature power-of-two scale (exact): a variance beyond the range cannot become inf/NaN
    s = _pow2_at_least_one(z.detach().abs().amax(dim=0))
    std = torch.sqrt((z / s).var(dim=0, unbiased=True) + eps / (s * s)) * s
    return F.relu(gamma - std).mean()


@_float32_compute
def covariance_loss(z: Tensor, method: CovMethod = "auto", *, check_finite: bool = True) -> Tensor:
    """Off-diagonal covariance penalty ``c(Z) = (1/k) Σ_{i≠j} C(Z)_ij²``.

    ``method="cov"`` forms the k×k covariance (O(nk²) time, O(k²) memory); ``"gram"`` uses
    ``Σ_ij C_ij² = ‖Z̄Z̄ᵀ‖_F² / (n−1)²`` with the n×n Gram matrix and subtracts the diagonal
    ``Σ_j C_jj²`` from the per-feature variances (O(n²k) time, O(n²) memory). ``"auto"`` (default)
    uses the Gram path when ``n < k``. Both paths give the same value and gradient.
    """
    _check_method(method)
    z = as_embeddings(z, check_finite=check_finite)
    cov, _ = _cov_stats(z, method)
    _check_overflow({"covariance": cov}, (z,), check_finite)
    return cov


def block_covariance_norms(z: Tensor, *, debias: bool = False) -> Tensor:
    """Squared Frobenius norms of the blocks of the covariance of block-structured embeddings.

    ``z`` is ``(n, k, m)``: ``k`` blocks of ``m`` features (e.g. the element-wise random-feature
    projector ``[φ(x_1) | … | φ(x_k)]``). Returns the ``(k, k)`` matrix
    ``B_ij = ‖Z̄_iᵀZ̄_j‖_F² / (n−1)² = ‖Cov(z_i, z_j)‖_F²`` (Z̄ batch-centred). By the bridge
    identity ``Σ_{i≠j} B_ij`` is the sum of pairwise HSIC under the random-feature kernel, with
    the ``1/(n−1)²`` normalisation. ``debias=True`` subtracts the same-sample terms
    ``Σ_a ‖z̄_i(a)‖² ‖z̄_j(a)‖² / (n−1)²`` of the Gram form ``‖Σ_a z̄_i(a) z̄_j(a)ᵀ‖_F²``: their
    ``O(1/n)`` bias ``≈ tr C_ii · tr C_jj / n`` depends only on the marginals (the debiased value
    can be slightly negative). Differentiable; no input checks (an internal building block).
    """
    n, k, m = z.shape
    zc = z - z.mean(dim=0, keepdim=True)
    flat = zc.reshape(n, k * m)
    blocks = (flat.T @ flat).reshape(k, m, k, m).pow(2).sum(dim=(1, 3))
    if debias:
        r = zc.pow(2).sum(dim=2)  # (n, k)
        blocks = blocks - r.T @ r
    return blocks / (n - 1) ** 2


@_float32_compute
def invariance_loss(z_a: Tensor, z_b: Tensor, *, check_finite: bool = True) -> Tensor:
    """Mean squared error between the two views, averaged over batch and dimension."""
    z_a, z_b = _pair(z_a, z_b, check_finite, min_samples=1)
    inv = F.mse_loss(z_a, z_b)
    _check_overflow({"invariance": inv}, (z_a, z_b), check_finite)
    return inv


@_float32_compute
def vcreg_loss(
    z: Tensor,
    mu: float = 25.0,
    nu: float = 1.0,
    gamma: float = 1.0,
    eps: float = 1e-4,
    method: CovMethod = "auto",
    *,
    check_finite: bool = True,
) -> Tensor:
    """Single-view VCReg ``μ·v(Z) + ν·c(Z)``; ``.terms = {"variance", "covariance"}``."""
    _check_method(method)
    z = as_embeddings(z, check_finite=check_finite)
    return _vcreg_loss(z, mu, nu, gamma, eps, method, check_overflow=check_finite)


def _vcreg_loss(
    z: Tensor, mu: float, nu: float, gamma: float, eps: float, method: str, check_overflow: bool
) -> Tensor:
    """:func:`vcreg_loss` of a validated ``z`` (the loss modules validate once, then call this)."""
    var, cov = _vc_terms(z, gamma, eps, method)
    loss = mu * var + nu * cov
    _check_overflow({"covariance": cov, "total": loss}, (z,), check_overflow)
    return _with_terms(loss, {"variance": var, "covariance": cov})


@_float32_compute
def vicreg_loss(
    z_a: Tensor,
    z_b: Tensor,
    lambda_: float = 25.0,
    mu: float = 25.0,
    nu: float = 1.0,
    gamma: float = 1.0,
    eps: float = 1e-4,
    method: CovMethod = "auto",
    *,
    check_finite: bool = True,
) -> Tensor:
    """VICReg ``λ·MSE(Z_a, Z_b) + μ·[v(Z_a) + v(Z_b)]/2 + ν·[c(Z_a) + c(Z_b)]``.

    The ``/2`` on the variance terms follows the official code (facebookresearch/vicreg) and
    lightly; solo-learn omits it. ``.terms``: ``"invariance"`` (the MSE), ``"variance"``
    (``[v_a + v_b]/2``) and ``"covariance"`` (``c_a + c_b``), i.e. the quantities that
    ``λ``, ``μ`` and ``ν`` multiply.
    """
    _check_method(method)
    z_a, z_b = _pair(z_a, z_b, check_finite)
    return _vicreg_loss(z_a, z_b, lambda_, mu, nu, gamma, eps, method, check_finite)


def _vicreg_loss(
    z_a: Tensor,
    z_b: Tensor,
    lambda_: float,
    mu: float,
    nu: float,
    gamma: float,
    eps: float,
    method: str,
    check_overflow: bool,
) -> Tensor:
    """:func:`vicreg_loss` of validated views (the loss modules validate once, then call this)."""
    inv = F.mse_loss(z_a, z_b)
    var_a, cov_a = _vc_terms(z_a, gamma, eps, method)
    var_b, cov_b = _vc_terms(z_b, gamma, eps, method)
    var = 0.5 * (var_a + var_b)
    cov = cov_a + cov_b
    loss = lambda_ * inv + mu * var + nu * cov
    terms = {"invariance": inv, "covariance": cov, "total": loss}
    _check_overflow(terms, (z_a, z_b), check_overflow)
    return _with_terms(loss, {"invariance": inv, "variance": var, "covariance": cov})


# --------------------------------------------------------------------------- Barlow Twins


def _batch_standardize(z: Tensor, eps: float) -> Tensor:
    """BatchNorm1d(affine=False) in training mode: biased batch variance, eps inside the sqrt.

    Computed on ``z / s`` with ``s`` a per-feature power of two ``≥ max(|z_j|, 1)`` and ``eps``
    as ``eps / s²``: exactly the same numbers whenever the direct form does not overflow, and
    scale-free for embeddings of any finite size (float32 at ``|z| ≈ 1e20`` has ``var = inf``)."""
    s = _pow2_at_least_one(z.detach().abs().amax(dim=0, keepdim=True))
    z = z / s
    mean = z.mean(dim=0, keepdim=True)
    var = z.var(dim=0, unbiased=False, keepdim=True)
    return (z - mean) / torch.sqrt(var + eps / (s * s))


@_float32_compute
def barlow_twins_loss(
    z_a: Tensor,
    z_b: Tensor,
    lambda_: float = 0.0051,
    bn_eps: float = 1e-5,
    method: CovMethod = "auto",
    *,
    check_finite: bool = True,
) -> Tensor:
    """Barlow Twins ``Σ_i (1 − C_ii)² + λ Σ_{i≠j} C_ij²`` with ``C = BN(Z_a)ᵀ BN(Z_b) / n``.

    BN is batch-norm without affine parameters using biased batch statistics and ``bn_eps``
    (PyTorch's BatchNorm1d default 1e-5, as in the official code). The off-diagonal sum uses
    ``‖AᵀB‖_F² = ⟨AAᵀ, BBᵀ⟩_F`` (n×n Grams) when ``n < k`` (``method="auto"``).
    ``.terms``: ``"invariance"`` (on-diagonal sum) and ``"redundancy"`` (off-diagonal sum).
    """
    _check_method(method)
    z_a, z_b = _pair(z_a, z_b, check_finite)
    n, k = z_a.shape
    a = _batch_standardize(z_a, bn_eps)
    b = _batch_standardize(z_b, bn_eps)
    diag = (a * b).sum(dim=0) / n  # C_ii
    on = (1.0 - diag).pow(2).sum()
    if _use_gram(method, n, k):
        total = ((a @ a.T) * (b @ b.T)).sum() / n**2
        off = total - diag.pow(2).sum()
    else:
        c = (a.T @ b) / n
        c.diagonal().zero_()
        off = c.pow(2).sum()
    return _with_terms(on + lambda_ * off, {"invariance": on, "redundancy": off})


# --------------------------------------------------------------------------- W-MSE

_SHRINK_FALLBACK = (1e-6, 1e-4, 1e-2, 1e-1, 0.5)


@_float32_compute
def whiten(
    z: Tensor, eps: float = 0.0, *, detach_whitening: bool = False, check_finite: bool = True
) -> Tensor:
    """Cholesky-whiten a sub-batch: ``(z − mean) L⁻ᵀ`` with ``L Lᵀ = (1−ε)·C + ε·I``.

    ``C`` is the unbiased covariance (as in the W-MSE code, htdt/self-supervised), so the output
    has covariance exactly ``I`` when ``eps = 0``. If the (shrunk) covariance is singular (Cholesky
    fails, or a squared pivot is below ``d·machine-eps`` times the largest variance), the
    shrinkage ``ε`` is raised step by step (1e-6 … 0.5) and a ``RuntimeWarning`` is emitted,
    instead of crashing or returning huge values. ``detach_whitening=True`` stops the gradient through ``L`` (the
    whitening matrix is treated as a constant, gradients flow only through the centred input).
    ``z`` is validated like every loss input (:func:`as_embeddings`: floating point, ``(n, d)``
    with ``n ≥ 2``, finite unless ``check_finite=False``).
    """
    z = as_embeddings(z, check_finite=check_finite)
    n, d = z.shape
    zc = z - z.mean(dim=0, keepdim=True)
    # whitening on zc / s with the shrinkage target I / s² (s a power of two): the same factor
    # L / s, hence the same output, without overflowing C for embeddings of any finite size
    s = _pow2_scale(zc).clamp_min(2.0**-40)  # (not so small that I / s² overflows)
    zc = zc / s
    cov = zc.T @ zc / (n - 1)
    eye = torch.eye(d, dtype=z.dtype, device=z.device) / (s * s)
    # a numerically singular matrix can still "factorize" with a tiny rounding-level pivot,
    # which would blow the whitened values up: treat pivots below tol as failures too
    scale = cov.diagonal().max().clamp_min(torch.finfo(z.dtype).tiny)
    tol = d * torch.finfo(z.dtype).eps
    if torch.compiler.is_compiling():
        chol = _first_good_cholesky(cov, eye, eps, tol * scale)
        return _solve_whitened(chol, zc, detach_whitening)
    for shrink in (eps, *[s for s in _SHRINK_FALLBACK if s > eps]):
        chol, info = torch.linalg.cholesky_ex((1.0 - shrink) * cov + shrink * eye)
        ok = int(info) == 0 and bool(chol.diagonal().min() ** 2 > tol * scale)
        if ok:
            if shrink != eps:
                warnings.warn(
                    f"W-MSE whitening covariance ({d}x{d}, sub-batch of {n}) is singular; "
                    f"used shrinkage eps={shrink:g} instead of {eps:g}",
                    RuntimeWarning,
                    stacklevel=3,
                )
            break
    else:  # pragma: no cover - shrink 0.5 makes the matrix ≥ 0.5·I, always PD
        raise ValueError("could not factorize the whitening covariance")
    return _solve_whitened(chol, zc, detach_whitening)


def _first_good_cholesky(cov: Tensor, eye: Tensor, eps: float, min_pivot: Tensor) -> Tensor:
    """:func:`whiten`'s shrinkage fallback without data-dependent branches (torch.compile):
    all levels are factorized in one batch without autograd, the first good level is picked by
    tensor ops and factorized again with autograd (so failed factors never enter the backward).
    The chosen level is the eager loop's; no warning can be emitted from a compiled graph."""
    levels = [eps, *[s for s in _SHRINK_FALLBACK if s > eps]]
    shrink = torch.tensor(levels, dtype=cov.dtype, device=cov.device)
    with torch.no_grad():
        trial = (1.0 - shrink[:, None, None]) * cov + shrink[:, None, None] * eye
        chols, info = torch.linalg.cholesky_ex(trial)
        ok = (info == 0) & (chols.diagonal(dim1=-2, dim2=-1).amin(-1) ** 2 > min_pivot)
        ok[-1] = True  # shrink 0.5 makes the matrix >= 0.5·I, always PD (eager loop's invariant)
        first = ok & (ok.cumsum(0) == 1)
        chosen = (shrink * first).sum()
    return torch.linalg.cholesky_ex((1.0 - chosen) * cov + chosen * eye)[0]


def _solve_whitened(chol: Tensor, zc: Tensor, detach_whitening: bool) -> Tensor:
    if detach_whitening:
        chol = chol.detach()
    # L⁻¹ Z̄ᵀ by a triangular solve (stabler than forming L⁻¹)
    return torch.linalg.solve_triangular(chol, zc.T, upper=False).T


def _norm_mse(x: Tensor, y: Tensor) -> Tensor:
    # 2 − 2·cos between L2-normalised rows == MSE of the unit vectors (summed over dim)
    return 2.0 - 2.0 * F.cosine_similarity(x, y, dim=-1, eps=1e-12).mean()


def wmse_size_problems(w_size: int | None, batch_size: int, dim: int) -> list[str]:
    """The W-MSE sub-batch rule (empty list when it holds): whitening a sub-batch of ``w_size``
    rows (``None``: the whole batch) needs ``w_size ≥ 2·dim`` (the W-MSE paper's stability
    condition), and the batch must split into whole sub-batches. The config validator and
    :func:`wmse_loss` both apply this one rule."""
    size = batch_size if w_size is None else int(w_size)
    out = []
    if size < 2 * dim:
        out.append(
            f"W-MSE w_size={size} is too small for embedding dimension {dim}: whitening needs "
            f"w_size >= 2*embedding dim = {2 * dim} (use a smaller embedding or a larger w_size)"
        )
    if batch_size < size or batch_size % size != 0:
        out.append(f"W-MSE batch size {batch_size} must be a positive multiple of w_size={size}")
    return out


@_float32_compute
def wmse_loss(
    z_a: Tensor,
    z_b: Tensor,
    w_size: int | None = 128,
    w_iter: int = 1,
    eps: float = 0.0,
    *,
    detach_whitening: bool = False,
    generator: torch.Generator | None = None,
    perm: Tensor | None = None,
    check_finite: bool = True,
) -> Tensor:
    """W-MSE (Ermolov et al. 2021): MSE of L2-normalised, per-sub-batch whitened views.

    For each of ``w_iter`` iterations the batch is randomly split (``torch.randperm``, or
    ``perm`` if given, shape ``(w_iter, n)``) into sub-batches of ``w_size`` rows; each view's
    sub-batch is whitened separately (:func:`whiten`), then the loss is ``2 − 2·cos`` averaged over
    samples and iterations. ``w_size=None`` whitens the whole batch at once. Requires
    ``w_size ≥ 2·k`` (the W-MSE paper's stability condition) and ``n`` divisible by ``w_size``.
    ``.terms = {"invariance"}``.
    """
    z_a, z_b = _pair(z_a, z_b, check_finite)
    n, k = z_a.shape
    problems = wmse_size_problems(w_size, n, k)
    if problems:
        raise ValueError(problems[0])
    size = n if w_size is None else int(w_size)
    if w_iter < 1:
        raise ValueError(f"w_iter must be >= 1, got {w_iter}")
    total = z_a.new_zeros(())
    for it in range(w_iter):
        if perm is not None:
            order = perm[it].to(z_a.device)
        else:
            order = torch.randperm(n, generator=generator).to(z_a.device)
        wa, wb = [], []
        for idx in order.view(-1, size):
            wa.append(whiten(z_a[idx], eps, detach_whitening=detach_whitening, check_finite=False))
            wb.append(whiten(z_b[idx], eps, detach_whitening=detach_whitening, check_finite=False))
        total = total + _norm_mse(torch.cat(wa), torch.cat(wb))
    loss = total / w_iter
    return _with_terms(loss, {"invariance": loss})


# --------------------------------------------------------------------------- InfoNCE (SimCLR)


@_float32_compute
def info_nce_loss(
    z_a: Tensor, z_b: Tensor, temperature: float = 0.5, *, check_finite: bool = True
) -> Tensor:
    """SimCLR's NT-Xent / InfoNCE (Chen et al. 2020): a contrastive control without VCReg.

    With ``u = normalize([z_a; z_b])`` (2n rows, cosine similarity ``s_ij = u_iᵀu_j / τ``) and
    ``p(i)`` the other view of sample ``i``:
    ``L = (1/2n) Σ_i −log( exp(s_{i,p(i)}) / Σ_{j≠i} exp(s_ij) )``,
    i.e. cross-entropy over the other 2n − 1 embeddings of the batch (both views as anchors).
    ``.terms``: ``"contrastive"`` (= the loss) and ``"positive_cosine"`` (mean ``u_iᵀu_{p(i)}``).
    Same value as lightly's ``NTXentLoss(temperature)`` without a memory bank, except that rows
    are divided by a power of two first, so the cosine is right at any scale (lightly's
    ``normalize`` eps 1e-12 shrinks rows of norm < 1e-12; here it only keeps a zero row 0).
    """
    if not (isinstance(temperature, int | float) and temperature > 0):
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    z_a, z_b = _pair(z_a, z_b, check_finite)
    n = z_a.shape[0]
    z = torch.cat([z_a, z_b])
    # rows divided by a power of two near their max (exact; the cosine is scale-free): the norm
    # of a float32 row of |z| ~ 1e20 would be inf (the row 0), of |z| ~ 1e-30 below normalize's
    # eps (the row ~0); an all-zero row stays 0
    u = F.normalize(z / _pow2_rows(z), dim=1)
    logits = u @ u.T / temperature
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=u.device)
    logits = logits.masked_fill(self_mask, float("-inf"))  # j ≠ i
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(u.device)
    loss = F.cross_entropy(logits, target)
    pos = (u[:n] * u[n:]).sum(1).mean()
    return _with_terms(loss, {"contrastive": loss, "positive_cosine": pos})
