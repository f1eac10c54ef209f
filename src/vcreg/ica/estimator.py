"""The scikit-learn estimator :class:`VCRegICA` (FastICA's interface; method in :mod:`vcreg.ica`)."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from numbers import Integral, Real
from typing import Any

import numpy as np
import torch
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    TransformerMixin,
    _fit_context,
)
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array, check_random_state
from sklearn.utils._param_validation import Hidden, Interval, Options, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data

from vcreg._device import resolve_device
from vcreg.ica.contrast import FEATURE_SCALES, OBJECTIVES, PROJECTORS, whiten_unit_variance
from vcreg.ica.diagnostics import diagnose
from vcreg.ica.problems import random_rotation
from vcreg.ica.solver import OPTIMIZERS, SolverConfig, SolverResult, optimise

__all__ = ["VCRegICA"]

_POSITIVE_INT = Interval(Integral, 1, None, closed="left")
_NON_NEGATIVE = Interval(Real, 0, None, closed="left")
# Default contrast (benchmarks/bench_ica.py, docs/sections/ica.md): 64 random features per
# output over four bandwidths where the cost n·k² allows (small samples need the stronger
# contrast; d = 20, n = 1000 included), else 16 features of one bandwidth (at d = 10,
# n = 10,000 as accurate, 4x cheaper).
_RICH_WIDTH, _RICH_SCALES, _LEAN_WIDTH = 64, (0.5, 1.0, 2.0, 4.0), 16
# standardized without a variance floor up-weights the near-linear low-frequency features: one
# octave lower is better (bench_ica_ablation.py --d 5, variant wide-scales -> default: median
# Amari Student-t(3) 0.034 -> 0.032, Laplace 0.028 -> 0.028, uniform 0.022 -> 0.020, bimodal
# 0.019 -> 0.017)
_RICH_SCALES_STANDARDIZED = (0.25, 0.5, 1.0, 2.0)
_RICH_BUDGET = 4e5  # n·k² up to which the rich contrast is the default
_MIN_MULTI_WIDTH = 48  # fewer features split over four bandwidths measured worse than one
# the lean contrast's sweeps use 16 features of one bandwidth; the rich one's sweeps its own
# features (d = 10, n = 1000 Laplace: Amari 0.061 -> 0.045)
_SWEEP_WIDTH = 16
# fewer samples than this per rotation parameter k(k-1)/2: optimizer="auto" is the sweeps only
# (when they see every sample), a polish is stopped early by the contrast of held-out samples
# (solver.holdout_iterations), and standardized features get a variance floor
_HOLDOUT_SAMPLES_PER_PARAM = 50
# λ of the standardized features there (bench_ica_ablation.py, d = 20, n = 1000 uniform, 10
# problems: median Amari 0.151 (2 problems) with λ = 0, 0.188 with 0.3, 0.056 with 1; d = 10
# Student-t(3) 0.030 / 0.032 / 0.034); with many samples λ = 0 is better (d = 10, n = 10,000
# Student-t(3): 0.009 with 0, 0.013 with 1)
_FEW_SAMPLES_VARIANCE_FLOOR = 1.0


class VCRegICA(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Linear ICA by minimising VCReg's covariance term through a frozen random projector.

    Drop-in for :class:`sklearn.decomposition.FastICA` (``fit``, ``transform``,
    ``inverse_transform``, ``components_``, ``mixing_``, ``mean_``, ``whitening_``, ``n_iter_``).
    The method and its conventions are described in the module docstring: unit-variance PCA
    whitening, orthogonal unmixing ``W = Q₀·expm(A − Aᵀ)``, contrast = pairwise blocks of the
    covariance of ``g(X_w W)`` (debiased pairwise HSIC under the random-feature kernel), Jacobi
    sweeps of Givens-angle grid searches followed by a quasi-Newton (BFGS) polish.

    Parameters:
        n_components: number of sources ``k`` (default: number of features).
        projector: ``"random-features"`` (element-wise random Fourier features,
            :class:`vcreg.projectors.RandomFeatureProjector`, Gaussian kernel) or ``"mlp"``
            (frozen random ReLU MLP, :class:`vcreg.projectors.MLPProjector`, no batch-norm).
        width: random features per output of the contrast (random-features; default: 64 when
            ``n_samples·k² ≤ 4e5``, else 16 — the cost of one evaluation grows as ``n·(k·width)²``)
            or hidden/output width of the MLP (default 512).
        depth: number of Linear layers of the MLP projector (ignored for random features).
        bandwidth: Gaussian-kernel bandwidth(s) in units of the whitened (unit-variance) data; a
            sequence is a continuation schedule, optimised in order (default 1.0).
        kernel_scales: the random features are split evenly over the Gaussian bandwidths
            ``bandwidth·s`` for ``s`` in ``kernel_scales`` (one feature map of the average
            kernel; several bandwidths at once are a stronger contrast at small n). Default:
            ``(0.5, 1, 2, 4)`` when ``width ≥ 48`` (``(0.25, 0.5, 1, 2)`` for standardized
            features without a variance floor, see ``scale``), else ``(1,)``. The Jacobi sweeps use the
            same features when they span several bandwidths, else 16 features of ``bandwidth``.
        scale: ``"standardized"`` (default: each random feature centred and divided by
            ``sqrt(σ² + λ/m)``, ``σ²`` its sample variance — the unit variance VICReg's variance
            term gives an embedding, so the contrast's blocks are squared correlations — with
            ``λ = 1`` when there are fewer than 50 samples per rotation parameter
            ``k(k−1)/2``, else 0; :class:`~vcreg.ica.contrast.RandomFeatures`) or ``"kernel"``
            (the kernel amplitude ``sqrt(2/m)``: the blocks are covariances, the contrast the
            random-feature HSIC; the method before this option). Ignored by the MLP projector.
            Measured in docs/sections/ica.md (d = 10, n = 10,000, Student-t(3): median Amari
            0.014 kernel, 0.009 standardized; d = 20, n = 1000 uniform: 0.188 with λ = 0.3,
            0.056 with λ = 1).
        objective: ``"pairwise"`` (cross-output blocks only), ``"covariance"`` (full ``c(g(Y))``)
            or ``"auto"`` (pairwise for random features, covariance for the MLP).
        whiten: ``"unit-variance"`` (PCA whitening) or ``False`` (X is already white: only
            centred, and ``n_components`` must equal the number of features).
        optimizer: ``"jacobi+lbfgs"`` (Jacobi sweeps of global Givens-angle searches, then a
            quasi-Newton polish of the total contrast on all samples; with fewer than 50 samples
            per rotation parameter ``k(k−1)/2`` the polish is stopped early: it runs at most as
            many iterations as, fitted to a random 3/4 of the samples, kept lowering the
            contrast of the other quarter — 0 leaves the sweeps' result, ``polished_ = False``),
            ``"jacobi"`` (sweeps only), ``"lbfgs"`` (the quasi-Newton polish from the random
            rotation, the pre-Jacobi method) or ``"auto"`` (default: for the pairwise objective
            ``"jacobi"`` with fewer than 50 samples per rotation parameter when the sweeps see
            every sample (``n_samples ≤ max_warmup_samples``), else ``"jacobi+lbfgs"``; for the
            covariance objective ``"lbfgs"``: the sweeps need the pairwise blocks). With few
            samples per parameter the polish of the total contrast fits the noise of its
            ``k(k−1)/2`` block estimates, while the sweeps minimise each pair's own block
            (d = 20, n = 1000, Laplace seed 0: Amari 0.33 polished, 0.030 sweeps only). The
            polish is dense BFGS with Armijo backtracking in the ``k(k−1)/2`` rotation
            coordinates (the names are kept from its L-BFGS days).
        n_angles: Givens angles per pair in ``[0, π/2)`` scored in each Jacobi step; the rotation
            applied is the minimum of their trigonometric interpolant (default 8).
        max_sweeps: maximum Jacobi sweeps per bandwidth stage.
        angle_tol: stop the sweeps when no rotation of a sweep exceeds ``angle_tol`` radians
            (default 0.1 ≈ 5.7°; stopping at 0.01 instead measured the same Amari, at more cost,
            also when the sweeps are the last step).
        max_iter: maximum quasi-Newton iterations per bandwidth stage.
        tol: stop a stage when an iteration lowers the loss by less than ``tol`` relative to its
            starting value (default 1e-4), or the line search finds no decrease.
        n_init: random initial rotations (restarts); the one with the lowest final loss is kept
            (the loss is a noisy estimate, so the lowest loss is not always the best unmixing).
            With ``n_init ≥ 2`` ``diagnostics_["restart_distance"]`` says how far the nearest
            other restart ended.
        n_restarts: deprecated alias of ``n_init`` (``FutureWarning``).
        max_warmup_samples: the Jacobi sweeps, and the polish stages before the last, use at
            most this many samples (a random subset; ``None`` = all). The last polish stage
            always uses every sample.
        device: torch device, resolved by :func:`vcreg._device.resolve_device` (``None`` or
            ``"auto"``: CUDA when available, else the CPU; an unavailable or unknown device is
            a ``ValueError``).
        random_state: seed for the projector, the initial rotations and the warm-up subset.

    Attributes:
        components_ (k, p): unmixing matrix, ``S = (X − mean_) @ components_.T``.
        mixing_ (p, k): pseudo-inverse of ``components_``.
        mean_ (p,), whitening_ (k, p), unmixing_ (k, k) orthogonal: ``components_ = unmixing_ @
        whitening_``.
        n_iter_: quasi-Newton iterations of the kept restart (all stages; Jacobi sweeps for
        ``optimizer="jacobi"``). ``n_sweeps_``: its Jacobi sweeps (0 for optimizer="lbfgs").
        ``loss_``: its final contrast value. ``converged_``: whether its last stage's sweeps
        stopped before ``max_sweeps`` and its polish on ``tol`` (not on ``max_iter``).
        ``polished_``: whether its last polish was kept (see ``optimizer``).
        diagnostics_ (dict): quality of the kept unmixing computed without ground truth
        (:func:`vcreg.ica.diagnostics.diagnose`): ``fixed_point_distance``,
        ``predicted_amari``, ``negentropy`` (per source), ``restart_distance``, the
        ``thresholds``, ``reliable`` and the ``reasons``. When ``reliable`` is false the fit
        emits a :class:`~sklearn.exceptions.ConvergenceWarning` naming the reasons.
    """

    # Declarative constraints, checked by scikit-learn's parameter validation at fit time;
    # the rules that couple several parameters are in _resolve_params.
    _parameter_constraints: dict = {
        "n_components": [_POSITIVE_INT, None],
        "projector": [StrOptions(set(PROJECTORS))],
        "width": [_POSITIVE_INT, None],
        "depth": [_POSITIVE_INT],
        "bandwidth": [Interval(Real, 0, None, closed="neither"), "array-like"],
        "kernel_scales": ["array-like", None],
        "scale": [StrOptions(set(FEATURE_SCALES))],
        "objective": [StrOptions(set(OBJECTIVES))],
        "whiten": [StrOptions({"unit-variance"}), Options(bool, {False})],
        "optimizer": [StrOptions(set(OPTIMIZERS))],
        "n_angles": [_POSITIVE_INT],
        "max_sweeps": [_POSITIVE_INT],
        "angle_tol": [_NON_NEGATIVE],
        "max_iter": [_POSITIVE_INT],
        "tol": [_NON_NEGATIVE],
        "n_init": [_POSITIVE_INT],
        "n_restarts": [_POSITIVE_INT, Hidden(StrOptions({"deprecated"}))],
        "max_warmup_samples": [Interval(Integral, 2, None, closed="left"), None],
        "device": [str, torch.device, None],
        "random_state": ["random_state"],
    }

    def __init__(
        self,
        n_components: int | None = None,
        *,
        projector: str = "random-features",
        width: int | None = None,
        depth: int = 2,
        bandwidth: float | Sequence[float] = 1.0,
        kernel_scales: Sequence[float] | None = None,
        scale: str = "standardized",
        objective: str = "auto",
        whiten: str | bool = "unit-variance",
        optimizer: str = "auto",
        n_angles: int = 8,
        max_sweeps: int = 15,
        angle_tol: float = 0.1,
        max_iter: int = 200,
        tol: float = 1e-4,
        n_init: int = 1,
        n_restarts: int | str = "deprecated",
        max_warmup_samples: int | None = 2000,
        device: str | None = None,
        random_state: int | np.random.RandomState | None = None,
    ) -> None:
        self.n_components = n_components
        self.projector = projector
        self.width = width
        self.depth = depth
        self.bandwidth = bandwidth
        self.kernel_scales = kernel_scales
        self.scale = scale
        self.objective = objective
        self.whiten = whiten
        self.optimizer = optimizer
        self.n_angles = n_angles
        self.max_sweeps = max_sweeps
        self.angle_tol = angle_tol
        self.max_iter = max_iter
        self.tol = tol
        self.n_init = n_init
        self.n_restarts = n_restarts
        self.max_warmup_samples = max_warmup_samples
        self.device = device
        self.random_state = random_state

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    # ------------------------------------------------------------------ parameter validation
    def _resolve_params(self, n_samples: int, n_features: int) -> tuple[int, SolverConfig]:
        """The rules coupling several parameters (the single ones are in
        ``_parameter_constraints``); returns ``k`` and the resolved solver settings."""
        names = ("n_components", "width", "depth", "n_angles", "max_sweeps", "max_iter", "n_init")
        for name in names:
            if isinstance(getattr(self, name), bool):  # bool passes sklearn's Integral interval
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        k = n_features if self.n_components is None else int(self.n_components)
        if k > n_features:
            raise ValueError(
                f"n_components={k} must be <= n_features={n_features} (ICA cannot recover more "
                "sources than observed mixtures)"
            )
        if self.whiten is False and k != n_features:
            raise ValueError("whiten=False requires n_components == n_features")
        few = n_samples < _HOLDOUT_SAMPLES_PER_PARAM * k * (k - 1) / 2
        objective, optimizer = self._resolve_method(n_samples, few)
        width, scales = self._resolve_features(n_samples, k, few)
        multi = len(scales) > 1 or width >= _MIN_MULTI_WIDTH
        cfg = SolverConfig(
            projector=self.projector,
            width=int(width),
            depth=int(self.depth),
            bandwidths=_bandwidths(self.bandwidth),
            kernel_scales=scales,
            sweep_width=int(width) if multi else _SWEEP_WIDTH,
            sweep_scales=scales if multi else (1.0,),
            holdout_check=few and optimizer == "jacobi+lbfgs",
            standardize=self.scale == "standardized" and self.projector == "random-features",
            variance_floor=_FEW_SAMPLES_VARIANCE_FLOOR if few else 0.0,
            objective=objective,
            optimizer=optimizer,
            n_angles=int(self.n_angles),
            max_sweeps=int(self.max_sweeps),
            angle_tol=float(self.angle_tol),
            max_iter=int(self.max_iter),
            tol=float(self.tol),
        )
        return k, cfg

    def _resolve_method(self, n_samples: int, few: bool) -> tuple[str, str]:
        """``objective`` and ``optimizer`` with ``"auto"`` resolved (``few``: fewer than 50
        samples per rotation parameter); raises on combinations that cannot work."""
        objective = self.objective
        if objective == "auto":
            objective = "pairwise" if self.projector == "random-features" else "covariance"
        if objective == "pairwise" and self.projector != "random-features":
            raise ValueError(
                "objective='pairwise' needs projector='random-features' (the MLP projector mixes "
                "outputs, so its covariance has no per-output blocks); use objective='covariance'"
            )
        optimizer = self.optimizer
        if optimizer == "auto" and objective != "pairwise":
            optimizer = "lbfgs"
        elif optimizer == "auto":
            # sweeps only where they see every sample and a polish would fit noise
            cap = self.max_warmup_samples
            optimizer = "jacobi" if few and (cap is None or n_samples <= cap) else "jacobi+lbfgs"
        if optimizer != "lbfgs" and objective != "pairwise":
            raise ValueError(
                f"optimizer={optimizer!r} needs objective='pairwise' (random-feature projector); "
                "use optimizer='lbfgs'"
            )
        return objective, optimizer

    def _resolve_features(self, n_samples: int, k: int, few: bool) -> tuple[int, tuple[float, ...]]:
        """Features per output and bandwidth multipliers of the contrast, defaults resolved."""
        width = self.width
        if width is None:
            rich = n_samples * k**2 <= _RICH_BUDGET
            if self.projector != "random-features":
                width = 512
            else:
                width = _RICH_WIDTH if rich else _LEAN_WIDTH
        scales = self.kernel_scales
        if scales is None:
            lower = self.scale == "standardized" and not few
            rich_scales = _RICH_SCALES_STANDARDIZED if lower else _RICH_SCALES
            scales = rich_scales if width >= _MIN_MULTI_WIDTH else (1.0,)
        return int(width), _bandwidths(scales, "kernel_scales")

    # ------------------------------------------------------------------------------ fitting
    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X: Any, y: Any = None) -> VCRegICA:
        """Fit the unmixing matrix on ``X`` (n_samples, n_features); ``y`` is ignored."""
        self._fit(X)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X: Any, y: Any = None) -> np.ndarray:
        """Fit and return the estimated sources (n_samples, n_components)."""
        Xv = self._fit(X)
        return self._transform_validated(Xv)

    def _fit(self, X: Any) -> np.ndarray:
        X = validate_data(
            self, X, dtype=[np.float64, np.float32], ensure_min_samples=2, ensure_all_finite=True
        )
        n, p = X.shape
        k, cfg = self._resolve_params(n, p)
        if n <= k:
            raise ValueError(
                f"VCRegICA needs more samples than components to whiten, got n_samples={n} and "
                f"n_components={k}"
            )
        rng = check_random_state(self.random_state)
        if self.whiten == "unit-variance":
            Xw, K, mean = whiten_unit_variance(X, k)
        else:
            mean = X.astype(np.float64).mean(axis=0)
            Xw, K = X.astype(np.float64) - mean, np.eye(p)
        device = resolve_device(self.device)
        # the contrast is a smooth average: float32 is accurate and 2x faster
        x_full = torch.as_tensor(Xw, dtype=torch.float32, device=device)
        warm_idx = None
        if self.max_warmup_samples is not None and n > self.max_warmup_samples:
            warm_idx = torch.as_tensor(
                np.sort(rng.choice(n, self.max_warmup_samples, replace=False)), device=device
            )
        seeds = rng.randint(0, 2**31 - 1, size=len(cfg.bandwidths))
        results = [
            optimise(x_full, warm_idx, random_rotation(k, rng), seeds, cfg)
            for _ in range(self._n_init())
        ]
        best = min(results, key=lambda r: r.loss)
        self._store(best, K, mean, X.dtype)
        others = [r.w for r in results if r is not best]
        self.diagnostics_ = diagnose(Xw, best.w, others)
        if not best.converged:
            self._warn_not_converged(cfg.optimizer)
        if not self.diagnostics_["reliable"]:
            warnings.warn(
                "VCRegICA: the unmixing looks unreliable (judged without ground truth, "
                "diagnostics_): " + "; ".join(self.diagnostics_["reasons"]),
                ConvergenceWarning,
                stacklevel=4,
            )
        return X

    def _n_init(self) -> int:
        if isinstance(self.n_restarts, str):
            return int(self.n_init)
        warnings.warn(
            "VCRegICA(n_restarts=...) is deprecated; use n_init (the scikit-learn name)",
            FutureWarning,
            stacklevel=5,
        )
        if isinstance(self.n_restarts, bool):
            raise ValueError(f"n_restarts must be a positive integer, got {self.n_restarts!r}")
        return int(self.n_restarts)

    def _store(self, best: SolverResult, K: np.ndarray, mean: np.ndarray, dtype) -> None:
        components = (K @ best.w).T  # (k, p) in float64
        self.mean_ = mean.astype(dtype)
        self.whitening_ = K.T.astype(dtype)
        self.unmixing_ = best.w.T.astype(dtype)
        self.components_ = components.astype(dtype)
        self.mixing_ = np.linalg.pinv(components).astype(dtype)
        self.n_iter_ = int(best.n_iter)
        self.n_sweeps_ = int(best.n_sweeps)
        self.loss_ = float(best.loss)
        self.converged_ = bool(best.converged)
        self.polished_ = bool(best.polished)

    def _warn_not_converged(self, optimizer: str) -> None:
        limits = []
        if optimizer != "lbfgs":
            limits.append(f"max_sweeps={self.max_sweeps} Jacobi sweeps")
        if optimizer != "jacobi":
            limits.append(f"max_iter={self.max_iter} quasi-Newton iterations (tol={self.tol})")
        warnings.warn(
            f"VCRegICA did not converge within {' / '.join(limits)}; increase them.",
            ConvergenceWarning,
            stacklevel=5,
        )

    # ---------------------------------------------------------------------------- transforms
    def _transform_validated(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.mean_) @ self.components_.T).astype(X.dtype, copy=False)

    def transform(self, X: Any) -> np.ndarray:
        """Estimated sources ``(X − mean_) @ components_.T`` (n_samples, n_components)."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return self._transform_validated(X)

    def inverse_transform(self, X: Any) -> np.ndarray:
        """Map sources back to the data space: ``S @ mixing_.T + mean_``."""
        check_is_fitted(self)
        S = check_array(X, dtype=[np.float64, np.float32])
        if S.shape[1] != self.components_.shape[0]:
            raise ValueError(
                f"X has {S.shape[1]} components, but VCRegICA was fitted with "
                f"{self.components_.shape[0]}"
            )
        return (S @ self.mixing_.T + self.mean_).astype(S.dtype, copy=False)

    @property
    def _n_features_out(self) -> int:
        return self.components_.shape[0]


def _bandwidths(bandwidth: Any, name: str = "bandwidth") -> tuple[float, ...]:
    """``bandwidth`` as a non-empty tuple of positive finite floats (a number or a sequence)."""
    values = [bandwidth] if isinstance(bandwidth, Real) else None
    if values is None and isinstance(bandwidth, Sequence | np.ndarray) and len(bandwidth):
        values = list(np.asarray(bandwidth, dtype=object).ravel())
    if not values or any(
        isinstance(b, bool) or not isinstance(b, Real) or not (b > 0 and math.isfinite(b))
        for b in values
    ):
        raise ValueError(
            f"{name} must be a positive number or a non-empty sequence of them, got {bandwidth!r}"
        )
    return tuple(float(b) for b in values)
