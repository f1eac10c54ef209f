"""Independent Component Analysis with VCReg (claim C5 of Mialon, Balestriero & LeCun).

Method (:class:`VCRegICA`):

1. **Whiten** ``X`` (n, p): centre, project on the top ``k = n_components`` principal axes and
   scale to unit variance, ``X_w = (X − mean) K`` with ``Cov(X_w) = I`` (unbiased, ``n − 1``
   normalisation; ``whiten="unit-variance"`` as in scikit-learn's FastICA).
2. **Unmix with an orthogonal matrix**: ``Y = X_w W`` with ``W = Q₀·expm(A − Aᵀ)`` (``Q₀`` a random
   rotation, ``A`` the free parameter). Every orthogonal ``W`` keeps ``Cov(Y) = I`` exactly, so
   VCReg's variance term and the off-diagonal covariance of ``Y`` itself are constant: the only
   thing left to minimise is the covariance term of the *projected* outputs ``Z = g(Y)``, with
   ``g`` a frozen random projector. This removes the collapse/scale degeneracy without tuning
   ``μ``, and keeps the optimisation on a smooth manifold (no penalty weights, no retraction).
3. **Objective** (``objective="pairwise"``, default for the random-feature projector): the
   off-diagonal *blocks* of VCReg's covariance term,
   ``L(W) = Σ_{i≠j} ‖Cov(φ(Y_i), φ(Y_j))‖_F² / (k(k−1))``, which by the paper's bridge equals the
   mean pairwise HSIC of the outputs under the random-feature kernel κ̂ (normalised by
   ``1/(n−1)²``). The full covariance term ``c(g(Y))`` (``objective="covariance"``, via
   :func:`vcreg.functional.covariance_loss`) adds the within-block terms, which depend only on
   each output's marginal; measured: for sub-Gaussian sources (uniform, bimodal) they dominate and
   are *minimised by mixtures*, so ``"covariance"`` fails there while ``"pairwise"`` succeeds
   (see ``docs/sections/ica.md``). For linear mixtures pairwise independence of the outputs
   suffices to identify the sources (Comon 1994).
4. **Finite-sample debiasing**: the same-sample terms of ``‖Σ_a z̃_i(a) z̃_j(a)ᵀ‖²`` (the Gram
   form of the fast path) are removed; their ``O(1/n)`` bias depends on the marginals and, left
   in, makes small samples prefer mixtures.
5. **Optimisation** (``optimizer="jacobi+lbfgs"``, default): the contrast has spurious,
   fully-mixed local minima (measured, ``docs/sections/ica.md``: for sub-Gaussian sources at
   ``k ≥ 5`` L-BFGS from a random rotation usually ends in one). First, RADICAL-style Jacobi
   sweeps (Learned-Miller & Fisher 2003, :func:`vcreg.ica.solver.jacobi_sweeps`) on at most
   ``max_warmup_samples`` samples: for every pair of outputs a grid of ``n_angles`` Givens angles
   in ``[0, π/2)`` is scored at once (batched over angles) by the pair's own block
   ``‖Cov(φ(y_i), φ(y_j))‖²`` (debiased), and the best angle is applied; sweeps stop when no
   rotation exceeds ``angle_tol``. This reaches the basin of the true unmixing, where the total
   contrast is lower. Then a full-batch quasi-Newton polish (dense BFGS, Armijo) from there, on
   all samples; the loss is divided by its absolute value at the start so that ``tol`` is a
   *relative* change. ``bandwidth`` is in units of the whitened (unit-variance) data, so it
   adapts to the data's scale; a sequence of bandwidths is optimised in order (continuation).

Metrics: :func:`amari_distance` (classic normalised form in [0, 1], or Picard's squared form)
and :func:`mean_corr_coef` (Hungarian matching of |correlations|).

Layout: :mod:`~vcreg.ica.metrics` (Amari distance, MCC), :mod:`~vcreg.ica.contrast` (whitening,
projector, contrast), :mod:`~vcreg.ica.solver` (Jacobi sweeps, BFGS), :mod:`~vcreg.ica.estimator`
(:class:`VCRegICA`), :mod:`~vcreg.ica.diagnostics` (ground-truth-free quality checks behind
``VCRegICA.diagnostics_`` and its warning), :mod:`~vcreg.ica.problems` (benchmark problems and
the source bank). The nonlinear-ICA negative
result of claim C5 is an experiment: :func:`vcreg.experiments.c5_ica.nonlinear_ica_experiment`.
"""

from vcreg.ica.contrast import ica_objective, whiten_unit_variance
from vcreg.ica.estimator import VCRegICA
from vcreg.ica.metrics import amari_distance, mean_corr_coef
from vcreg.ica.problems import SOURCE_FAMILIES, make_ica_problem

__all__ = [
    "VCRegICA",
    "amari_distance",
    "mean_corr_coef",
    "whiten_unit_variance",
    "ica_objective",
    "make_ica_problem",
    "SOURCE_FAMILIES",
]
