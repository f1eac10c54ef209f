"""Shared conventions of vcreg.independence: input validation, result type, small helpers."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

KERNELS = ("gaussian", "laplacian", "linear")
ESTIMATORS = ("biased", "unbiased")
BANDWIDTH_RULES = ("median", "dhsic")
TEST_METHODS = ("gamma", "permutation")
PAIRWISE_METHODS = ("exact", "lowrank")
MEDIAN_SAMPLES = 256
DEFAULT_DTYPE = torch.float64


class ConstantVariableWarning(RuntimeWarning):
    """A variable is constant: its HSIC with anything is defined as 0."""


@dataclass(frozen=True)
class IndependenceTestResult:
    """Result of :func:`hsic_test` / :func:`dhsic_test`.

    ``statistic`` is the HSIC (or dHSIC) estimate itself (not multiplied by n); ``p_value`` the
    test's p-value; unpacks as ``stat, p = result``.
    """

    statistic: float
    p_value: float
    method: str
    n_samples: int
    n_permutations: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __iter__(self):
        yield self.statistic
        yield self.p_value


# ----------------------------------------------------------------------------- input handling


def _check_choice(value: Any, name: str, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
    return value


def _resolve_device(x: Any, device: str | torch.device | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    if isinstance(x, Tensor):
        return x.device
    return torch.device("cpu")


COMPUTE_DTYPES = (torch.float32, torch.float64)


def _check_dtype(dtype: Any) -> torch.dtype:
    """The compute dtype: float32 or float64 (integer data is converted to it, never computed in
    an integer or half type, whose range cannot hold squared distances)."""
    if dtype not in COMPUTE_DTYPES:
        raise TypeError(
            f"dtype must be torch.float32 or torch.float64, got {dtype!r} (the compute dtype; "
            "integer data is converted to it automatically)"
        )
    return dtype


def _check_fixed_bandwidth(bw: float, kernel: str) -> float:
    """A fixed bandwidth whose kernel denominator (2·sigma² Gaussian, sigma Laplacian) is a normal
    float32 number, so no supported dtype turns it into 0 (0/0 = NaN) or inf. float32's range
    is the bound for both dtypes: a result must not depend on the dtype chosen for speed."""
    fi = torch.finfo(torch.float32)
    lo, hi = fi.tiny, fi.max
    if kernel == "gaussian":
        lo, hi = math.sqrt(lo / 2), math.sqrt(hi / 2)
    if not lo <= bw <= hi:
        raise ValueError(
            f"bandwidth {bw:.3g} is outside [{lo:.3g}, {hi:.3g}] for the {kernel} kernel: its "
            "denominator under/overflows floating point and the kernel would be 0/0 (NaN) or "
            "constant; rescale the data or use bandwidth='median'"
        )
    return bw


def _as_variable(
    x: Any,
    name: str,
    dtype: torch.dtype,
    device: torch.device,
    allow_matrix: bool = True,
    centre: bool = False,
    scale: str | None = None,
) -> Tensor:
    """Convert to a finite (n, p) tensor of ``dtype`` (float32/float64) on ``device``; real
    numeric input only (complex, object, string and boolean tensors are refused).

    ``centre=True`` (kernel statistics, which are shift-invariant): every column is centred
    at its lower median in float64 *before* the cast to ``dtype`` (:func:`_centre_columns`), so
    that an offset such as 1e8 costs no digits in a float32 step, and a column that varies only
    at the rounding level of the input's own dtype becomes exactly constant. ``scale``
    (statistics that are also scale-invariant: median-type bandwidths): ``"column"`` divides
    each column, ``"variable"`` the whole (n, p) variable, by a power of two (exact) to a
    largest |value| in [1, 2), also before the cast, so nothing over- or underflows there."""
    _check_dtype(dtype)
    in_eps = _input_eps(x)
    if isinstance(x, Tensor):
        t = x.detach()
        if t.is_complex():
            raise TypeError(
                f"{name}: complex data (dtype {t.dtype}) is not supported; HSIC needs real "
                "values: pass x.real, x.abs() or the two parts as separate columns"
            )
        if t.dtype == torch.bool:
            raise TypeError(f"{name}: expected a real-valued tensor, got dtype {t.dtype}")
    else:
        arr = np.asarray(x)
        if arr.dtype.kind == "c":
            raise TypeError(
                f"{name}: complex data (dtype {arr.dtype}) is not supported; HSIC needs real "
                "values: pass x.real, abs(x) or the two parts as separate columns"
            )
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{name}: expected numeric data, got array of dtype {arr.dtype}")
        t = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float64))
    if t.ndim == 1:
        t = t[:, None]
    if t.ndim != 2 or (not allow_matrix and t.shape[1] != 1):
        raise ValueError(f"{name}: expected shape (n,) or (n, p), got {tuple(t.shape)}")
    if t.shape[1] == 0:
        raise ValueError(f"{name}: has 0 columns (shape {tuple(t.shape)})")
    t = t.to(device=device, dtype=torch.float64 if centre or scale else dtype)
    if not bool(torch.isfinite(t).all()):
        bad = int((~torch.isfinite(t)).sum())
        raise ValueError(f"{name} contains {bad} NaN or Inf value(s); remove or impute them first")
    if centre:
        t = _centre_columns(t, in_eps)
    if scale is not None:
        t = _power_of_two_scale(t, scale == "column")
    return t.to(dtype)


ROUNDING_ULPS = 4  # a column whose spread is within this many ulps of its magnitude is constant


def _input_eps(x: Any) -> float:
    """Machine epsilon of the dtype the user's data arrived in (0 for integers: exact)."""
    dt = x.dtype if isinstance(x, Tensor) else np.asarray(x).dtype
    if isinstance(dt, torch.dtype):
        return torch.finfo(dt).eps if dt.is_floating_point else 0.0
    return float(np.finfo(dt).eps) if dt.kind == "f" else 0.0


def _centre_columns(t: Tensor, in_eps: float) -> Tensor:
    """float64 columns minus their lower median (an element of the column, so a constant
    column becomes exactly 0 and a column whose mode covers more than half of the rows has
    its mode at exactly 0). Columns whose spread is at most ROUNDING_ULPS ulps of the input
    dtype at their magnitude (values equal up to rounding) are set to exactly 0: constant
    relative to their own scale, whatever that scale is."""
    mag = t.abs().amax(0)
    c = t - t.median(0).values
    spread = c.abs().amax(0)
    c[:, spread <= ROUNDING_ULPS * in_eps * mag] = 0
    return c


def _power_of_two_scale(t: Tensor, per_column: bool) -> Tensor:
    """t / 2^e with e = floor(log2 max|t|) per column (or overall): exact, |values| < 2."""
    amax = t.abs().amax(0) if per_column else t.abs().amax().reshape(1)
    e = torch.where(amax > 0, torch.floor(torch.log2(amax.clamp_min(1e-300))), 0.0)
    return torch.ldexp(t, -e.to(t.dtype))


def _rescale(t: Tensor, name: str, scale_free: bool, per_column: bool) -> tuple[Tensor, Tensor]:
    """Exact power-of-two rescaling where squared distances would overflow or underflow.

    Kernels with median-type bandwidths are invariant to scaling each variable, so a variable
    whose largest |value| is beyond finfo(dtype).max ** 0.25 or (non-zero and) below
    finfo.tiny ** 0.25 (1e77 / 1e-77 in float64) is divided by a power of two (no rounding).
    With a fixed bandwidth or the linear kernel the result would change, so that raises.
    Returns the tensor and the (p,) or (1,) exponents used (0 where untouched).
    """
    fi = torch.finfo(t.dtype)
    amax = t.abs().amax(0) if per_column else t.abs().amax().reshape(1)
    bad = (amax > fi.max**0.25) | ((amax > 0) & (amax < fi.tiny**0.25))
    exps = torch.zeros_like(amax)
    if not bool(bad.any()):
        return t, exps
    if not scale_free:
        raise ValueError(
            f"{name} has values of magnitude {float(amax[bad].max()):.3g} / "
            f"{float(amax[bad].min()):.3g}: squared distances over/underflow {t.dtype} with a "
            "fixed bandwidth or the linear kernel; rescale the data or use bandwidth='median'"
        )
    exps = torch.where(bad, torch.floor(torch.log2(amax.clamp_min(fi.tiny))), exps)
    return torch.ldexp(t, -exps.to(t.dtype)), exps


def _check_median_samples(median_samples: Any) -> int:
    if isinstance(median_samples, bool) or not isinstance(median_samples, int | np.integer):
        raise TypeError(f"median_samples must be an integer >= 2, got {median_samples!r}")
    if median_samples < 2:
        raise ValueError(
            f"median_samples must be >= 2 (the median needs at least one pair), got {median_samples}"
        )
    return int(median_samples)


def _check_n(n: int, what: str = "input") -> None:
    if n < 4:
        raise ValueError(
            f"{what} has n = {n} samples; HSIC estimators need at least 4 samples (rows)"
        )


def _check_same_n(tensors: Sequence[Tensor], names: Sequence[str]) -> int:
    ns = {int(t.shape[0]) for t in tensors}
    if len(ns) != 1:
        desc = ", ".join(f"{nm}: {int(t.shape[0])}" for nm, t in zip(names, tensors, strict=True))
        raise ValueError(f"all variables need the same number of samples (rows); got {desc}")
    n = ns.pop()
    _check_n(n)
    return n


def _is_constant(x: Tensor) -> bool:
    return bool((x == x[:1]).all())


def _warn_constant(names: Iterable[str]) -> None:
    names = list(names)
    if names:
        shown = ", ".join(names[:10]) + (f" (+{len(names) - 10} more)" if len(names) > 10 else "")
        warnings.warn(
            f"constant variable(s) {shown}: HSIC with a constant is defined as 0",
            ConstantVariableWarning,
            stacklevel=3,
        )


def parse_memory(value: int | float | str) -> int:
    """Bytes from ``4GB``/``512MB``/``1.5GiB``/an int. KB/MB/GB/TB are binary (1024) multiples."""
    if isinstance(value, bool):
        raise TypeError(f"max_memory: expected bytes or a string like '4GB', got {value!r}")
    if isinstance(value, int | float):
        out = int(value)
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([KMGT]?)(?:i?B)?\s*", value, re.IGNORECASE)
        if m is None:
            raise ValueError(f"max_memory: cannot parse {value!r}; use e.g. '4GB' or '512MB'")
        out = int(float(m.group(1)) * 1024 ** " KMGT".index(m.group(2).upper() or " "))
    else:
        raise TypeError(f"max_memory: expected bytes or a string like '4GB', got {value!r}")
    if out <= 0:
        raise ValueError(f"max_memory must be positive, got {value!r}")
    return out


def format_bytes(n: float) -> str:
    """``1.5 GiB`` / ``64 MiB`` / ``512 KiB``: binary units, as :func:`parse_memory` reads them."""
    for unit, div in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= div:
            return f"{n / div:.3g} {unit}"
    return f"{int(n)} B"


def _require_memory(need: float, budget: int, what: str, advice: str) -> None:
    """The one budget rule: refuse *before* allocating when the estimated peak ``need`` (bytes)
    exceeds ``max_memory``. ``advice`` says what to change (it follows the numbers)."""
    if need > budget:
        raise ValueError(
            f"{what} needs about {format_bytes(need)} of working memory (estimated before "
            f"allocating) but max_memory is {format_bytes(budget)}; {advice}"
        )


def _rng(random_state: int | np.random.Generator | None) -> np.random.Generator:
    if isinstance(random_state, np.random.Generator):
        return random_state
    return np.random.default_rng(random_state)


def _out(value: Tensor, like: Any) -> Tensor | np.ndarray:
    return value if isinstance(like, Tensor) else value.cpu().numpy()


def _progress(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="block", leave=False)
