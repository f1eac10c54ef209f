"""What C2–C4 measure on one representation: independence (with analysis variants) and the
embedding diagnostics that tell whether a run's VCReg constraint could be met at all.

* :func:`independence_variants` — the main measures of ``vcreg.evaluation.independence_metrics``
  (mean pairwise HSIC, biased V-statistic, Gaussian kernels, median bandwidth; normalized HSIC;
  dHSIC with the independence module's default rule) plus the alternative analysis choices of the
  sensitivity table: the unbiased HSIC estimator and a fixed bandwidth σ = 1 on standardized
  features (``hsic_unbiased``, ``hsic_fixed_bw``), and dHSIC under per-variable median bandwidths
  with its floor 1/n (``dhsic_median``, ``dhsic_floor``; NaN when saturated).
* :func:`vcreg.diagnostics.embedding_diagnostics` (re-exported) — embedding std, fraction of
  dimensions meeting VICReg's variance hinge, representation scale relative to the bandwidth.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from vcreg.diagnostics import embedding_diagnostics
from vcreg.evaluation import independence_metrics
from vcreg.independence import pairwise_hsic

__all__ = ["independence_variants", "embedding_diagnostics"]


def _pair_mean(z: np.ndarray, **kwargs: Any) -> float:
    m = np.asarray(pairwise_hsic(z, normalized=False, **kwargs))
    return float(m[np.triu_indices(z.shape[1], k=1)].mean())


def independence_variants(feats: Tensor | np.ndarray) -> dict[str, float]:
    """Main independence measures plus the sensitivity variants (see module docstring)."""
    out = independence_metrics(feats, dhsic_median=True)
    z = np.asarray(torch.as_tensor(feats).double().cpu().numpy())
    keep = z.std(0) > 1e-8 * max(1.0, float(np.abs(z).max()))
    z = z[:, keep]
    if z.shape[1] >= 2:
        out["hsic_unbiased"] = _pair_mean(z, estimator="unbiased")
        zs = (z - z.mean(0)) / z.std(0)
        out["hsic_fixed_bw"] = _pair_mean(zs, bandwidth=1.0)
    return out
