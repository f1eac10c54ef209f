"""Kernel independence measures: HSIC, all-pairs HSIC matrices, dHSIC and their tests.

Conventions (all functions):

- Inputs are NumPy arrays or torch tensors (CPU or CUDA). A variable is a vector ``(n,)`` or a
  matrix ``(n, p)`` (rows = samples). Matrix-valued results follow the input: NumPy in -> NumPy
  out, torch in -> torch out on the input's device. Scalars are Python floats.
- Computations run in ``dtype=torch.float64`` by default: HSIC values of nearly independent
  variables are ~1e-4 to 1e-6 of the kernel entries, so float32 loses digits on large n. Pass
  ``dtype=torch.float32`` for speed on GPUs.
- Kernels: ``"gaussian"`` k(s, t) = exp(-|s - t|^2 / (2 sigma^2)), ``"laplacian"``
  k(s, t) = exp(-|s - t| / sigma), ``"linear"`` k(s, t) = <s, t> (no bandwidth).
- Bandwidth sigma (per variable): ``"median"`` = median of the pairwise Euclidean distances
  |x_a - x_b|, a < b (Gretton et al. 2005; also hyppo's convention); ``"dhsic"`` =
  sqrt(median(|x_a - x_b|^2) / 2), the convention of the R package dHSIC (Pfister et al. 2018);
  or a positive number (fixed). The median uses at most ``median_samples`` (default 256) rows,
  drawn without replacement with a fixed seed (0) when n is larger; an even number of pairs
  averages the two middle values. If more than half of the distances are 0 (discrete data),
  the median of the non-zero distances is used.
- Estimators: ``"biased"`` HSIC_b = tr(K H L H) / n^2, H = I - 11^T/n (Gretton et al. 2005);
  ``"unbiased"`` HSIC_u of Song et al. (2012), computed as <U(K), U(L)> / (n (n - 3)) with the
  U-centred kernel matrices of Szekely & Rizzo (2014), which is algebraically identical and
  numerically better conditioned. Normalized HSIC (as in CKA):
  HSIC(X, Y) / sqrt(HSIC(X, X) HSIC(Y, Y)).
- dHSIC: the V-statistic of Pfister et al. (2018), evaluated in log space so that products of
  hundreds of kernel matrices neither underflow nor overflow.
- Bad input: fewer than 4 samples, NaN/Inf, mismatched numbers of samples, non-numeric data
  raise ``ValueError``/``TypeError``. A *constant* variable (all n values identical) is
  independent of everything: its HSIC (and normalized HSIC) is defined as 0 and a
  :class:`ConstantVariableWarning` is emitted; in dHSIC its kernel matrix is all ones, which
  leaves the statistic of the other variables unchanged.
"""

from __future__ import annotations

from vcreg.independence._common import (
    BANDWIDTH_RULES,
    DEFAULT_DTYPE,
    ESTIMATORS,
    KERNELS,
    MEDIAN_SAMPLES,
    PAIRWISE_METHODS,
    TEST_METHODS,
    ConstantVariableWarning,
    IndependenceTestResult,
    format_bytes,
    parse_memory,
)
from vcreg.independence.dhsic import (
    AUTO_JOINT_MASS,
    DHSIC_BANDWIDTH_RULES,
    SATURATION_MASS,
    SaturationWarning,
    dhsic,
    dhsic_test,
    mutual_dependence,
)
from vcreg.independence.health import (
    RANKME_EPS,
    degenerate_features,
    effective_rank,
    feature_std_summary,
)
from vcreg.independence.hsic import hsic, hsic_test
from vcreg.independence.kernels import bandwidth
from vcreg.independence.measurement import (
    SubsampledWarning,
    exact_pairwise_seconds,
    measure_cost,
    measure_embeddings,
)
from vcreg.independence.model import SAMPLING_RULES, SPATIAL_RULES, collect_features, measure_model
from vcreg.independence.pairwise import (
    CORRECTIONS,
    adjust_pvalues,
    normalize_hsic_matrix,
    pairwise_hsic,
    pairwise_hsic_test,
    pairwise_summary,
)

__all__ = [
    "ConstantVariableWarning",
    "IndependenceTestResult",
    "bandwidth",
    "hsic",
    "hsic_test",
    "pairwise_hsic",
    "pairwise_summary",
    "pairwise_hsic_test",
    "adjust_pvalues",
    "normalize_hsic_matrix",
    "dhsic",
    "dhsic_test",
    "mutual_dependence",
    "SaturationWarning",
    "parse_memory",
    "format_bytes",
    "effective_rank",
    "feature_std_summary",
    "degenerate_features",
    "measure_embeddings",
    "measure_model",
    "collect_features",
    "exact_pairwise_seconds",
    "measure_cost",
    "SubsampledWarning",
    # conventions (documented constants)
    "AUTO_JOINT_MASS",
    "BANDWIDTH_RULES",
    "CORRECTIONS",
    "DHSIC_BANDWIDTH_RULES",
    "SATURATION_MASS",
    "DEFAULT_DTYPE",
    "ESTIMATORS",
    "KERNELS",
    "MEDIAN_SAMPLES",
    "PAIRWISE_METHODS",
    "RANKME_EPS",
    "SAMPLING_RULES",
    "SPATIAL_RULES",
    "TEST_METHODS",
]
