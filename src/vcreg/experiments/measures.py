"""What C2–C4 measure on one representation: independence (with analysis variants) and the
embedding diagnostics that tell whether a run's VCReg constraint could be met at all.

* :func:`independence_variants` — the main measures of ``vcreg.evaluation.independence_metrics``
  (mean pairwise HSIC, biased V-statistic, Gaussian kernels, median bandwidth; normalized HSIC;
  dHSIC with the independence module's default rule) plus the alternative analysis choices of the
  sensitivity table: the unbiased HSIC estimator and a fixed bandwidth σ = 1 on standardized
  features (``hsic_unbiased``, ``hsic_fixed_bw``).
* :func:`embedding_diagnostics` — per-dimension std of the embedding ``Z = g(X)``, the fraction
  of dimensions meeting VICReg's variance hinge ``sqrt(Var + ε) ≥ γ`` (γ = 1, ε = 1e-4, the
  official values), the representation's std and, for random-feature projectors, the scale of
  the projector's input relative to its kernel bandwidth (``≫ 1``: the kernel only sees noise).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vcreg.evaluation import independence_metrics
from vcreg.independence import pairwise_hsic
from vcreg.projectors import RandomFeatureProjector

__all__ = ["HINGE_GAMMA", "HINGE_EPS", "independence_variants", "embedding_diagnostics"]

HINGE_GAMMA = 1.0  # VICReg's target std γ
HINGE_EPS = 1e-4  # VICReg's ε inside the square root


def _pair_mean(z: np.ndarray, **kwargs: Any) -> float:
    m = np.asarray(pairwise_hsic(z, normalized=False, **kwargs))
    return float(m[np.triu_indices(z.shape[1], k=1)].mean())


def independence_variants(feats: Tensor | np.ndarray) -> dict[str, float]:
    """Main independence measures plus the sensitivity variants (see module docstring)."""
    out = independence_metrics(feats)
    z = np.asarray(torch.as_tensor(feats).double().cpu().numpy())
    keep = z.std(0) > 1e-8 * max(1.0, float(np.abs(z).max()))
    z = z[:, keep]
    if z.shape[1] >= 2:
        out["hsic_unbiased"] = _pair_mean(z, estimator="unbiased")
        zs = (z - z.mean(0)) / z.std(0)
        out["hsic_fixed_bw"] = _pair_mean(zs, bandwidth=1.0)
    return out


def _projector_input_scale(projector: nn.Module, x: Tensor) -> float | None:
    """Median feature std of what the random-feature cosines see, in units of the bandwidth."""
    if not isinstance(projector, RandomFeatureProjector):
        return None
    std = 1.0 if projector.standardize else float(x.std(0).median())
    return std / projector.bandwidth


@torch.no_grad()
def embedding_diagnostics(projector: nn.Module, feats: Tensor) -> dict[str, float | None]:
    """Diagnostics of ``Z = projector(feats)`` on a held-out batch (module docstring).

    The projector runs in training mode on a copy (batch statistics, as in the loss; the
    caller's modules and BN running statistics are untouched).
    """
    x = feats.detach().float().cpu()
    z = copy.deepcopy(projector).cpu().train()(x).float()
    std = torch.sqrt(z.var(0) + HINGE_EPS)
    return {
        "emb_std_mean": float(std.mean()),
        "emb_hinge_frac": float((std >= HINGE_GAMMA).float().mean()),
        "repr_std_median": float(x.std(0).median()),
        "rf_scale_over_bw": _projector_input_scale(projector, x),
    }
