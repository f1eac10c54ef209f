"""Verdicts computed from data: ``supported`` / ``not supported`` / ``inconclusive`` /
``not assessable at this scale``.

``not assessable at this scale`` (:func:`not_assessable`) is the status of a claim or part whose
preconditions (:mod:`vcreg.experiments.preconditions`: trained to the VCReg constraint, probe
above a random-init encoder) too few runs meet: the runs say nothing about the claim, for or
against, and the verdict names the reason and the preset that would assess it.

Every verdict carries the statistic it rests on (a human-readable string plus the raw numbers),
so the report never states a conclusion that the measured numbers do not back.

Decision rules (all intervals two-sided at level ``1 − alpha``, default 95 %):

* :func:`identity_verdict` — an exact identity holds if the largest relative error is below a
  tolerance set by the floating-point precision.
* :func:`trend_verdict` — a monotone relation (Spearman ρ with a percentile-bootstrap CI):
  supported when the CI lies entirely on the expected side of 0; not supported when it lies
  entirely on the other side, or inside ``±margin`` (no effect, equivalence); else inconclusive.
* :func:`difference_verdict` — a paired difference ``a − b`` (Student-t CI over pairs, e.g.
  seeds): same rule as the trend, on the mean difference.
* :func:`slope_verdict` — a fitted log-log slope (OLS with t CI): supported when the slope is
  significantly negative; whether it matches the expected rate is reported with it.
* :func:`threshold_verdict` — a summary statistic compared with a threshold, with a bootstrap CI
  of the median: supported / not supported when the whole CI is on one side.
* :func:`partial_trend_verdict` — a monotone relation controlled for a confound: partial
  Spearman ρ(x, y | z) (Pearson correlation of the residuals of rank(x) and rank(y) after a
  linear fit on rank(z)), percentile-bootstrap CI resampling whole ``groups`` (configurations,
  not seeds); same side rule and ±``margin`` as the trend.
* :func:`control_verdict` — "X causes Y" against an equal-budget control lacking X: the paired
  difference of ``log`` values (treatment − control, pairs = same width and seed), t-CI; the
  expected sign is the paper's.
* :func:`flag_low_accuracy` — sweep hygiene: configurations whose mean in-domain accuracy is
  below ``ratio`` × the sweep's median configuration are flagged (and left out of verdicts).
* :func:`sensitivity_rows` — a verdict recomputed under other analysis choices: each row says
  whether its status equals the main one; :func:`stability` labels a claim *stable* when none
  changes, else *changes under other analysis choices*.
* :func:`combine_verdicts` — a claim with several parts (:data:`CLAIM_RULE`). Each part is one
  statement of the paper (``added=False``) or a test the project adds (``added=True``, labelled
  "added test"). Only the paper's parts decide: **not supported** when any paper part is not
  supported; else **not assessable at this scale** when fewer than :data:`MIN_ASSESSABLE_FRAC`
  of the paper parts are assessable (status other than "not assessable"); else **supported**
  when every assessable paper part is supported; else **inconclusive**. Added tests never
  change the status: they are reported beside it as findings.
* :func:`permutation_partial_verdict` — the partial rank correlation tested by permuting ``x``
  across units (exact enumeration of all u! orders for u ≤ :data:`EXACT_PERMUTATION_MAX`).
* :func:`equivalence_verdict` — "does not change": a two one-sided t-test (TOST) that the mean
  lies inside ``±margin``.

These rules were written before the runs they judge (the controls, the partial correlation and
the guard were fixed in code before the quick/full presets were re-run with them).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from scipy import stats

__all__ = [
    "Verdict",
    "SUPPORTED",
    "NOT_SUPPORTED",
    "INCONCLUSIVE",
    "identity_verdict",
    "trend_verdict",
    "difference_verdict",
    "slope_verdict",
    "threshold_verdict",
    "combine_verdicts",
    "group_difference_verdict",
    "spearman_bootstrap",
    "fit_loglog_slope",
    "partial_spearman",
    "partial_spearman_bootstrap",
    "partial_trend_verdict",
    "control_verdict",
    "flag_low_accuracy",
    "sensitivity_rows",
    "STABLE",
    "CHANGES",
    "NOT_ASSESSABLE",
    "not_assessable",
    "retarget_hints",
    "stability",
    "equivalence_verdict",
    "MIN_RANK_UNITS",
    "MIN_T_N",
    "min_n_median_ci",
    "MIN_ASSESSABLE_FRAC",
    "CLAIM_RULE",
    "STATUS_MARK",
    "parts_line",
    "paper_parts",
    "added_parts",
    "failing_paper_parts",
    "added_test",
    "permutation_partial_spearman",
    "permutation_partial_verdict",
    "EXACT_PERMUTATION_MAX",
    "MC_PERMUTATIONS",
    "min_units_permutation",
    "minimum_units_rows",
]

# stability of a verdict across the analyses of its sensitivity table (what it measures, in words)
STABLE = "stable"
CHANGES = "changes under other analysis choices"

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
INCONCLUSIVE = "inconclusive"
NOT_ASSESSABLE = "not assessable at this scale"
Status = Literal["supported", "not supported", "inconclusive", "not assessable at this scale"]
_STATUSES = (SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, NOT_ASSESSABLE)


@dataclass
class Verdict:
    """A computed verdict: ``status``, the ``statistic`` behind it and a one-line ``reason``.

    As a part of a claim: ``name`` says what it tests, ``short`` is its label in the compact
    parts line (e.g. "width"), ``added`` marks a test the project adds beyond the paper's
    statements (reported, never deciding the claim: :func:`combine_verdicts`).
    """

    status: Status
    statistic: str
    reason: str
    values: dict[str, Any] = field(default_factory=dict)
    parts: list[Verdict] = field(default_factory=list)
    name: str = ""
    short: str = ""
    added: bool = False

    def __post_init__(self) -> None:
        if self.status not in _STATUSES:
            raise ValueError(f"unknown verdict status {self.status!r}; choose one of {_STATUSES}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["parts"] = [p.to_dict() for p in self.parts]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Verdict:
        d = dict(d)
        d["parts"] = [cls.from_dict(p) for p in d.get("parts", [])]
        return cls(**d)


def _finite(x: Sequence[float] | np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).ravel()
    if a.size and not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or Inf")
    return a


def _fmt(x: float) -> str:
    if x == 0 or not math.isfinite(x):
        return f"{x:g}"
    return f"{x:.3g}" if 1e-3 <= abs(x) < 1e4 else f"{x:.2e}"


def _side_rule(
    lo: float, hi: float, expected: str, margin: float, ref: str = "0"
) -> tuple[Status, str]:
    """Decide from an interval [lo, hi] of an effect whose expected sign is ``expected``."""
    want_pos = expected in ("positive", "increasing", "greater")
    if (lo > 0 and want_pos) or (hi < 0 and not want_pos):
        return SUPPORTED, f"the interval lies entirely on the expected side of {ref}"
    if (hi < 0 and want_pos) or (lo > 0 and not want_pos):
        return NOT_SUPPORTED, f"the interval lies entirely on the opposite side of {ref}"
    if margin > 0 and -margin < lo and hi < margin:
        return NOT_SUPPORTED, f"the interval lies inside ±{_fmt(margin)} (no effect)"
    return INCONCLUSIVE, f"the interval contains {ref}"


# The fewest samples an interval is computed from (else the verdict says "n too small"):
# a paired Student-t CI needs ≥ 3 pairs (with 2, df = 1 and the 95% half-width is 12.7·sd/√2:
# an interval in name only).
MIN_T_N = 3

# The fewest resampling units (points, or groups in a group bootstrap) a rank-correlation
# interval is computed from. With u ≤ 4 units no ordering is significant at 5 % two-sided (the
# exact permutation p-value of Spearman's ρ is ≥ 2/u! = 0.083 at u = 4), and u units give only
# C(2u−1, u) distinct resamples (10 at u = 3), so a percentile interval such as [−1.00, −0.87]
# from 3 points, or [+1, +1] from 2 configurations, is not a 95 % interval.
MIN_RANK_UNITS = 5


def min_n_median_ci(alpha: float = 0.05) -> int:
    """Fewest values for which a ``1 − alpha`` CI of the median exists at all: the widest
    order-statistic interval [x₍₁₎, x₍ₙ₎] covers the median with probability ``1 − 2·0.5ⁿ``,
    so ``n ≥ log2(2/alpha)`` (6 at 95 %); a bootstrap CI from fewer is not a 95 % interval."""
    return int(math.ceil(math.log2(2.0 / alpha)))


def _too_few_rank_units(n_points: int, groups: Sequence[Any] | None, what: str) -> Verdict | None:
    """ "n too small" when a rank-correlation bootstrap has < MIN_RANK_UNITS resampling units."""
    if groups is None:
        units, kind = n_points, "a rank-correlation bootstrap over points"
    else:
        units, kind = len(np.unique(np.asarray(groups))), "a group bootstrap"
        what = f"groups of {what}"
    return None if units >= MIN_RANK_UNITS else _too_small(what, units, MIN_RANK_UNITS, kind)


def _too_small(what: str, n: int, need: int, kind: str) -> Verdict:
    return Verdict(
        INCONCLUSIVE,
        f"{what}: n too small ({n}; {kind} needs ≥ {need})",
        f"n too small: {n} < {need}",
        {"n": int(n), "min_n": int(need)},
    )


def _check_expected(expected: str) -> None:
    allowed = ("positive", "negative", "increasing", "decreasing", "greater", "less")
    if expected not in allowed:
        raise ValueError(f"expected must be one of {allowed}, got {expected!r}")


def identity_verdict(errors: Sequence[float], tol: float, what: str = "relative error") -> Verdict:
    """An exact identity: supported iff ``max |error| <= tol`` (``tol`` from the float precision)."""
    e = np.abs(_finite(errors, "errors"))
    if e.size == 0:
        raise ValueError("identity_verdict needs at least one error value")
    worst = float(e.max())
    status: Status = SUPPORTED if worst <= tol else NOT_SUPPORTED
    reason = (
        f"max {what} {_fmt(worst)} is {'within' if worst <= tol else 'above'} the float-precision "
        f"tolerance {_fmt(tol)}"
    )
    return Verdict(
        status,
        f"max {what} = {_fmt(worst)} (tolerance {_fmt(tol)}, {e.size} cases)",
        reason,
        {"max_error": worst, "tolerance": tol, "n": int(e.size)},
    )


def _row_spearman(xb: np.ndarray, yb: np.ndarray) -> list[float]:
    """Spearman ρ of each row pair (average ranks for ties); constant rows are skipped."""
    rx = stats.rankdata(xb, axis=1)
    ry = stats.rankdata(yb, axis=1)
    rx -= rx.mean(1, keepdims=True)
    ry -= ry.mean(1, keepdims=True)
    den = np.sqrt((rx * rx).sum(1) * (ry * ry).sum(1))
    ok = den > 0  # rank correlation undefined for a constant resample
    return ((rx * ry).sum(1)[ok] / den[ok]).tolist()


def spearman_bootstrap(
    x: Sequence[float],
    y: Sequence[float],
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
    groups: Sequence[Any] | None = None,
) -> dict[str, float]:
    """Spearman ρ with a percentile-bootstrap CI (resampling points, or whole ``groups``)."""
    xa, ya = _finite(x, "x"), _finite(y, "y")
    if xa.shape != ya.shape:
        raise ValueError(f"x and y must have the same length, got {xa.size} and {ya.size}")
    if xa.size < 3:
        raise ValueError(f"a rank correlation needs at least 3 points, got {xa.size}")
    rho, p = stats.spearmanr(xa, ya)
    rng = np.random.default_rng(seed)
    if groups is None:
        labels = np.arange(xa.size)
    else:
        labels = np.unique(np.asarray(groups), return_inverse=True)[1]
    uniq = np.unique(labels)
    members = [np.flatnonzero(labels == g) for g in uniq]
    picks = rng.integers(0, len(uniq), (n_boot, len(uniq)))
    boots: list[float] = []
    if all(len(m) == 1 for m in members):
        order = np.array([m[0] for m in members])
        boots = _row_spearman(xa[order[picks]], ya[order[picks]])
    else:
        for pick in picks:
            idx = np.concatenate([members[i] for i in pick])
            boots += _row_spearman(xa[idx][None], ya[idx][None])
    if not boots:
        lo = hi = float("nan")
    else:
        lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    return {
        "rho": float(rho) if np.isfinite(rho) else float("nan"),
        "p_value": float(p) if np.isfinite(p) else float("nan"),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "n": int(xa.size),
        "n_boot": int(len(boots)),
        "alpha": alpha,
    }


def trend_verdict(
    x: Sequence[float],
    y: Sequence[float],
    expected: str,
    margin: float = 0.1,
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
    groups: Sequence[Any] | None = None,
    xname: str = "x",
    yname: str = "y",
) -> Verdict:
    """Monotone relation between ``x`` and ``y`` (Spearman ρ, bootstrap CI); see module doc."""
    _check_expected(expected)
    if (small := _too_few_rank_units(len(x), groups, f"ρ({xname}, {yname})")) is not None:
        return small
    s = spearman_bootstrap(x, y, n_boot=n_boot, alpha=alpha, seed=seed, groups=groups)
    level = round(100 * (1 - alpha))
    statistic = (
        f"Spearman ρ({xname}, {yname}) = {s['rho']:+.3f}, {level}% bootstrap CI "
        f"[{s['ci_low']:+.3f}, {s['ci_high']:+.3f}], n = {s['n']}"
    )
    if not (np.isfinite(s["ci_low"]) and np.isfinite(s["ci_high"])):
        return Verdict(INCONCLUSIVE, statistic, "the correlation is undefined (constant data)", s)
    status, why = _side_rule(s["ci_low"], s["ci_high"], expected, margin)
    return Verdict(status, statistic, f"expected relation: {expected}; {why}", s)


def difference_verdict(
    a: Sequence[float],
    b: Sequence[float],
    expected: str,
    alpha: float = 0.05,
    margin: float = 0.0,
    aname: str = "a",
    bname: str = "b",
) -> Verdict:
    """Paired difference ``a − b`` (mean with Student-t CI); ``expected`` is "less" or "greater"."""
    _check_expected(expected)
    aa, bb = _finite(a, "a"), _finite(b, "b")
    if aa.shape != bb.shape:
        raise ValueError(f"a and b must be paired (same length), got {aa.size} and {bb.size}")
    if aa.size < MIN_T_N:
        return _too_small(f"mean({aname} − {bname})", aa.size, MIN_T_N, "a paired t-CI")
    d = aa - bb
    mean = float(d.mean())
    sd = float(d.std(ddof=1))
    half = float(stats.t.ppf(1 - alpha / 2, d.size - 1) * sd / math.sqrt(d.size))
    lo, hi = mean - half, mean + half
    level = round(100 * (1 - alpha))
    statistic = (
        f"mean({aname} − {bname}) = {_fmt(mean)}, {level}% t-CI [{_fmt(lo)}, {_fmt(hi)}], "
        f"{d.size} pairs"
    )
    values = {"mean_diff": mean, "ci_low": lo, "ci_high": hi, "sd": sd, "n": int(d.size)}
    if sd == 0:
        # identical differences: the sign alone decides
        lo = hi = mean
    status, why = _side_rule(lo, hi, expected, margin)
    return Verdict(status, statistic, f"expected {aname} {expected} than {bname}; {why}", values)


def fit_loglog_slope(x: Sequence[float], y: Sequence[float], alpha: float = 0.05) -> dict:
    """OLS fit ``log10 y = a + s·log10 x`` with a Student-t CI on the slope ``s``."""
    xa, ya = _finite(x, "x"), _finite(y, "y")
    if xa.size < 3:
        raise ValueError(f"a slope fit needs at least 3 points, got {xa.size}")
    if np.any(xa <= 0) or np.any(ya <= 0):
        raise ValueError("a log-log fit needs strictly positive x and y")
    res = stats.linregress(np.log10(xa), np.log10(ya))
    half = float(stats.t.ppf(1 - alpha / 2, xa.size - 2) * res.stderr)
    return {
        "slope": float(res.slope),
        "intercept": float(res.intercept),
        "stderr": float(res.stderr),
        "ci_low": float(res.slope - half),
        "ci_high": float(res.slope + half),
        "r2": float(res.rvalue**2),
        "n": int(xa.size),
    }


def slope_verdict(
    x: Sequence[float], y: Sequence[float], expected_slope: float = -0.5, alpha: float = 0.05
) -> Verdict:
    """Convergence ``y → 0`` as ``x`` grows: supported if the log-log slope is significantly < 0.

    Whether the CI contains ``expected_slope`` (the Monte-Carlo rate −1/2) is reported in the
    reason; it does not change the status (the claim is convergence, not its rate).
    """
    f = fit_loglog_slope(x, y, alpha=alpha)
    level = round(100 * (1 - alpha))
    statistic = (
        f"log-log slope = {f['slope']:.3f}, {level}% CI [{f['ci_low']:.3f}, {f['ci_high']:.3f}], "
        f"R² = {f['r2']:.3f}, {f['n']} points"
    )
    matches = f["ci_low"] <= expected_slope <= f["ci_high"]
    rate = (
        f"consistent with the expected rate {expected_slope:g}"
        if matches
        else f"the CI excludes the expected rate {expected_slope:g}"
    )
    if f["ci_high"] < 0:
        status, why = SUPPORTED, "the error decreases significantly"
    elif f["ci_low"] > 0:
        status, why = NOT_SUPPORTED, "the error increases significantly"
    else:
        status, why = INCONCLUSIVE, "the slope is not significantly different from 0"
    f["matches_expected_rate"] = bool(matches)
    f["expected_slope"] = expected_slope
    return Verdict(status, statistic, f"{why}; {rate}", f)


def threshold_verdict(
    values: Sequence[float],
    threshold: float,
    expected: str,
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
    name: str = "value",
) -> Verdict:
    """Median of ``values`` vs ``threshold`` (bootstrap CI of the median); ``expected`` less/greater."""
    _check_expected(expected)
    v = _finite(values, "values")
    if v.size < 1:
        raise ValueError("threshold_verdict needs at least 1 value")
    need = min_n_median_ci(alpha)
    if v.size < need:
        return _too_small(
            f"median {name}", v.size, need, f"a {100 * (1 - alpha):g}% CI of a median"
        )
    rng = np.random.default_rng(seed)
    meds = np.median(v[rng.integers(0, v.size, (n_boot, v.size))], axis=1)
    lo, hi = (float(q) for q in np.quantile(meds, [alpha / 2, 1 - alpha / 2]))
    med = float(np.median(v))
    level = round(100 * (1 - alpha))
    statistic = (
        f"median {name} = {_fmt(med)}, {level}% bootstrap CI [{_fmt(lo)}, {_fmt(hi)}] vs "
        f"threshold {_fmt(threshold)}, n = {v.size}"
    )
    status, why = _side_rule(
        lo - threshold, hi - threshold, expected, 0.0, ref=f"the threshold {_fmt(threshold)}"
    )
    values_d = {
        "median": med,
        "ci_low": lo,
        "ci_high": hi,
        "threshold": threshold,
        "n": int(v.size),
    }
    return Verdict(
        status, statistic, f"expected {name} {expected} than {_fmt(threshold)}; {why}", values_d
    )


def group_difference_verdict(
    groups: dict[str, Sequence[float]], alpha: float = 0.05, what: str = "value"
) -> Verdict:
    """Do the groups differ? Kruskal-Wallis H test: supported if p < ``alpha``, else inconclusive.

    (A non-significant test cannot show that the groups are equal, so it never returns
    "not supported".)
    """
    samples = [_finite(v, f"group {k}") for k, v in groups.items()]
    if len(samples) < 2 or any(s.size < 1 for s in samples):
        raise ValueError("group_difference_verdict needs at least 2 non-empty groups")
    if sum(s.size for s in samples) <= len(samples) or np.ptp(np.concatenate(samples)) == 0:
        return Verdict(
            INCONCLUSIVE,
            f"Kruskal-Wallis not computable ({sum(s.size for s in samples)} values)",
            "too few distinct values to compare the groups",
            {"n": int(sum(s.size for s in samples))},
        )
    h, p = stats.kruskal(*samples)
    medians = {k: float(np.median(v)) for k, v in groups.items()}
    statistic = (
        f"Kruskal-Wallis H = {h:.2f}, p = {p:.3g} across {len(samples)} groups "
        f"(medians of {what}: " + ", ".join(f"{k}: {_fmt(m)}" for k, m in medians.items()) + ")"
    )
    status: Status = SUPPORTED if p < alpha else INCONCLUSIVE
    reason = (
        f"the groups differ at level {alpha:g}"
        if p < alpha
        else f"no significant difference at level {alpha:g}"
    )
    return Verdict(
        status, statistic, reason, {"H": float(h), "p_value": float(p), "medians": medians}
    )


# The rule of a claim's one-word status, fixed before the re-runs (docs/sections/reproduce.md).
MIN_ASSESSABLE_FRAC = 0.5
CLAIM_RULE = (
    "only the paper's own parts decide: a claim is not supported when any paper part is not "
    "supported (the report names it); else not assessable at this scale when fewer than "
    f"{MIN_ASSESSABLE_FRAC:.0%} of its paper parts are assessable; else supported when every "
    "assessable paper part is supported; else inconclusive. A test the project adds (labelled "
    "added test) never decides the claim: it is reported beside it as a finding"
)

STATUS_MARK = {SUPPORTED: "✅", NOT_SUPPORTED: "❌", INCONCLUSIVE: "❔", NOT_ASSESSABLE: "⏸"}


def paper_parts(v: Verdict) -> list[Verdict]:
    """The parts of ``v`` that are statements of the paper (not added tests)."""
    return [p for p in v.parts if not p.added]


def added_parts(v: Verdict) -> list[Verdict]:
    """The parts of ``v`` the project added beyond the paper's statements."""
    return [p for p in v.parts if p.added]


def failing_paper_parts(v: Verdict) -> list[Verdict]:
    """The paper parts of ``v`` that are not supported (what "contradict" rests on)."""
    return [p for p in paper_parts(v) if p.status == NOT_SUPPORTED]


def added_test(v: Verdict, short: str = "") -> Verdict:
    """Mark ``v`` as a test the project adds (never deciding the claim); returns ``v``."""
    v.added = True
    if short:
        v.short = short
    return v


def parts_line(v: Verdict) -> str:
    """Every part's status, compact: ``width ✅ ✅ ✅ · depth ✅ · vs none ❌ (added)``
    (consecutive parts with the same label share it)."""
    groups: list[tuple[str, bool, list[str]]] = []
    for i, p in enumerate(v.parts):
        label = p.short or p.name or f"part {i + 1}"
        mark = STATUS_MARK.get(p.status, p.status)
        if groups and groups[-1][0] == label and groups[-1][1] == p.added:
            groups[-1][2].append(mark)
        else:
            groups.append((label, p.added, [mark]))
    return " · ".join(
        f"{label} {' '.join(marks)}" + (" (added)" if added else "")
        for label, added, marks in groups
    )


def combine_verdicts(
    parts: Sequence[Verdict], name: str = "", statistic: str | None = None
) -> Verdict:
    """Overall verdict of a multi-part claim by :data:`CLAIM_RULE` (added tests never decide).

    ``statistic`` is the headline shown for the whole claim (default: each part's status).
    """
    parts = list(parts)
    if not parts:
        raise ValueError("combine_verdicts needs at least one part")
    paper = [p.status for p in parts if not p.added]
    if not paper:
        raise ValueError("a claim needs at least one part that is a statement of the paper")
    assessable = [st for st in paper if st != NOT_ASSESSABLE]
    if NOT_SUPPORTED in paper:
        status: Status = NOT_SUPPORTED
    elif len(assessable) < MIN_ASSESSABLE_FRAC * len(paper) or not assessable:
        status = NOT_ASSESSABLE
    elif all(st == SUPPORTED for st in assessable):
        status = SUPPORTED
    else:
        status = INCONCLUSIVE
    reason = f"paper parts: {_count_statuses(paper)} ({len(assessable)} of {len(paper)} assessable)"
    added = [p.status for p in parts if p.added]
    if added:
        reason += f"; added tests (findings, not deciding): {_count_statuses(added)}"
    if statistic is None:
        statistic = "; ".join(
            f"{p.name or f'part {i + 1}'}: {p.status}" for i, p in enumerate(parts)
        )
    values = {"parts_line": parts_line(Verdict(status, "", "", parts=parts))}
    return Verdict(status, statistic, reason, values, parts, name)


def _count_statuses(statuses: list[str]) -> str:
    counts = {s: statuses.count(s) for s in _STATUSES if s in statuses}
    return ", ".join(f"{n} {s}" for s, n in counts.items())


def _residual_ranks(r: np.ndarray, rz: np.ndarray) -> np.ndarray:
    """Residuals of a least-squares fit ``r ~ a + b·rz`` along the last axis (rows = resamples)."""
    rc = r - r.mean(-1, keepdims=True)
    zc = rz - rz.mean(-1, keepdims=True)
    den = (zc * zc).sum(-1, keepdims=True)
    beta = np.divide((rc * zc).sum(-1, keepdims=True), den, out=np.zeros_like(den), where=den > 0)
    return rc - beta * zc


def _row_partial(xb: np.ndarray, yb: np.ndarray, zb: np.ndarray) -> np.ndarray:
    """Partial Spearman of each row triple (NaN where a residual is constant)."""
    rx, ry, rz = (stats.rankdata(a, axis=-1) for a in (xb, yb, zb))
    ex, ey = _residual_ranks(rx, rz), _residual_ranks(ry, rz)
    den = np.sqrt((ex * ex).sum(-1) * (ey * ey).sum(-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 1e-12, (ex * ey).sum(-1) / den, np.nan)


def partial_spearman(x: Sequence[float], y: Sequence[float], z: Sequence[float]) -> float:
    """Partial Spearman correlation ρ(x, y | z) (ranks, then residuals on rank(z))."""
    xa, ya, za = _finite(x, "x"), _finite(y, "y"), _finite(z, "z")
    if not xa.shape == ya.shape == za.shape:
        raise ValueError(f"x, y, z must have the same length, got {xa.size}, {ya.size}, {za.size}")
    if xa.size < 4:
        raise ValueError(f"a partial rank correlation needs at least 4 points, got {xa.size}")
    return float(_row_partial(xa[None], ya[None], za[None])[0])


def partial_spearman_bootstrap(
    x: Sequence[float],
    y: Sequence[float],
    z: Sequence[float],
    groups: Sequence[Any] | None = None,
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, float]:
    """ρ(x, y | z) with a percentile-bootstrap CI resampling whole ``groups`` (default: points)."""
    rho = partial_spearman(x, y, z)
    xa, ya, za = _finite(x, "x"), _finite(y, "y"), _finite(z, "z")
    labels = np.unique(
        np.asarray(groups if groups is not None else np.arange(xa.size)), return_inverse=True
    )[1]
    members = [np.flatnonzero(labels == g) for g in range(labels.max() + 1)]
    rng = np.random.default_rng(seed)
    boots = []
    for pick in rng.integers(0, len(members), (n_boot, len(members))):
        idx = np.concatenate([members[i] for i in pick])
        boots.append(_row_partial(xa[idx][None], ya[idx][None], za[idx][None])[0])
    b = np.asarray(boots)
    b = b[np.isfinite(b)]
    lo, hi = np.quantile(b, [alpha / 2, 1 - alpha / 2]) if b.size else (np.nan, np.nan)
    return {
        "rho": rho,
        "ci_low": float(lo),
        "ci_high": float(hi),
        "n": int(xa.size),
        "n_groups": len(members),
        "n_boot": int(b.size),
        "alpha": alpha,
    }


def partial_trend_verdict(
    x: Sequence[float],
    y: Sequence[float],
    z: Sequence[float],
    expected: str,
    groups: Sequence[Any] | None = None,
    margin: float = 0.1,
    n_boot: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
    names: tuple[str, str, str] = ("x", "y", "z"),
) -> Verdict:
    """Monotone relation of x and y given z (partial Spearman, group bootstrap); module doc."""
    _check_expected(expected)
    what = f"ρ({names[0]}, {names[1]} | {names[2]})"
    if (small := _too_few_rank_units(len(x), groups, what)) is not None:
        return small
    s = partial_spearman_bootstrap(x, y, z, groups, n_boot=n_boot, alpha=alpha, seed=seed)
    level = round(100 * (1 - alpha))
    statistic = (
        f"partial Spearman ρ({names[0]}, {names[1]} | {names[2]}) = {s['rho']:+.3f}, {level}% "
        f"bootstrap CI [{s['ci_low']:+.3f}, {s['ci_high']:+.3f}] ({s['n_groups']} groups "
        f"resampled, n = {s['n']})"
    )
    if not (np.isfinite(s["ci_low"]) and np.isfinite(s["ci_high"]) and np.isfinite(s["rho"])):
        return Verdict(INCONCLUSIVE, statistic, "the partial correlation is undefined", s)
    status, why = _side_rule(s["ci_low"], s["ci_high"], expected, margin)
    return Verdict(status, statistic, f"expected relation given {names[2]}: {expected}; {why}", s)


# Exact permutation tests enumerate all u! orders up to this many units (8! = 40,320);
# above it, MC_PERMUTATIONS random orders give a Monte-Carlo p-value (1 + #) / (1 + B).
EXACT_PERMUTATION_MAX = 8
MC_PERMUTATIONS = 20000


def min_units_permutation(alpha: float = 0.05) -> int:
    """Fewest units at which an exact two-sided permutation test of a (partial) rank
    correlation can reach ``p ≤ alpha``: the observed order and its reverse always give the
    same |ρ| (reversing x's ranks negates its residual), so ``p ≥ 2/u!`` (0.083 at u = 4)."""
    u = 2
    while 2.0 / math.factorial(u) > alpha:
        u += 1
    return u


def _permuted_rows(u: int, exact: bool, n_perm: int, rng: np.random.Generator):
    """Chunks of permutations of range(u) as (m, u) index arrays (all u! when ``exact``)."""
    import itertools

    if exact:
        it = itertools.permutations(range(u))
        while chunk := list(itertools.islice(it, 50000)):
            yield np.asarray(chunk)
    else:
        for b0 in range(0, n_perm, 50000):
            m = min(50000, n_perm - b0)
            yield np.argsort(rng.random((m, u)), axis=1)


def permutation_partial_spearman(
    x: Sequence[float],
    y: Sequence[float],
    z: Sequence[float],
    n_perm: int = MC_PERMUTATIONS,
    seed: int = 0,
) -> dict[str, Any]:
    """Two-sided permutation test of the partial Spearman ρ(x, y | z): ``x`` is permuted
    across the units (rows) while each unit keeps its (y, z); p = #{|ρ_π| ≥ |ρ|} / #π over all
    u! orders (exact, u ≤ :data:`EXACT_PERMUTATION_MAX`) or (1 + #) / (1 + B) over ``n_perm``
    random orders. ``p_min``: the smallest p attainable with these data (exact) or 1/(1 + B).
    An order whose x-ranks are a linear function of z's ranks leaves no residual: its partial
    correlation is undefined and counts as 0 (never as extreme)."""
    rho = partial_spearman(x, y, z)
    xa, ya, za = _finite(x, "x"), _finite(y, "y"), _finite(z, "z")
    u = xa.size
    rx, ry, rz = (stats.rankdata(a) for a in (xa, ya, za))
    ey = _residual_ranks(ry[None], rz[None])[0]
    zc = rz - rz.mean()
    exact = u <= EXACT_PERMUTATION_MAX
    chunks = []
    for idx in _permuted_rows(u, exact, n_perm, np.random.default_rng(seed)):
        ex = _residual_ranks(rx[idx], np.broadcast_to(zc, idx.shape))
        den = np.sqrt((ex * ex).sum(1) * (ey * ey).sum())
        chunks.append(np.abs(np.divide(ex @ ey, den, out=np.zeros(len(idx)), where=den > 1e-12)))
    r = np.concatenate(chunks)
    tol = 1e-9  # orders whose |ρ| equals the observed one up to rounding count as extreme
    n_ge = int((r >= abs(rho) - tol).sum())
    if exact:
        p, p_min = n_ge / r.size, float((r >= r.max() - tol).sum()) / r.size
    else:
        p, p_min = (1 + n_ge) / (1 + r.size), 1 / (1 + r.size)
    if not math.isfinite(rho):  # the observed partial correlation is undefined
        p = math.nan
    total = r.size
    return {
        "rho": rho,
        "p_value": float(p),
        "p_min": float(p_min),
        "n": int(u),
        "n_perm": int(total),
        "exact": bool(exact),
    }


def permutation_partial_verdict(
    x: Sequence[float],
    y: Sequence[float],
    z: Sequence[float],
    expected: str,
    alpha: float = 0.05,
    names: tuple[str, str, str] = ("x", "y", "z"),
    units: str = "units",
    seed: int = 0,
) -> Verdict:
    """Partial Spearman ρ(x, y | z) with a two-sided permutation p-value: supported when
    p ≤ ``alpha`` and ρ has the expected sign, not supported when p ≤ ``alpha`` and ρ has the
    other sign, else inconclusive (a permutation test cannot show "no effect"). Below
    :func:`min_units_permutation` units: "n too small"."""
    _check_expected(expected)
    what = f"permutation test of ρ({names[0]}, {names[1]} | {names[2]})"
    need = min_units_permutation(alpha)
    if len(x) < need:
        return _too_small(what, len(x), need, f"p ≤ {alpha:g} (p ≥ 2/u! with u {units})")
    t = permutation_partial_spearman(x, y, z, seed=seed)
    how = f"all {t['n_perm']} orders" if t["exact"] else f"{t['n_perm']} random orders"
    statistic = (
        f"partial Spearman ρ({names[0]}, {names[1]} | {names[2]}) = {t['rho']:+.3f}, permutation "
        f"p = {_fmt(t['p_value'])} ({how} of {names[0]} across {t['n']} {units}; smallest "
        f"attainable p {_fmt(t['p_min'])})"
    )
    want_pos = expected in ("positive", "increasing", "greater")
    if not np.isfinite(t["rho"]):
        return Verdict(INCONCLUSIVE, statistic, "the partial correlation is undefined", t)
    if t["p_value"] <= alpha:
        ok = (t["rho"] > 0) == want_pos
        status: Status = SUPPORTED if ok else NOT_SUPPORTED
        why = f"p ≤ {alpha:g} with the {'expected' if ok else 'opposite'} sign"
    else:
        status, why = INCONCLUSIVE, f"p > {alpha:g}"
    return Verdict(status, statistic, f"expected relation given {names[2]}: {expected}; {why}", t)


def minimum_units_rows(alpha: float = 0.05) -> list[list[Any]]:
    """The fewest units each interval or test of the reproduction is computed from, and why
    (below it the part prints "n too small"): rows ``[statistic, units, minimum, why]``."""
    return [
        [
            "paired Student-t CI (controls, changes)",
            "pairs",
            MIN_T_N,
            "with 2 pairs df = 1: the 95 % half-width is 12.7·sd/√2, an interval in name only",
        ],
        [
            "TOST equivalence (dHSIC stagnates)",
            "runs",
            MIN_T_N,
            "the same t-quantiles as the paired CI",
        ],
        [
            "bootstrap CI of a (partial) rank correlation",
            "points or resampled groups",
            MIN_RANK_UNITS,
            "u units give only C(2u−1, u) distinct resamples (10 at u = 3) and no ordering of 4 "
            "is significant at 5 %",
        ],
        [
            "permutation test of a (partial) rank correlation",
            "configurations",
            min_units_permutation(alpha),
            f"two-sided p ≥ 2/u! (an order and its reverse tie): 2/4! = {2 / 24:.3f} > {alpha:g}",
        ],
        [
            "bootstrap CI of a median",
            "values",
            min_n_median_ci(alpha),
            "[x₍₁₎, x₍ₙ₎] covers the median with probability 1 − 2·0.5ⁿ < 95 % below it",
        ],
    ]


def control_verdict(
    treated: Sequence[float],
    control: Sequence[float],
    expected: str = "less",
    alpha: float = 0.05,
    what: str = "HSIC",
    tname: str = "VCReg",
    cname: str = "control",
) -> Verdict:
    """Does X change ``what`` against an equal-budget control lacking X? Paired log-ratio t-CI.

    ``treated[i]`` and ``control[i]`` are one pair (same width, seed, data, budget); values must
    be > 0. Fewer than 2 pairs: inconclusive (a CI needs 2).
    """
    t, c = _finite(treated, "treated"), _finite(control, "control")
    if t.shape != c.shape:
        raise ValueError(f"treated and control must be paired, got {t.size} and {c.size}")
    if np.any(t <= 0) or np.any(c <= 0):
        raise ValueError(f"{what} values must be > 0 for a log-ratio comparison")
    if t.size < MIN_T_N:
        return _too_small(f"{tname} vs {cname}", t.size, MIN_T_N, "a paired t-CI")
    v = difference_verdict(
        np.log(t), np.log(c), expected, alpha, aname=f"log {what} {tname}", bname=cname
    )
    if "mean_diff" not in v.values:
        return v
    v.values["ratio"] = float(np.exp(v.values["mean_diff"]))
    v.statistic += f" (geometric-mean ratio {_fmt(v.values['ratio'])})"
    return v


def flag_low_accuracy(acc_by_config: dict[str, Sequence[float]], ratio: float) -> dict[str, float]:
    """Configurations whose mean accuracy is below ``ratio`` × the median configuration's.

    Returns ``{config: mean accuracy}`` of the flagged ones (empty when none, or < 3 configs:
    a median of fewer says nothing about what is typical).
    """
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio must be in (0, 1], got {ratio}")
    means = {k: float(np.mean(_finite(v, k))) for k, v in acc_by_config.items() if len(v)}
    if len(means) < 3:
        return {}
    cut = ratio * float(np.median(list(means.values())))
    return {k: m for k, m in means.items() if m < cut}


def not_assessable(name: str, reason: str, preset: str | None = "full") -> Verdict:
    """The verdict of a claim (or part) whose preconditions too few runs meet: ``reason`` says
    which and how many; ``preset`` is the one that would assess it."""
    hint = f"; `vcreg reproduce --preset {preset}` assesses it" if preset else ""
    values = {"preset": preset, "base_reason": reason}
    return Verdict(NOT_ASSESSABLE, reason, f"{reason}{hint}", values, [], name)


def retarget_hints(v: Verdict, running: str) -> Verdict:
    """Rewrite the "`--preset P` assesses it" hints of ``v`` (and its parts) that name the
    preset ``running`` — the run itself: its reason then says more runs are needed. In place."""
    if v.status == NOT_ASSESSABLE and v.values.get("preset") == running:
        v.reason = (
            f"{v.values.get('base_reason', v.statistic)}; this preset has too few runs meeting "
            "the preconditions for it (more seeds or configurations would assess it)"
        )
    for p in v.parts:
        retarget_hints(p, running)
    return v


def stability(rows: Sequence[dict]) -> str:
    """:data:`STABLE` when every analysis of a sensitivity table gives the main status, else
    :data:`CHANGES`."""
    return STABLE if all(r["agrees"] for r in rows) else CHANGES


def equivalence_verdict(
    values: Sequence[float],
    margin: float,
    alpha: float = 0.05,
    what: str = "mean",
    min_n: int = 3,
) -> Verdict:
    """ "Does not change": TOST of ``H0: |mean| ≥ margin`` (two one-sided Student-t tests at
    ``alpha``, i.e. the ``1 − 2·alpha`` t-CI inside ``±margin``). Supported when both reject;
    not supported when the ``1 − 2·alpha`` CI lies entirely outside ``±margin``; else
    inconclusive. Fewer than ``min_n`` values: inconclusive, "n too small"."""
    a = _finite(values, what)
    if margin <= 0:
        raise ValueError(f"margin must be > 0, got {margin}")
    if a.size < min_n:
        return Verdict(
            INCONCLUSIVE,
            f"n too small: {a.size} values (TOST needs ≥ {min_n})",
            "too few values for an equivalence test",
            {"n": int(a.size), "margin": margin},
        )
    m, se = float(a.mean()), float(a.std(ddof=1) / np.sqrt(a.size))
    df = a.size - 1
    tq = float(stats.t.ppf(1 - alpha, df))
    lo, hi = m - tq * se, m + tq * se
    if se > 0:
        p = max(float(stats.t.sf((m + margin) / se, df)), float(stats.t.cdf((m - margin) / se, df)))
    else:
        p = 0.0 if abs(m) < margin else 1.0
    level = round(100 * (1 - 2 * alpha))
    statistic = (
        f"{what} {m:+.3f}, {level}% CI [{lo:+.3f}, {hi:+.3f}] vs equivalence margin "
        f"±{_fmt(margin)} (TOST p = {p:.3g}, n = {a.size})"
    )
    vals = {"mean": m, "ci_low": lo, "ci_high": hi, "p_tost": p, "n": int(a.size), "margin": margin}
    if -margin < lo and hi < margin:
        return Verdict(SUPPORTED, statistic, f"the CI lies inside ±{_fmt(margin)}", vals)
    if lo >= margin or hi <= -margin:
        return Verdict(NOT_SUPPORTED, statistic, f"the CI lies outside ±{_fmt(margin)}", vals)
    return Verdict(INCONCLUSIVE, statistic, f"the CI crosses ±{_fmt(margin)}", vals)


def sensitivity_rows(main: Verdict, alternatives: dict[str, Verdict]) -> list[dict[str, Any]]:
    """One row per analysis (main first): status, statistic, and whether it agrees with main."""
    rows = [
        {
            "analysis": "main analysis",
            "status": main.status,
            "statistic": main.statistic,
            "agrees": True,
        }
    ]
    for name, v in alternatives.items():
        rows.append(
            {
                "analysis": name,
                "status": v.status,
                "statistic": v.statistic,
                "agrees": v.status == main.status,
            }
        )
    return rows
