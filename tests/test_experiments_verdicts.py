"""Verdict logic of ``vcreg reproduce`` on synthetic numbers with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from vcreg.experiments.verdicts import (
    CHANGES,
    INCONCLUSIVE,
    MIN_ASSESSABLE_FRAC,
    MIN_RANK_UNITS,
    MIN_T_N,
    NOT_ASSESSABLE,
    NOT_SUPPORTED,
    STABLE,
    SUPPORTED,
    Verdict,
    added_parts,
    combine_verdicts,
    control_verdict,
    difference_verdict,
    equivalence_verdict,
    failing_paper_parts,
    fit_loglog_slope,
    flag_low_accuracy,
    identity_verdict,
    min_units_permutation,
    minimum_units_rows,
    not_assessable,
    paper_parts,
    partial_spearman,
    partial_trend_verdict,
    parts_line,
    permutation_partial_spearman,
    permutation_partial_verdict,
    retarget_hints,
    sensitivity_rows,
    slope_verdict,
    spearman_bootstrap,
    stability,
    threshold_verdict,
    trend_verdict,
)


def test_identity_verdict():
    assert identity_verdict([1e-16, 3e-15], tol=1e-9).status == SUPPORTED
    v = identity_verdict([1e-16, 2e-3], tol=1e-9)
    assert v.status == NOT_SUPPORTED
    assert v.values["max_error"] == pytest.approx(2e-3)
    with pytest.raises(ValueError, match="NaN"):
        identity_verdict([np.nan], tol=1.0)


def test_trend_verdict_directions():
    rng = np.random.default_rng(0)
    x = np.arange(30, dtype=float)
    y = -x + rng.normal(0, 1, 30)
    assert trend_verdict(x, y, "decreasing").status == SUPPORTED
    assert trend_verdict(x, y, "increasing").status == NOT_SUPPORTED
    # pure noise with few points: the CI straddles 0
    noise = trend_verdict(np.arange(6.0), rng.normal(size=6), "decreasing", margin=0.0)
    assert noise.status == INCONCLUSIVE
    assert noise.values["ci_low"] <= 0 <= noise.values["ci_high"]


def test_trend_verdict_equivalence_margin():
    rng = np.random.default_rng(1)
    x = rng.normal(size=4000)
    y = rng.normal(size=4000)  # independent: ρ ≈ 0 with a tight CI
    v = trend_verdict(x, y, "decreasing", margin=0.1, n_boot=300)
    assert v.status == NOT_SUPPORTED
    assert "no effect" in v.reason


def test_spearman_bootstrap_matches_scipy_and_groups():
    rng = np.random.default_rng(2)
    x = rng.normal(size=40)
    y = x + rng.normal(size=40)
    s = spearman_bootstrap(x, y, n_boot=500)
    assert s["rho"] == pytest.approx(stats.spearmanr(x, y)[0])
    assert s["ci_low"] < s["rho"] < s["ci_high"]
    # the bootstrap distribution is that of scipy's ρ on resamples
    rng_b = np.random.default_rng(0)
    ref = [stats.spearmanr(x[i], y[i])[0] for i in rng_b.integers(0, 40, (500, 40))]
    assert s["ci_low"] == pytest.approx(np.quantile(ref, 0.025))
    assert s["ci_high"] == pytest.approx(np.quantile(ref, 0.975))
    g = spearman_bootstrap(x, y, n_boot=200, groups=np.repeat(np.arange(10), 4))
    assert g["rho"] == pytest.approx(s["rho"])
    assert g["ci_low"] < g["rho"] < g["ci_high"]
    with pytest.raises(ValueError, match="same length"):
        spearman_bootstrap([1, 2, 3], [1, 2])


def test_difference_verdict_t_interval():
    a = np.array([1.0, 1.2, 0.9, 1.1, 1.05])
    b = a + np.array([0.5, 0.45, 0.55, 0.5, 0.52])
    v = difference_verdict(a, b, "less")
    assert v.status == SUPPORTED
    d = a - b
    half = stats.t.ppf(0.975, 4) * d.std(ddof=1) / np.sqrt(5)
    assert v.values["ci_low"] == pytest.approx(d.mean() - half)
    assert difference_verdict(a, b, "greater").status == NOT_SUPPORTED
    mixed = difference_verdict([1.0, 2.0, 3.0], [1.5, 1.5, 2.5], "less")
    assert mixed.status == INCONCLUSIVE
    with pytest.raises(ValueError, match="paired"):
        difference_verdict([1.0, 2.0], [1.0], "less")


def test_slope_verdict_recovers_known_rate():
    m = 2.0 ** np.arange(2, 12)
    rng = np.random.default_rng(3)
    err = 3.0 * m**-0.5 * np.exp(rng.normal(0, 0.05, m.size))
    v = slope_verdict(m, err, expected_slope=-0.5)
    assert v.status == SUPPORTED
    assert v.values["slope"] == pytest.approx(-0.5, abs=0.05)
    assert v.values["matches_expected_rate"]
    ref = stats.linregress(np.log10(m), np.log10(err))
    assert fit_loglog_slope(m, err)["slope"] == pytest.approx(ref.slope)
    flat = slope_verdict(m, np.exp(rng.normal(0, 0.5, m.size)))
    assert flat.status in (INCONCLUSIVE, NOT_SUPPORTED)
    assert slope_verdict(m, m**0.7).status == NOT_SUPPORTED
    with pytest.raises(ValueError, match="positive"):
        fit_loglog_slope([1, 2, 3], [1, 0, 2])


def test_threshold_verdict():
    assert threshold_verdict([0.01, 0.02, 0.015, 0.03, 0.02, 0.01], 0.1, "less").status == SUPPORTED
    assert threshold_verdict([0.5, 0.6, 0.55, 0.7, 0.6, 0.5], 0.1, "less").status == NOT_SUPPORTED
    # a 95% CI of a median needs n >= 6 (order statistics: 1 - 2*0.5^n >= 0.95)
    small = threshold_verdict([0.01, 0.02, 0.015, 0.03, 0.02], 0.1, "less")
    assert small.status == INCONCLUSIVE and "n too small" in small.statistic
    assert small.values["min_n"] == 6


def test_combine_and_roundtrip():
    s = Verdict(SUPPORTED, "a", "r")
    n = Verdict(NOT_SUPPORTED, "b", "r")
    i = Verdict(INCONCLUSIVE, "c", "r")
    assert combine_verdicts([s, s]).status == SUPPORTED
    assert combine_verdicts([s, i]).status == INCONCLUSIVE
    assert combine_verdicts([s, i, n]).status == NOT_SUPPORTED
    c = combine_verdicts([s, i], name="X", statistic="headline")
    assert c.statistic == "headline"
    assert Verdict.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown verdict status"):
        Verdict("maybe", "", "")


def test_group_difference_verdict_matches_scipy():
    from vcreg.experiments.verdicts import group_difference_verdict

    a, b, c = [1.0, 1.1, 0.9, 1.05], [2.0, 2.1, 1.9, 2.2], [3.0, 3.2, 2.9, 3.1]
    v = group_difference_verdict({"1": a, "2": b, "3": c})
    assert v.status == SUPPORTED
    assert v.values["p_value"] == pytest.approx(stats.kruskal(a, b, c).pvalue)
    same = group_difference_verdict({"1": [1.0, 2.0, 3.0], "2": [1.1, 2.1, 2.9]})
    assert same.status == INCONCLUSIVE


def _plain_partial(x, y, z):
    """First-order partial correlation of Spearman coefficients (textbook formula)."""
    rxy = stats.spearmanr(x, y)[0]
    rxz = stats.spearmanr(x, z)[0]
    ryz = stats.spearmanr(y, z)[0]
    return (rxy - rxz * ryz) / np.sqrt((1 - rxz**2) * (1 - ryz**2))


def test_partial_spearman_matches_formula_and_removes_a_confound():
    rng = np.random.default_rng(0)
    z = rng.normal(size=300)
    x = z + 0.5 * rng.normal(size=300)  # both driven by z only
    y = z + 0.5 * rng.normal(size=300)
    assert partial_spearman(x, y, z) == pytest.approx(_plain_partial(x, y, z), abs=1e-12)
    assert stats.spearmanr(x, y)[0] > 0.6  # the raw correlation is the confound's
    assert abs(partial_spearman(x, y, z)) < 0.15
    # confound controlled away: the verdict cannot call it supported
    v = partial_trend_verdict(x, y, z, "decreasing", groups=np.arange(300) // 3, n_boot=300)
    assert v.status != SUPPORTED
    # a real conditional effect survives: y falls with x given z
    y2 = z - x + 0.3 * rng.normal(size=300)
    v2 = partial_trend_verdict(x, y2, z, "decreasing", groups=np.arange(300) // 3, n_boot=300)
    assert v2.status == SUPPORTED and v2.values["rho"] < -0.5
    assert v2.values["n_groups"] == 100


def test_partial_bootstrap_by_group_is_wider_than_by_point():
    """Seeds of one configuration are not independent: resampling configurations widens the CI."""
    rng = np.random.default_rng(1)
    cfg_effect = rng.normal(size=8)
    g = np.repeat(np.arange(8), 6)
    z = rng.normal(size=48)
    x = cfg_effect[g] + 0.05 * rng.normal(size=48)
    y = -cfg_effect[g] + 0.05 * rng.normal(size=48)
    by_pt = partial_trend_verdict(x, y, z, "decreasing", n_boot=400)
    by_cfg = partial_trend_verdict(x, y, z, "decreasing", groups=g, n_boot=400)
    w_pt = by_pt.values["ci_high"] - by_pt.values["ci_low"]
    w_cfg = by_cfg.values["ci_high"] - by_cfg.values["ci_low"]
    assert w_cfg > w_pt


def test_control_verdict_on_log_ratios():
    rng = np.random.default_rng(2)
    control = np.exp(rng.normal(size=6))
    v = control_verdict(control / 4.0 * np.exp(0.05 * rng.normal(size=6)), control)
    assert v.status == SUPPORTED and v.values["ratio"] == pytest.approx(0.25, rel=0.1)
    assert control_verdict(control * 3.0, control).status == NOT_SUPPORTED
    assert control_verdict([0.1], [0.2]).status == INCONCLUSIVE  # one pair: n too small
    with pytest.raises(ValueError, match="> 0"):
        control_verdict([0.0, 1.0], [1.0, 1.0])


def test_flag_low_accuracy_and_sensitivity_rows():
    acc = {"a": [0.66, 0.68], "b": [0.70, 0.71], "c": [0.45, 0.47], "d": [0.64, 0.65]}
    assert set(flag_low_accuracy(acc, 0.85)) == {"c"}  # median 0.655 -> cut 0.557
    assert flag_low_accuracy({"a": [0.1], "b": [0.9]}, 0.85) == {}  # < 3 configurations
    with pytest.raises(ValueError, match="ratio"):
        flag_low_accuracy(acc, 1.5)
    main = Verdict(SUPPORTED, "s", "r")
    rows = sensitivity_rows(
        main, {"alt 1": Verdict(SUPPORTED, "s1", "r"), "alt 2": Verdict(INCONCLUSIVE, "s2", "r")}
    )
    assert [r["agrees"] for r in rows] == [True, True, False]
    assert stability(rows) == CHANGES == "changes under other analysis choices"
    assert stability(rows[:2]) == STABLE == "stable"


def test_c5_sensitivity_rows_recompute_the_verdict_under_fixed_alternatives():
    from vcreg.experiments import c5_ica

    rng = np.random.default_rng(0)
    amari = list(0.07 + 0.005 * rng.standard_normal(12))  # below 0.1, above 0.05
    st = {
        "amari": {"VCRegICA": amari, "FastICA": amari, "Picard": amari},
        "mcc": {"VCRegICA": list(0.98 + 0.001 * rng.standard_normal(12))},
        "family_amari": [0.06, 0.07, 0.08, 0.065, 0.075, 0.07],
        "family_mcc": [0.97, 0.98, 0.99, 0.975, 0.985, 0.98],
        "lin": [{}] * 12,
        "nonlin": [{}] * 6,
        "nl_mcc": [0.5, 0.55, 0.6, 0.52, 0.58, 0.54],
        "control": [0.99, 0.98, 0.99, 0.97, 0.98, 0.99],
    }
    main = c5_ica.verdict(st)
    assert main.status == "supported"
    rows = {r["analysis"]: r for r in c5_ica.sensitivity(st, main)}
    assert rows["main analysis"]["agrees"]
    assert rows["stricter threshold: Amari < 0.05"]["status"] == "not supported"
    assert not rows["stricter threshold: Amari < 0.05"]["agrees"]
    # each alternative states what it computed, not the main headline
    assert "threshold 0.05" in rows["stricter threshold: Amari < 0.05"]["statistic"]
    assert "MCC" in rows["MCC > 0.9 instead of Amari < 0.1"]["statistic"]
    for name in set(c5_ica.SENSITIVITY) - {"stricter threshold: Amari < 0.05"}:
        assert rows[name]["status"] == "supported", name
    # two nonlinear seeds: no interval from n = 2, the part says "n too small"
    st2 = {**st, "nonlin": [{}] * 2, "nl_mcc": [0.5, 0.55], "control": [0.99, 0.98]}
    part = c5_ica.verdict(st2).parts[1]
    assert part.status == "inconclusive" and "n too small" in part.statistic
    # two nonlinear seeds: no interval from n = 2, the part says "n too small"
    st2 = {**st, "nonlin": [{}] * 2, "nl_mcc": [0.5, 0.55], "control": [0.99, 0.98]}
    part = c5_ica.verdict(st2).parts[1]
    assert part.status == "inconclusive" and "n too small" in part.statistic


def test_t_intervals_need_three_pairs():
    two = difference_verdict([1.0, 2.0], [3.0, 4.5], "less")
    assert two.status == INCONCLUSIVE and "n too small" in two.statistic
    assert control_verdict([0.1, 0.2], [0.3, 0.5]).status == INCONCLUSIVE


def test_equivalence_verdict_is_tost_with_the_stated_margin():
    rng = np.random.default_rng(0)
    flat = 0.01 * rng.standard_normal(20)
    v = equivalence_verdict(flat, 0.1)
    assert v.status == SUPPORTED
    # TOST p-value written plainly: the larger of the two one-sided t-test p-values
    m, se = flat.mean(), flat.std(ddof=1) / np.sqrt(20)
    p = max(stats.t.sf((m + 0.1) / se, 19), stats.t.cdf((m - 0.1) / se, 19))
    assert v.values["p_tost"] == pytest.approx(p)
    half = stats.t.ppf(0.95, 19) * se  # 90% CI: 1 - 2*alpha
    assert v.values["ci_low"] == pytest.approx(m - half)
    falling = -0.3 + 0.01 * rng.standard_normal(20)
    assert equivalence_verdict(falling, 0.1).status == NOT_SUPPORTED
    noisy = 0.3 * rng.standard_normal(6)
    assert equivalence_verdict(noisy, 0.1).status == INCONCLUSIVE
    assert "n too small" in equivalence_verdict([0.0, 0.01], 0.1).statistic


def test_not_assessable_parts_count_against_enough_assessable():
    na = not_assessable("p", "1/6 runs meet the preconditions", "full")
    assert na.status == NOT_ASSESSABLE and "--preset full" in na.reason
    ok = Verdict(SUPPORTED, "s", "r")
    inc = Verdict(INCONCLUSIVE, "s", "r")
    # half of the paper parts assessable is enough (MIN_ASSESSABLE_FRAC = 0.5) ...
    assert MIN_ASSESSABLE_FRAC == 0.5
    assert combine_verdicts([ok, na]).status == SUPPORTED
    assert combine_verdicts([inc, na]).status == INCONCLUSIVE
    # ... fewer is not
    assert combine_verdicts([ok, na, na]).status == NOT_ASSESSABLE
    assert combine_verdicts([na, inc, na]).status == NOT_ASSESSABLE
    assert combine_verdicts([na]).status == NOT_ASSESSABLE
    # a failing paper part decides whatever else is missing
    assert combine_verdicts([na, na, Verdict(NOT_SUPPORTED, "s", "r")]).status == NOT_SUPPORTED
    assert Verdict.from_dict(na.to_dict()).status == NOT_ASSESSABLE


def _part(status: str, short: str, added: bool = False) -> Verdict:
    return Verdict(
        status, f"{short} statistic", "r", name=f"{short} part", short=short, added=added
    )


def test_added_tests_never_decide_the_claim():
    """The rule of the one-word status (verdicts.CLAIM_RULE), every combination of paper parts
    and an added test."""
    s, n, i, a = SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE, NOT_ASSESSABLE
    cases = [
        # (paper part statuses, added test status, claim status)
        ([s, s, s], n, s),  # every paper part passes, the added test fails: still supported
        ([s, s, s], s, s),
        ([s, s, n], s, n),  # a failing paper part: not supported, whatever the added test
        ([s, s, n], n, n),
        ([s, i, s], n, i),
        ([s, i, s], s, i),
        ([s, a, a], n, a),  # 1 of 3 assessable: too few, even with a failing added test
        ([s, s, a], n, s),
        ([i, a], s, i),
    ]
    for paper, added, want in cases:
        parts = [_part(st, f"p{k}") for k, st in enumerate(paper)] + [_part(added, "x", True)]
        v = combine_verdicts(parts, name="C")
        assert v.status == want, (paper, added, v.status)
        assert failing_paper_parts(v) == [p for p in parts if p.status == n and not p.added]
        assert added_parts(v) == parts[-1:] and paper_parts(v) == parts[:-1]
        assert "added tests (findings, not deciding)" in v.reason
    with pytest.raises(ValueError, match="statement of the paper"):
        combine_verdicts([_part(s, "x", True)])


def test_parts_line_shows_every_part_and_labels_added_tests():
    parts = [_part(SUPPORTED, "width") for _ in range(3)]
    parts += [_part(SUPPORTED, "random"), _part(NOT_ASSESSABLE, "depth")]
    parts += [_part(NOT_SUPPORTED, "vs none", added=True)]
    v = combine_verdicts(parts, name="C2")
    want = "width ✅ ✅ ✅ · random ✅ · depth ⏸ · vs none ❌ (added)"
    assert parts_line(v) == want and v.values["parts_line"] == want
    assert v.status == SUPPORTED  # 4 of 5 paper parts assessable, all supported
    back = Verdict.from_dict(v.to_dict())
    assert back == v and back.parts[-1].added and back.parts[0].short == "width"
    # a dict written before the fields existed still loads
    old = {"status": SUPPORTED, "statistic": "s", "reason": "r", "values": {}, "parts": []}
    assert Verdict.from_dict(old).added is False


def test_retarget_hints_when_the_run_is_the_suggested_preset():
    na = not_assessable("p", "3 of 6 runs meet the preconditions", "full")
    claim = combine_verdicts([Verdict(SUPPORTED, "s", "r"), na], name="C")
    retarget_hints(claim, "quick")
    assert "--preset full" in claim.parts[1].reason
    retarget_hints(claim, "full")  # a full run never tells its reader to run full
    assert "--preset full" not in claim.parts[1].reason
    assert claim.parts[1].reason.startswith("3 of 6 runs meet the preconditions; this preset")


def _plain_partial_spearman(x, y, z) -> float:
    """Partial Spearman written out: ranks, least-squares residuals on [1, rank z], Pearson."""
    rx, ry, rz = (stats.rankdata(a) for a in (x, y, z))
    design = np.column_stack([np.ones_like(rz), rz])
    ex = rx - design @ np.linalg.lstsq(design, rx, rcond=None)[0]
    ey = ry - design @ np.linalg.lstsq(design, ry, rcond=None)[0]
    if np.abs(ex).max() < 1e-9:  # x's ranks a linear function of z's: undefined, counted as 0
        return 0.0
    return float(np.corrcoef(ex, ey)[0, 1])


def _plain_permutation_p(x, y, z) -> tuple[float, float]:
    """Two-sided p over every order of x (and the smallest attainable p), by enumeration."""
    import itertools

    obs = abs(_plain_partial_spearman(x, y, z))
    rs = [
        abs(_plain_partial_spearman(x[list(p)], y, z))
        for p in itertools.permutations(range(len(x)))
    ]
    rs = np.array(rs)
    return float(np.mean(rs >= obs - 1e-9)), float(np.mean(rs >= rs.max() - 1e-9))


def test_permutation_test_of_the_partial_correlation_matches_enumeration():
    rng = np.random.default_rng(3)
    for u, strength in ((5, 1.0), (6, 0.3), (7, 1.0), (7, 0.0)):
        z = rng.normal(size=u)
        x = rng.normal(size=u)
        y = -strength * x + 0.8 * z + 0.5 * rng.normal(size=u)
        t = permutation_partial_spearman(x, y, z)
        p, p_min = _plain_permutation_p(x, y, z)
        assert t["exact"] and t["n_perm"] == np.prod(range(1, u + 1))
        assert t["rho"] == pytest.approx(_plain_partial_spearman(x, y, z), abs=1e-12)
        assert t["p_value"] == pytest.approx(p, abs=1e-12)
        assert t["p_min"] == pytest.approx(p_min, abs=1e-12)
        assert t["p_min"] >= 2 / np.prod(range(1, u + 1)) - 1e-12  # an order and its reverse


def test_permutation_monte_carlo_agrees_with_enumeration(monkeypatch):
    import vcreg.experiments.verdicts as V

    rng = np.random.default_rng(5)
    x, z = rng.normal(size=7), rng.normal(size=7)
    y = -0.6 * x + 0.5 * z + 0.5 * rng.normal(size=7)
    p, _ = _plain_permutation_p(x, y, z)
    monkeypatch.setattr(V, "EXACT_PERMUTATION_MAX", 6)
    t = V.permutation_partial_spearman(x, y, z, n_perm=20000, seed=1)
    assert not t["exact"] and t["n_perm"] == 20000
    assert abs(t["p_value"] - p) < 4 * np.sqrt(p * (1 - p) / 20000) + 1 / 20001


def test_permutation_verdict_and_its_minimum_units():
    # two-sided p >= 2/u!: 2/4! = 0.083 > 0.05 >= 2/5! = 0.017
    assert min_units_permutation(0.05) == 5 and min_units_permutation(0.01) == 6
    x = np.arange(4.0)
    small = permutation_partial_verdict(x, -x, x[::-1] * 0 + [0, 1, 0, 1], "decreasing")
    assert small.status == INCONCLUSIVE and "n too small" in small.statistic
    rng = np.random.default_rng(0)
    x, z = np.arange(8.0), rng.normal(size=8)
    assert permutation_partial_verdict(x, -x + 0.01 * z, z, "decreasing").status == SUPPORTED
    assert permutation_partial_verdict(x, x + 0.01 * z, z, "decreasing").status == NOT_SUPPORTED
    noise = permutation_partial_verdict(x, rng.normal(size=8), z, "decreasing")
    assert noise.status == INCONCLUSIVE and "p > 0.05" in noise.reason
    rows = minimum_units_rows()
    assert {r[2] for r in rows} == {MIN_T_N, MIN_RANK_UNITS, 5, 6}


def test_group_bootstrap_needs_enough_groups():
    """With 2 groups the percentile 'interval' collapses (here to [+1, +1]): n too small."""
    x = np.array([1.0, 1.1, 2.0, 2.1])
    z = np.array([0.5, 0.4, 0.6, 0.7])
    g = [0, 0, 1, 1]
    v = partial_trend_verdict(x, -x, z, "decreasing", groups=g, n_boot=200)
    assert v.status == INCONCLUSIVE and "n too small (2" in v.statistic
    v = trend_verdict(x, -x, "decreasing", groups=g, n_boot=200)
    assert v.status == INCONCLUSIVE and v.values["min_n"] == MIN_RANK_UNITS
    # resampling points is unaffected
    assert trend_verdict([1, 2, 3, 4, 5], [5, 4, 3, 2, 1], "decreasing").status == SUPPORTED


def test_rank_trend_from_too_few_points_is_n_too_small():
    """A full run printed ρ = −0.87, CI [−1.00, −0.87] from 3 points. With u ≤ 4 points no
    ordering is significant at 5 % (exact permutation test, written out here), so no interval."""
    from itertools import permutations

    for u in (3, 4):
        x = np.arange(u, dtype=float)
        rhos = [stats.spearmanr(x, p)[0] for p in permutations(x)]
        p_best = np.mean(np.abs(rhos) >= 1 - 1e-12)  # the most extreme ordering
        assert p_best > 0.05
        v = trend_verdict(x, -x, "decreasing", n_boot=200)
        assert v.status == INCONCLUSIVE and v.values["min_n"] == MIN_RANK_UNITS
        assert "n too small" in v.statistic
    x5 = np.arange(5, dtype=float)
    assert np.mean([abs(stats.spearmanr(x5, p)[0]) >= 1 - 1e-12 for p in permutations(x5)]) < 0.05
    assert trend_verdict(x5, -x5, "decreasing", n_boot=200).status == SUPPORTED
    z = np.array([0.1, 0.3, 0.2, 0.4])
    v = partial_trend_verdict(np.arange(4.0), -np.arange(4.0), z, "decreasing", n_boot=200)
    assert v.status == INCONCLUSIVE and "n too small (4" in v.statistic
