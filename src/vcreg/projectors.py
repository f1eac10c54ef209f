"""Projectors ``g`` mapping representations ``X`` (n, d) to embeddings ``Z = g(X)`` (n, k).

* :class:`MLPProjector` — the VICReg-style MLP (Linear-BN-ReLU blocks, last Linear plain),
  trainable or frozen at its random initialisation.
* :class:`RandomFeatureProjector` — element-wise random Fourier features, the projector of the
  paper's bridge between VCReg and pairwise HSIC (docs/PAPER.md, "Why VCReg gives pairwise
  independence").
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from numbers import Integral

import torch
from torch import Tensor, nn

__all__ = [
    "PROJECTOR_KINDS",
    "MLPProjector",
    "RandomFeatureProjector",
    "canonical_projector_kind",
    "parse_spec",
]

# "random_features" (training config) and "random-features" (VCRegICA, `vcreg ica`) name the
# same projector: canonical_projector_kind is the one spelling rule
PROJECTOR_KINDS = ("mlp", "random_features", "identity")

_ACTIVATIONS = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "leaky_relu": nn.LeakyReLU,
    "silu": nn.SiLU,
    "identity": nn.Identity,
}


def canonical_projector_kind(kind: str) -> str:
    """The canonical name (one of ``PROJECTOR_KINDS``) of a projector kind: case-insensitive,
    ``-`` and ``_`` alike; ``ValueError`` listing the kinds otherwise."""
    key = kind.lower().replace("-", "_") if isinstance(kind, str) else kind
    if key not in PROJECTOR_KINDS:
        raise ValueError(f"unknown projector kind {kind!r}; choose one of {list(PROJECTOR_KINDS)}")
    return key


def parse_spec(spec: str | int | Sequence[int]) -> list[int]:
    """Parse a layer spec: ``"8192-8192-8192"``, ``2048``, or ``[8192, 8192]`` -> list of widths."""
    if isinstance(spec, bool) or not isinstance(spec, str | Integral | Sequence):
        raise TypeError(
            f"projector spec must be widths joined by '-' (e.g. '8192-8192-8192'), an int or a "
            f"list of ints, got {spec!r} ({type(spec).__name__})"
        )
    if isinstance(spec, str):
        parts = [p.strip() for p in spec.split("-")]
        try:
            widths = [int(p) for p in parts]
        except ValueError:
            raise ValueError(
                f"projector spec {spec!r} must be layer widths joined by '-', e.g. '8192-8192-8192'"
            ) from None
    elif isinstance(spec, Integral):
        widths = [int(spec)]
    else:
        if any(isinstance(w, bool) or not isinstance(w, Integral) for w in spec):
            raise TypeError(f"projector spec {spec!r} must list integer widths")
        widths = [int(w) for w in spec]
    if not widths or any(w < 1 for w in widths):
        raise ValueError(f"projector spec {spec!r} must list at least one positive width")
    return widths


def _check_input(x: Tensor, in_dim: int, cls: str) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{cls} expects a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2 or x.shape[1] != in_dim:
        raise ValueError(f"{cls} expects input of shape (batch, {in_dim}), got {tuple(x.shape)}")


def _unit_output_init(net: nn.Sequential) -> None:
    """Every Linear that follows an activation gets weights N(0, 1/(σ_act²·fan_in)), σ_act the
    std of the activation of a standard normal (ReLU: 0.584), so a ``BN → act → Linear`` block
    outputs features of std ≈ 1 over the batch (see ``MLPProjector(frozen=True)``)."""
    z = torch.distributions.Normal(0.0, 1.0).icdf(torch.linspace(1e-4, 1 - 1e-4, 20001))
    mods = list(net)
    for prev, mod in zip(mods, mods[1:], strict=False):
        if isinstance(mod, nn.Linear) and not isinstance(prev, (nn.Linear, nn.BatchNorm1d)):
            sigma = float(prev(z).std())
            nn.init.normal_(mod.weight, std=1.0 / (sigma * math.sqrt(mod.in_features)))
            if mod.bias is not None:
                nn.init.zeros_(mod.bias)


class MLPProjector(nn.Module):
    """VICReg projector: ``[Linear → BN → act] × (L−1) → Linear`` with widths from ``spec``.

    Args:
        in_dim: representation dimension ``d``.
        spec: output widths of the Linear layers, ``"8192-8192-8192"`` (official VICReg) or a list.
            The last entry is the embedding dimension ``k = out_dim``.
        batch_norm: BatchNorm1d after each hidden Linear.
        activation: one of relu, gelu, tanh, leaky_relu, silu, identity.
        bias: bias of the hidden Linear layers (official: True).
        last_bias: bias of the final Linear (official VICReg: False).
        frozen: keep the random initialisation: every parameter gets ``requires_grad=False``, so
            :meth:`trainable_parameters` (or ``filter(lambda p: p.requires_grad, ...)``) is empty.
            BatchNorm still normalises with batch statistics in ``train()`` mode. With
            ``batch_norm``, Linear layers after an activation are drawn with std
            1/(σ_act·√fan_in) (σ_act: the activation's std on N(0, 1); ReLU 0.584), so the
            output std is ≈ 1 = VICReg's hinge γ: with PyTorch's default init (std
            1/√(3·fan_in)) the BatchNorm pins a frozen projector's output std at ≈ 0.34 whatever
            the encoder does, and the variance hinge could never be met.
        seed: if given, the initialisation is drawn from this seed (reproducible, global RNG
            untouched); otherwise from the global torch RNG.
    """

    def __init__(
        self,
        in_dim: int,
        spec: str | int | Sequence[int] = "8192-8192-8192",
        batch_norm: bool = True,
        activation: str = "relu",
        bias: bool = True,
        frozen: bool = False,
        seed: int | None = None,
        last_bias: bool = False,
    ) -> None:
        super().__init__()
        if int(in_dim) < 1:
            raise ValueError(f"in_dim must be a positive integer, got {in_dim}")
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"unknown activation {activation!r}; choose one of {sorted(_ACTIVATIONS)}"
            )
        self.in_dim = int(in_dim)
        self.widths = parse_spec(spec)
        self.out_dim = self.widths[-1]
        self.frozen = bool(frozen)
        dims = [self.in_dim, *self.widths]
        with torch.random.fork_rng(devices=[], enabled=seed is not None):
            if seed is not None:
                torch.manual_seed(seed)
            layers: list[nn.Module] = []
            for i in range(len(dims) - 2):
                layers.append(nn.Linear(dims[i], dims[i + 1], bias=bias))
                if batch_norm:
                    layers.append(nn.BatchNorm1d(dims[i + 1]))
                layers.append(_ACTIVATIONS[activation]())
            layers.append(nn.Linear(dims[-2], dims[-1], bias=last_bias))
            self.net = nn.Sequential(*layers)
            if self.frozen and batch_norm:
                _unit_output_init(self.net)
        if self.frozen:
            self.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        _check_input(x, self.in_dim, type(self).__name__)
        return self.net(x)

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters that an optimizer should update (none when ``frozen``)."""
        return (p for p in self.parameters() if p.requires_grad)

    def extra_repr(self) -> str:
        spec = "-".join(map(str, self.widths))
        return f"in_dim={self.in_dim}, spec={spec!r}, frozen={self.frozen}"


def _batch_standardize(x: Tensor, eps: float) -> Tensor:
    """``(x − mean)/sqrt(var + eps)`` over the batch (dim 0), biased variance."""
    mean, var = x.mean(0), x.var(0, unbiased=False)
    return (x - mean) / torch.sqrt(var + eps)


class RandomFeatureProjector(nn.Module):
    """Element-wise random Fourier features ``g(x) = [φ(x_1) | φ(x_2) | … | φ(x_d)]``.

    ``φ(t) = a·cos(ω t + b)`` with ``m = features_per_dim`` frequencies ``ω`` drawn from the
    spectral measure of a shift-invariant kernel and phases ``b ~ U[0, 2π]``. The same ``(ω, b)``
    are used for every input coordinate (one kernel ``κ̂`` for all pairs, as in docs/PAPER.md). Output
    ``(n, d·m)`` is laid out in contiguous blocks: columns ``[i·m, (i+1)·m)`` are ``φ(x_i)``.

    Feature scale (``scale``):

    * ``"standardized"`` (default, for training): ``φ_k = (c_k − mean_k)/sqrt(var_k + 1e-5)``
      with ``c_k = cos(ω_k t + b_k)`` and batch mean/variance per output column (a BatchNorm
      without affine parameters or running statistics, so train and eval use the same rule).
      Every embedding dimension whose cosine varies over the batch (variance ≫ 1e-5) has unit
      std, so VICReg's variance hinge ``std ≥ γ = 1`` is met by construction, and its
      covariance term acts on the random features' correlations. Per
      block this is HSIC under ``κ'(s, t) = Σ_k c_k(s)c_k(t)/var_k`` (weights set by each
      variable's marginal only), so the bridge argument still applies.
    * ``"unit"``: ``a = sqrt(2)``. Each feature has variance at most 1, reached only when
      ``ωt + b`` spreads over many periods; on trained MNIST-1D representations the mean
      embedding std is 0.3–0.5 and no dimension reaches the hinge (measured: docs/sections/
      reproduce.md), so the variance term never vanishes.
    * ``"kernel"``: ``a = sqrt(2/m)``, the kernel approximation ``φ(s)ᵀφ(t) → κ(s, t)`` as
      ``m → ∞`` (Rahimi & Recht 2007) — the scale of the bridge identity (C1) and of ICA. It
      differs from ``"unit"`` by the constant ``sqrt(m)``: every covariance block, hence the
      bridge identity, holds for both up to the factor ``m``. Each feature's std is at most
      ``1/sqrt(m)``, so the hinge dominates VICReg as ``m`` grows (docs/PAPER.md, "Practical
      conditions").

    ``standardize=True`` first standardizes each input coordinate with its batch mean and
    (biased) std, no affine parameters — ``(x − mean)/sqrt(var + 1e-5)``, batch norm without
    affine and without running statistics, so train and eval use the same rule — so that
    ``bandwidth`` is in units of the representation's own scale instead of absolute units.

    Kernels (``σ = bandwidth``): ``"gaussian"`` ``exp(−(s−t)²/(2σ²))``, ω ~ N(0, 1/σ²);
    ``"laplacian"`` ``exp(−|s−t|/σ)``, ω ~ Cauchy(0, 1/σ).
    Frequencies and phases are buffers drawn once from ``seed`` (deterministic, no gradient,
    follow ``.to(device)``). Computation is in float32 at least.
    """

    SCALES = ("standardized", "unit", "kernel")
    STANDARDIZE_EPS = 1e-5

    def __init__(
        self,
        in_dim: int,
        features_per_dim: int = 64,
        kernel: str = "gaussian",
        bandwidth: float = 1.0,
        seed: int = 0,
        scale: str = "standardized",
        standardize: bool = False,
    ) -> None:
        super().__init__()
        if scale not in self.SCALES:
            raise ValueError(f"unknown scale {scale!r}; choose 'standardized', 'unit' or 'kernel'")
        if not isinstance(standardize, bool):
            raise TypeError(f"standardize must be True or False, got {standardize!r}")
        if int(in_dim) < 1 or int(features_per_dim) < 1:
            raise ValueError(
                f"in_dim and features_per_dim must be positive, got {in_dim}, {features_per_dim}"
            )
        if not (bandwidth > 0 and math.isfinite(bandwidth)):
            raise ValueError(f"bandwidth must be a positive finite number, got {bandwidth}")
        if kernel not in ("gaussian", "laplacian"):
            raise ValueError(f"unknown kernel {kernel!r}; choose 'gaussian' or 'laplacian'")
        self.in_dim = int(in_dim)
        self.features_per_dim = m = int(features_per_dim)
        self.kernel = kernel
        self.bandwidth = float(bandwidth)
        self.seed = int(seed)
        self.scale = scale
        self.standardize = standardize
        # "standardized" divides by the batch std instead of a constant amplitude
        self.amplitude = {"kernel": math.sqrt(2.0 / m), "unit": math.sqrt(2.0)}.get(scale, 1.0)
        self.out_dim = self.in_dim * m
        gen = torch.Generator().manual_seed(self.seed)
        if kernel == "gaussian":
            omega = torch.randn(m, generator=gen, dtype=torch.float64) / self.bandwidth
        else:
            u = torch.rand(m, generator=gen, dtype=torch.float64)
            omega = torch.tan(math.pi * (u - 0.5)) / self.bandwidth
        phase = 2 * math.pi * torch.rand(m, generator=gen, dtype=torch.float64)
        self.register_buffer("omega", omega.float())
        self.register_buffer("phase", phase.float())

    def kernel_fn(self, s: Tensor, t: Tensor) -> Tensor:
        """The exact kernel ``κ(s, t)`` that ``φ(s)ᵀφ(t)`` approximates (element-wise)."""
        diff = s - t
        if self.kernel == "gaussian":
            return torch.exp(-(diff**2) / (2 * self.bandwidth**2))
        return torch.exp(-diff.abs() / self.bandwidth)

    def feature_map(self, x: Tensor) -> Tensor:
        """``φ`` applied to every coordinate: ``(n, d) -> (n, d, m)``."""
        _check_input(x, self.in_dim, type(self).__name__)
        dtype = torch.promote_types(x.dtype, torch.float32)
        x = x.to(dtype)
        if self.standardize or self.scale == "standardized":
            if x.shape[0] < 2:
                raise ValueError(
                    f"standardize=True and scale='standardized' need a batch of at least 2 "
                    f"samples, got {x.shape[0]}"
                )
        if self.standardize:
            x = _batch_standardize(x, self.STANDARDIZE_EPS)
        arg = x.unsqueeze(-1) * self.omega.to(dtype) + self.phase.to(dtype)
        if self.scale == "standardized":
            return _batch_standardize(torch.cos(arg), self.STANDARDIZE_EPS)
        return self.amplitude * torch.cos(arg)

    def forward(self, x: Tensor) -> Tensor:
        return self.feature_map(x).reshape(x.shape[0], self.out_dim)

    def extra_repr(self) -> str:
        return (
            f"in_dim={self.in_dim}, features_per_dim={self.features_per_dim}, "
            f"kernel={self.kernel!r}, bandwidth={self.bandwidth}, seed={self.seed}, "
            f"scale={self.scale!r}, standardize={self.standardize}"
        )
