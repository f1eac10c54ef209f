"""Representation metrics for monitoring SSL training: torchmetrics ``Metric`` objects.

``PairwiseHSIC`` (mean / median / top pairs of pairwise HSIC and normalized HSIC),
``EffectiveRank`` (RankMe) and ``FeatureStd`` (per-feature std, collapsed features) follow the
torchmetrics contract: ``update(z)`` with a ``(batch, d)`` representation batch (``(batch, ..., d)``
is flattened to rows), ``compute()``, ``reset()``, state synchronised across DDP ranks.
:class:`RepresentationMonitor` computes all three from one buffer: the plain-loop monitor, also
used by ``vcreg.integrations.lightning.IndependenceMonitor`` and by vcreg's own trainer.

Conventions:

- The values are those of :mod:`vcreg.independence` (``pairwise_hsic`` with its Gaussian kernel
  and median bandwidths, ``normalize_hsic_matrix``, ``pairwise_summary``, ``effective_rank``,
  ``feature_std_summary``) on the buffered rows: these metrics own no formula of their own.
- The buffer is bounded: at most ``max_samples`` rows (default 1024; pairwise HSIC costs
  O(n² d²)). Each rank keeps its first ``max_samples`` rows after ``reset()``; ``compute()``
  gathers every rank's rows (rank order) and, if there are more than ``max_samples``, keeps the
  first rows of each rank in equal shares. With fewer rows in total than ``max_samples``, a DDP run
  therefore measures exactly the rows a single process would see (in rank order; every statistic
  here is invariant to the row order when ``n <= MEDIAN_SAMPLES``, the rows used by the bandwidth).
- Rows are stored detached, in float32 (float64 input stays float64), on the input's device.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat

from vcreg import independence as ind
from vcreg._io import atomic_write

__all__ = [
    "PairwiseHSIC",
    "EffectiveRank",
    "FeatureStd",
    "RepresentationMonitor",
    "pairwise_heatmap",
    "pairwise_heatmap_figure",
]

DEFAULT_SAMPLES = 1024


def _rows(z: Tensor) -> Tensor:
    if not isinstance(z, Tensor):
        raise TypeError(f"representation batch must be a torch.Tensor, got {type(z).__name__}")
    if not z.is_floating_point():
        raise TypeError(f"representation batch must be floating point, got dtype {z.dtype}")
    if z.dim() < 2:
        raise ValueError(
            f"representation batch must have shape (batch, dim) (or (batch, ..., dim)), "
            f"got {tuple(z.shape)}"
        )
    z = z.detach().reshape(-1, z.shape[-1])
    return z.to(torch.promote_types(z.dtype, torch.float32))


def _equal_shares(counts: list[int], budget: int) -> list[int]:
    """Rows kept per rank: all of them if they fit in ``budget``, else the largest equal share
    ``t`` each (capped by the rank's count), the remainder taken from the first ranks."""
    if sum(counts) <= budget:
        return list(counts)
    t = 0
    while sum(min(c, t + 1) for c in counts) <= budget:
        t += 1
    keep = [min(c, t) for c in counts]
    for r, c in enumerate(counts):
        if sum(keep) == budget:
            break
        if c > t:
            keep[r] += 1
    return keep


class _RepresentationBuffer(Metric):
    """A bounded, DDP-synchronised buffer of representation rows (module docstring)."""

    is_differentiable = False
    higher_is_better = None
    full_state_update = False

    def __init__(self, max_samples: int = DEFAULT_SAMPLES, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if isinstance(max_samples, bool) or not isinstance(max_samples, int) or max_samples < 4:
            raise ValueError(f"max_samples must be an int >= 4, got {max_samples!r}")
        self.max_samples = max_samples
        self.add_state("rows", default=[], dist_reduce_fx="cat")
        # rows held by each rank, gathered alongside so compute() can take equal shares
        self.add_state("counts", default=torch.zeros(1, dtype=torch.long), dist_reduce_fx="cat")
        self._held = 0

    def update(self, z: Tensor) -> None:
        z = _rows(z)
        if self._held and z.shape[1] != self.rows[0].shape[1]:
            raise ValueError(
                f"representation dimension changed: buffer holds d={self.rows[0].shape[1]}, "
                f"got a batch with d={z.shape[1]}"
            )
        room = self.max_samples - self._held  # a host-side count: no device sync per batch
        if room <= 0:
            return
        z = z[:room]
        self.rows.append(z)
        self.counts += z.shape[0]
        self._held += z.shape[0]

    @property
    def is_full(self) -> bool:
        """True when this rank holds ``max_samples`` rows (further updates are ignored)."""
        return self._held >= self.max_samples

    def reset(self) -> None:
        super().reset()
        self._held = 0

    def forward(self, z: Tensor) -> None:
        """``update(z)``; no per-batch value (these statistics need many rows, not one batch)."""
        self.update(z)

    def samples(self) -> Tensor:
        """The buffered rows (n, d), at most ``max_samples``: this rank's, or every rank's inside
        ``compute()`` / ``with metric.sync_context():``."""
        empty = self.rows.numel() == 0 if isinstance(self.rows, Tensor) else not self.rows
        if empty:
            raise ValueError(
                f"{type(self).__name__} has no representation rows: call update(z) first"
            )
        z = dim_zero_cat(self.rows)
        counts = self.counts.reshape(-1).tolist()
        keep = _equal_shares(counts, self.max_samples)
        if keep == counts:
            return z
        starts = [0, *torch.tensor(counts).cumsum(0).tolist()[:-1]]
        return torch.cat([z[s : s + k] for s, k in zip(starts, keep, strict=True)])


_HSIC_KEYS = ("hsic_mean", "hsic_median", "hsic_max", "nhsic_mean", "nhsic_median", "nhsic_max")


def _hsic_values(z: Tensor, top_k: int, **pairwise: Any) -> tuple[dict[str, Tensor], Tensor]:
    """Summary over pairs i < j of non-constant features of raw and normalized pairwise HSIC
    (one kernel pass), and the normalized (d, d) matrix.

    Constant features (zero self-HSIC: :mod:`vcreg.independence`'s rule, with its warning) are
    left out of the summary, as in :func:`vcreg.evaluation.independence_metrics`; their number is
    ``n_constant_features``. Fewer than 2 others: NaN summary values and a RuntimeWarning.
    """
    raw = ind.pairwise_hsic(z, normalized=False, **pairwise)
    nrm = ind.normalize_hsic_matrix(raw)
    kept = torch.nonzero(torch.diagonal(raw) > 0).flatten()
    values = {"n_constant_features": torch.tensor(float(raw.shape[0] - kept.numel()))}
    if kept.numel() < 2:
        warnings.warn(
            f"pairwise HSIC summary undefined: {kept.numel()} of {raw.shape[0]} features are "
            f"non-constant on the {z.shape[0]} rows (a collapsed representation); values are NaN",
            RuntimeWarning,
            stacklevel=3,
        )
        values.update({k: torch.tensor(math.nan, dtype=torch.float64) for k in _HSIC_KEYS})
        values["top_pairs"] = torch.zeros(0, 3, dtype=torch.float64)
        return values, nrm
    sub = kept[:, None], kept[None, :]
    s_raw = ind.pairwise_summary(raw[sub], top_k=0)
    s_nrm = ind.pairwise_summary(nrm[sub], top_k=top_k)
    for key, summary in (("hsic", s_raw), ("nhsic", s_nrm)):
        for stat in ("mean", "median", "max"):
            values[f"{key}_{stat}"] = torch.tensor(summary[stat], dtype=torch.float64)
    top = [[kept[p["i"]].item(), kept[p["j"]].item(), p["value"]] for p in s_nrm["top_pairs"]]
    values["top_pairs"] = torch.tensor(top, dtype=torch.float64).reshape(-1, 3)
    return values, nrm


def _std_values(z: Tensor, threshold: float) -> dict[str, Tensor]:
    s = ind.feature_std_summary(z, threshold=threshold)
    keys = ("std_mean", "std_min", "normalized_std", "n_collapsed")
    return {k: torch.tensor(float(s[k]), dtype=torch.float64) for k in keys}


class PairwiseHSIC(_RepresentationBuffer):
    """Pairwise HSIC of the representation's features (:func:`vcreg.independence.pairwise_hsic`).

    ``compute()`` returns a dict of 0-d float64 tensors ``hsic_mean``, ``hsic_median``,
    ``hsic_max`` (biased HSIC over pairs i < j), ``nhsic_mean``, ``nhsic_median``, ``nhsic_max``
    (normalized HSIC, in [0, 1]), ``n_constant_features`` (left out of the pairs) and
    ``top_pairs``: a ``(top_k, 3)`` tensor of rows ``(i, j, nhsic)``, most dependent first.
    ``pairwise`` options (``method``, ``max_memory``,
    ``bandwidth``, ...) go to ``pairwise_hsic``. After ``compute()``, ``matrix`` holds the
    normalized (d, d) matrix (for a heatmap).
    """

    def __init__(
        self, max_samples: int = DEFAULT_SAMPLES, top_k: int = 5, pairwise: dict | None = None, **kw
    ) -> None:
        super().__init__(max_samples, **kw)
        self.top_k = int(top_k)
        self.pairwise = dict(pairwise or {})
        self.matrix: Tensor | None = None

    def compute(self) -> dict[str, Tensor]:
        values, self.matrix = _hsic_values(self.samples(), self.top_k, **self.pairwise)
        return values


class EffectiveRank(_RepresentationBuffer):
    """RankMe effective rank of the buffered rows (:func:`vcreg.independence.effective_rank`):
    a 0-d float64 tensor in [1, min(n, d)]."""

    def __init__(
        self,
        max_samples: int = DEFAULT_SAMPLES,
        eps: float = ind.RANKME_EPS,
        center: bool = False,
        **kw,
    ) -> None:
        super().__init__(max_samples, **kw)
        self.eps, self.center = eps, center

    def compute(self) -> Tensor:
        value = ind.effective_rank(self.samples(), eps=self.eps, center=self.center)
        return torch.tensor(value, dtype=torch.float64)


class FeatureStd(_RepresentationBuffer):
    """Per-feature std and collapsed features (:func:`vcreg.independence.feature_std_summary`).

    ``compute()``: 0-d float64 tensors ``std_mean``, ``std_min``, ``normalized_std`` (~1 spread
    out, 0 collapsed) and ``n_collapsed`` (features with std <= ``threshold`` · rms of Z).
    """

    def __init__(self, max_samples: int = DEFAULT_SAMPLES, threshold: float = 1e-2, **kw) -> None:
        super().__init__(max_samples, **kw)
        self.threshold = threshold

    def compute(self) -> dict[str, Tensor]:
        return _std_values(self.samples(), self.threshold)


class RepresentationMonitor(_RepresentationBuffer):
    """All three metrics on one buffer: the monitor for plain training loops.

    ``monitor.update(z)`` with representation batches, then ``monitor.compute()``: a flat dict of
    Python floats ``{prefix}hsic_mean``, ``..nhsic_mean``, ``..nhsic_median``, ``..nhsic_max``,
    ``..hsic_median``, ``..hsic_max``, ``..n_constant_features`` (if ``hsic``), ``..dhsic``
    (if ``dhsic``: :func:`vcreg.independence.dhsic` with its default rule),
    ``..effective_rank`` (if ``rank``), ``..std_mean``, ``..std_min``, ``..normalized_std``,
    ``..n_collapsed`` (if ``std``) and ``..n_samples``; ``top_pairs`` and ``matrix`` (normalized
    HSIC) are kept as attributes. ``sync_on_compute=False`` (a torchmetrics option) measures this
    process's rows only, e.g. on rank 0 alone.
    """

    def __init__(
        self,
        max_samples: int = DEFAULT_SAMPLES,
        *,
        hsic: bool = True,
        rank: bool = True,
        std: bool = True,
        dhsic: bool = False,
        top_k: int = 5,
        collapse_threshold: float = 1e-2,
        pairwise: dict | None = None,
        prefix: str = "",
        **kw,
    ) -> None:
        super().__init__(max_samples, **kw)
        self.hsic, self.rank, self.std, self.dhsic = hsic, rank, std, dhsic
        self.top_k, self.collapse_threshold = int(top_k), collapse_threshold
        self.pairwise = dict(pairwise or {})
        self.prefix = prefix
        self.top_pairs: list[tuple[int, int, float]] = []
        self.matrix: Tensor | None = None

    def compute(self) -> dict[str, float]:
        z = self.samples()
        out: dict[str, float] = {"n_samples": float(z.shape[0])}
        if self.hsic and z.shape[1] >= 2:
            values, self.matrix = _hsic_values(z, self.top_k, **self.pairwise)
            top = values.pop("top_pairs")
            self.top_pairs = [(int(i), int(j), float(v)) for i, j, v in top.tolist()]
            out.update({k: float(v) for k, v in values.items()})
        if self.dhsic and z.shape[1] >= 2:
            out["dhsic"] = float(ind.dhsic(z))
        if self.rank:
            out["effective_rank"] = ind.effective_rank(z)
        if self.std:
            out.update({k: float(v) for k, v in _std_values(z, self.collapse_threshold).items()})
        return {f"{self.prefix}{k}": v for k, v in out.items()}


def pairwise_heatmap_figure(matrix: Any, title: str = "pairwise normalized HSIC") -> Figure:
    """A matplotlib ``Figure`` of the (d, d) pairwise matrix as a heatmap (diagonal masked)."""
    shown = torch.as_tensor(matrix).detach().cpu().double().numpy().copy()
    if shown.ndim != 2 or shown.shape[0] != shown.shape[1]:
        raise ValueError(f"expected a square (d, d) matrix, got shape {shown.shape}")
    np.fill_diagonal(shown, np.nan)
    d = shown.shape[0]
    fig = Figure(figsize=(6.4, 5.4), dpi=110)  # a bare Figure: leaves the pyplot backend alone
    ax = fig.subplots()
    im = ax.imshow(shown, cmap="magma", interpolation="nearest" if d <= 256 else "antialiased")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("feature j")
    ax.set_ylabel("feature i")
    fig.colorbar(im, ax=ax, label="normalized HSIC (diagonal masked)")
    fig.tight_layout()
    return fig


def pairwise_heatmap(
    matrix: Any, path: str | Path, title: str = "pairwise normalized HSIC"
) -> Path:
    """Write :func:`pairwise_heatmap_figure` as a PNG, atomically; returns the path."""
    fig = pairwise_heatmap_figure(matrix, title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda fh: fig.savefig(fh, format="png"))
    return path
