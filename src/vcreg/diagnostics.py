"""Embedding diagnostics: can the VCReg constraint be met by this projector on this data?

:func:`embedding_diagnostics` measures, on a held-out batch of representations ``X`` and the
embedding ``Z = g(X)``: the mean per-dimension std of ``Z`` (``sqrt(Var + ε)``, as VICReg's
variance term), the fraction of embedding dimensions meeting VICReg's hinge ``std ≥ γ``
(official γ = 1, ε = 1e-4), the median feature std of ``X``, and — for the element-wise
random-feature projector — the scale of what its cosines see relative to the kernel bandwidth
(the standardized input has scale 1; a raw representation much wider than the bandwidth makes
the kernel see noise). The trainer's monitor logs them every monitored epoch.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from vcreg.projectors import RandomFeatureProjector

__all__ = ["HINGE_GAMMA", "HINGE_EPS", "embedding_diagnostics"]

HINGE_GAMMA = 1.0  # VICReg's target std γ
HINGE_EPS = 1e-4  # VICReg's ε inside the square root


def _projector_input_scale(projector: nn.Module, x: Tensor) -> float | None:
    if not isinstance(projector, RandomFeatureProjector):
        return None
    std = 1.0 if projector.standardize else float(x.std(0).quantile(0.5))
    return std / projector.bandwidth


@torch.no_grad()
def embedding_diagnostics(
    projector: nn.Module, feats: Tensor, gamma: float = HINGE_GAMMA, eps: float = HINGE_EPS
) -> dict[str, float | None]:
    """``emb_std_mean``, ``emb_hinge_frac``, ``repr_std_median``, ``rf_scale_over_bw`` (None
    for other projectors) of ``Z = projector(feats)`` (module docstring).

    The projector runs in training mode (batch statistics, as in the loss) on a CPU copy, so the
    caller's module, its mode and its BatchNorm running statistics are untouched.
    """
    x = feats.detach().float().cpu()
    if x.dim() != 2 or x.shape[0] < 2:
        raise ValueError(f"need representations of shape (n >= 2, d), got {tuple(x.shape)}")
    z = copy.deepcopy(projector).cpu().train()(x).float()
    std = torch.sqrt(z.var(0) + eps)
    return {
        "emb_std_mean": float(std.mean()),
        "emb_hinge_frac": float((std >= gamma).float().mean()),
        "repr_std_median": float(x.std(0).quantile(0.5)),
        "rf_scale_over_bw": _projector_input_scale(projector, x),
    }
