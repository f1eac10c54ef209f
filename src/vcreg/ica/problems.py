"""Linear ICA benchmark problems: independent source families and random mixing matrices."""

from __future__ import annotations

import numpy as np
from scipy import signal

__all__ = [
    "BANK_FAMILIES",
    "SOURCE_FAMILIES",
    "make_ica_problem",
    "random_rotation",
    "sample_sources",
]

SOURCE_FAMILIES = (
    "laplace",
    "uniform",
    "student-t3",
    "exponential",
    "bimodal",
    "mixed",
    "signals",
    "binary",
    "sines",
    "student-t",
    "sparse",
    "near-gaussian",
)
# the source bank of benchmarks/bench_ica_bank.py (docs/sections/ica.md says how it was chosen):
# sub-Gaussian (uniform, binary, sines), super-Gaussian (laplace, student-t with 3-10 dof,
# sparse), mixed, and near-Gaussian hard cases
BANK_FAMILIES = (
    "uniform",
    "binary",
    "sines",
    "laplace",
    "student-t",
    "sparse",
    "mixed",
    "near-gaussian",
)


def random_rotation(k: int, rng: np.random.RandomState) -> np.ndarray:
    """Haar-distributed orthogonal matrix (QR of a Gaussian matrix with sign correction)."""
    q, r = np.linalg.qr(rng.standard_normal((k, k)))
    return q * np.sign(np.diag(r))


def sample_sources(family: str, n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """``(n, k)`` independent sources of one of :data:`SOURCE_FAMILIES` (not standardised)."""
    if family == "laplace":
        return rng.laplace(size=(n, k))
    if family == "uniform":
        return rng.uniform(-1.0, 1.0, size=(n, k))
    if family == "student-t3":
        return rng.standard_t(3, size=(n, k))
    if family == "exponential":
        return rng.exponential(size=(n, k))
    if family == "bimodal":  # symmetric two-Gaussian mixture: sub-Gaussian (kurtosis < 0)
        return rng.normal(size=(n, k)) * 0.5 + rng.choice([-1.0, 1.0], size=(n, k))
    if family == "mixed":  # cycle through sub- and super-Gaussian sources
        cycle = ("uniform", "laplace", "bimodal", "exponential", "student-t3")
        cols = [sample_sources(cycle[j % len(cycle)], n, 1, rng) for j in range(k)]
        return np.hstack(cols)
    if family == "signals":
        # scikit-learn's blind-source-separation example (sin, square, sawtooth + 0.2 noise on
        # t ∈ [0, 8]); for k > 3 the three shapes repeat at other frequencies and phases.
        t = np.linspace(0, 8, n)
        cols = []
        for j in range(k):
            f = (2.0, 3.0, 1.0)[j % 3] * (1.0 + 0.37 * (j // 3))
            ph = 0.0 if j < 3 else rng.uniform(0, 2 * np.pi)
            kind = j % 3
            if kind == 0:
                cols.append(np.sin(f * t + ph))
            elif kind == 1:
                cols.append(np.sign(np.sin(f * t + ph)))
            else:
                cols.append(signal.sawtooth(2 * np.pi * (t + ph) / (2 * np.pi / f)))
        S = np.stack(cols, axis=1)
        return S + 0.2 * rng.normal(size=S.shape)
    if family in ("binary", "sines", "student-t", "sparse", "near-gaussian"):
        return _bank_sources(family, n, k, rng)
    raise ValueError(f"unknown source family {family!r}; choose one of {SOURCE_FAMILIES}")


def _bank_sources(family: str, n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    if family == "binary":  # ±1 coin flips: the most sub-Gaussian law (kurtosis −2)
        return rng.choice([-1.0, 1.0], size=(n, k))
    if family == "sines":  # sin(2π f t + φ), a different random frequency per source (arcsine law)
        t = np.arange(n)[:, None] / n
        f = rng.uniform(2.0, 40.0, size=k)
        return np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi, size=k))
    if family == "student-t":  # heavy tails, 3-10 degrees of freedom per source
        return rng.standard_t(rng.uniform(3.0, 10.0, size=k), size=(n, k))
    if family == "sparse":  # Bernoulli(0.1)-Gaussian: mostly exact zeros (kurtosis 27)
        return rng.normal(size=(n, k)) * (rng.random((n, k)) < 0.1)
    # near-gaussian: generalized Gaussian exp(−|x|^β), β in [1.6, 2.4] per source (excess
    # kurtosis between about +0.5 and −0.4; β = 2 is Gaussian)
    beta = rng.uniform(1.6, 2.4, size=k)
    return rng.choice([-1.0, 1.0], size=(n, k)) * rng.gamma(1.0 / beta, size=(n, k)) ** (1.0 / beta)


def make_ica_problem(
    family: str,
    n_samples: int,
    n_sources: int,
    conditioning: str = "well",
    random_state: int | None = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Linear ICA benchmark problem ``X = S·Aᵀ``; returns ``(S, A, X)``.

    Sources ``S`` (n, k) of one of :data:`SOURCE_FAMILIES` are standardised (zero mean, unit
    variance). ``A = U·diag(s)·Vᵀ`` with Haar-random ``U, V``; ``conditioning="well"`` has
    singular values log-spaced in [1, 0.5] (condition number 2), ``"ill"`` in [1, 1e-3]
    (condition number 1000).
    """
    if conditioning not in ("well", "ill"):
        raise ValueError(f"conditioning must be 'well' or 'ill', got {conditioning!r}")
    if n_samples < 2 or n_sources < 1:
        raise ValueError(f"need n_samples >= 2 and n_sources >= 1, got {n_samples}, {n_sources}")
    rng = np.random.default_rng(random_state)
    S = sample_sources(family, n_samples, n_sources, rng)
    S = (S - S.mean(axis=0)) / S.std(axis=0, ddof=1)
    rs = np.random.RandomState(rng.integers(2**31 - 1))
    U, V = random_rotation(n_sources, rs), random_rotation(n_sources, rs)
    low = 0.5 if conditioning == "well" else 1e-3
    s = np.logspace(0, np.log10(low), n_sources) if n_sources > 1 else np.ones(1)
    A = (U * s) @ V.T
    return S, A, S @ A.T
