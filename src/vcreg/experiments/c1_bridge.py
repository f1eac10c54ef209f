"""C1 — the bridge: VCReg's covariance term on random features = Σ pairwise HSIC.

For the element-wise random-feature projector ``g(x) = [φ(x_1) | … | φ(x_d)]`` (docs/PAPER.md, "Why
VCReg gives pairwise independence")::

    d·m·c(g(X)) − Σ_i ‖offdiag Cov(φ(X_i))‖_F²  =  Σ_{i≠j} tr(K_i H K_j H) / (n−1)²

with ``K_i = φ(X_i)φ(X_i)ᵀ`` (the random-feature kernel κ̂). The left side is computed with the
library's ``vcreg.functional.covariance_loss`` on the projector output; the right side directly
from the n×n kernel matrices, a different computation. As ``m`` grows, κ̂ → κ (Gaussian kernel)
and the right side approaches the same sum with the exact Gaussian kernel; the Monte-Carlo error
of random features is expected to decay like ``m^(-1/2)``.

Data with controlled dependence: ``X_0 = s_0`` and, for ``j ≥ 1``,
``X_j = λ·h_j(s_0) + sqrt(1 − λ²)·s_j`` with independent standard normal ``s`` and ``h_j``
alternating between the identity (linear dependence) and the standardised ``s_0² `` (nonlinear
dependence, uncorrelated with ``X_0``); columns are standardised. ``λ = 0`` is independence.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from vcreg.experiments.report import Figure, Paragraph, Table
from vcreg.experiments.runner import Context, Summary, Unit
from vcreg.experiments.verdicts import (
    Verdict,
    added_test,
    combine_verdicts,
    identity_verdict,
    sensitivity_rows,
    slope_verdict,
    trend_verdict,
)
from vcreg.functional import block_covariance_norms, covariance_loss
from vcreg.independence import hsic
from vcreg.projectors import RandomFeatureProjector

CLAIM_ID = "C1"
TITLE = "Bridge: VCReg covariance term = Σ pairwise HSIC"
CLAIM = (
    "For the element-wise random-feature projector, VCReg's covariance term c(g(X)) minus the "
    "marginal (per-feature) terms equals the sum of pairwise HSIC under the random-feature kernel "
    "κ̂ exactly, and approaches the sum of pairwise HSIC under the Gaussian kernel κ as the number "
    "of random features m grows."
)

_TOL_F64 = 1e-9  # relative error of an exact identity evaluated in float64 (eps ≈ 2e-16)
# float32 (eps ≈ 1.2e-7) over sums of up to d·m·n terms: the sensitivity row's tolerance
_TOL = {"f64": _TOL_F64, "f32": 1e-4}
_PREC = {"f64": "float64", "f32": "float32"}


def make_dependent_data(n: int, d: int, lam: float, seed: int) -> np.ndarray:
    """``(n, d)`` standardised data whose features depend on ``X_0`` with strength ``lam`` ∈ [0, 1]."""
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"dependence strength must be in [0, 1], got {lam}")
    if d < 2 or n < 4:
        raise ValueError(f"need d >= 2 features and n >= 4 samples, got d={d}, n={n}")
    rng = np.random.default_rng(seed)
    s = rng.standard_normal((n, d))
    sq = (s[:, 0] ** 2 - 1.0) / math.sqrt(2.0)  # standardised s0², uncorrelated with s0
    x = s.copy()
    for j in range(1, d):
        h = s[:, 0] if j % 2 == 0 else sq
        x[:, j] = lam * h + math.sqrt(max(1.0 - lam**2, 0.0)) * s[:, j]
    return (x - x.mean(0)) / x.std(0)


def _pair_sum(kernels: torch.Tensor) -> float:
    """Σ_{i≠j} tr(K_i H K_j H)/(n−1)² over ordered pairs, from (d, n, n) kernel matrices."""
    d, n, _ = kernels.shape
    kc = kernels - kernels.mean(1, keepdim=True)
    kc = kc - kc.mean(2, keepdim=True)  # H K H
    flat = kc.reshape(d, n * n)
    gram = flat @ flat.T  # tr(K_i H K_j H) = ⟨HK_iH, HK_jH⟩_F
    return float(gram.sum() - gram.diagonal().sum()) / (n - 1) ** 2


def _rf_kernels(phi: torch.Tensor) -> torch.Tensor:
    """κ̂ kernel matrices ``K_i = φ(X_i)φ(X_i)ᵀ`` from features (n, d, m) -> (d, n, n)."""
    return torch.einsum("aim,bim->iab", phi, phi)


def _rf_pair_sum(phi: torch.Tensor) -> float:
    """Same sum as ``_pair_sum(_rf_kernels(phi))``, via ‖Φ̄_iᵀΦ̄_j‖_F² when m is small (cheaper)."""
    n, d, m = phi.shape
    if d * m * m >= n * n:
        return _pair_sum(_rf_kernels(phi))
    blocks = block_covariance_norms(phi)  # ‖Cov(φ_i, φ_j)‖_F², the ICA contrast's blocks
    return float(blocks.sum() - blocks.diagonal().sum())


def _gaussian_kernels(x: torch.Tensor, bandwidth: float) -> torch.Tensor:
    diff = x.T[:, :, None] - x.T[:, None, :]  # (d, n, n)
    return torch.exp(-(diff**2) / (2 * bandwidth**2))


def _gaussian_pair_sum_library(x: np.ndarray, bandwidth: float) -> float:
    """The same exact-Gaussian sum through ``vcreg.independence.hsic``."""
    n, d = x.shape
    total = 0.0
    for i in range(d):
        for j in range(i + 1, d):
            h = hsic(x[:, i], x[:, j], kernel="gaussian", bandwidth=bandwidth, estimator="biased")
            total += 2.0 * float(h)
    return total * n**2 / (n - 1) ** 2  # HSIC_b has 1/n²; the bridge's normalisation is 1/(n−1)²


def _identity_terms(x: torch.Tensor, m: int, bandwidth: float, seed: int) -> dict[str, float]:
    n, d = x.shape
    proj = RandomFeatureProjector(
        d, features_per_dim=m, bandwidth=bandwidth, seed=seed, scale="kernel"
    )
    z = proj(x)
    total = float(covariance_loss(z)) * d * m  # Σ_{a≠b} C_ab² over all d·m features
    phi = proj.feature_map(x)  # (n, d, m)
    phic = phi - phi.mean(0, keepdim=True)
    marginal = 0.0
    for i in range(d):
        cov = phic[:, i].T @ phic[:, i]
        marginal += float(cov.pow(2).sum() - cov.diagonal().pow(2).sum()) / (n - 1) ** 2
    direct = _pair_sum(_rf_kernels(phi))
    return {
        "vcreg_total": total,
        "marginal": marginal,
        "via_vcreg": total - marginal,
        "direct": direct,
    }


def plan(settings: dict[str, Any]) -> list[Unit]:
    n, d, ms = settings["n"], settings["d"], settings["m_grid"]
    cost = 1e-9 * n * n * d * (sum(ms) + settings["m_identity"]) * settings["rf_seeds"] + 0.05
    keys = ("n", "d", "m_identity", "m_grid", "rf_seeds", "bandwidth", "seed")
    return [
        Unit(
            "C1",
            {"lam": float(lam), **{k: settings[k] for k in keys}, "version": 2},
            f"λ={lam:g}",
            weight=cost,
        )
        for lam in settings["dependence"]
    ]


def run_unit(unit: Unit, ctx: Context) -> dict[str, Any]:
    p = unit.params
    n, d, bw = p["n"], p["d"], p["bandwidth"]
    x_np = make_dependent_data(n, d, p["lam"], p["seed"])
    x64 = torch.from_numpy(x_np)
    ident, ident32 = [], []
    for r in range(p["rf_seeds"]):
        ident.append(_identity_terms(x64, p["m_identity"], bw, seed=1000 + r))
        ident32.append(_identity_terms(x64.float(), p["m_identity"], bw, seed=1000 + r))
    exact = _pair_sum(_gaussian_kernels(x64, bw))
    exact_lib = _gaussian_pair_sum_library(x_np, bw)
    linear_c = float(covariance_loss(x64)) * d  # Σ_{i≠j} C(X)_ij²: VCReg without a projector
    conv: dict[str, list[float]] = {}
    for mi, m in enumerate(p["m_grid"]):
        vals = []
        for r in range(p["rf_seeds"]):
            # fresh frequencies for every m (not nested prefixes): independent errors across m,
            # as the least-squares CI of the log-log slope assumes
            seed = 100_000 * (mi + 1) + r
            proj = RandomFeatureProjector(
                d, features_per_dim=m, bandwidth=bw, seed=seed, scale="kernel"
            )
            phi = proj.feature_map(x64)
            vals.append(_rf_pair_sum(phi))
        conv[str(m)] = vals
    return {
        "lam": p["lam"],
        "identity_f64": ident,
        "identity_f32": ident32,
        "exact_gaussian": exact,
        "exact_gaussian_library": exact_lib,
        "linear_cov": linear_c,
        "rf_sums": conv,
    }


def _rel(a: float, b: float, scale: float) -> float:
    return abs(a - b) / max(abs(scale), 1e-300)


def _errors(values: list[dict[str, Any]], which: str) -> list[float]:
    return [_rel(t["via_vcreg"], t["direct"], t["vcreg_total"]) for v in values for t in v[which]]


def _conv_error(v: dict[str, Any], m: float, how: str) -> float:
    """Relative error of the random-feature sums at ``m`` over feature seeds: RMS or max."""
    dev = np.array(v["rf_sums"][str(int(m))]) - v["exact_gaussian"]
    agg = math.sqrt(np.mean(dev**2)) if how == "rms" else float(np.max(np.abs(dev)))
    return agg / v["exact_gaussian"]


def statistics(
    settings: dict[str, Any],
    values: list[dict[str, Any]],
    precision: str = "f64",
    conv_error: str = "rms",
) -> dict[str, Any]:
    """Identity errors, convergence fits and the dependence trend (one analysis choice)."""
    ms = np.array(settings["m_grid"], dtype=float)
    err = _errors(values, f"identity_{precision}")
    v_ident = identity_verdict(err, _TOL[precision], f"relative error ({_PREC[precision]})")
    v_ident.name, v_ident.short = "exact identity (κ̂)", "identity"
    conv_rows, slopes, curves = [], [], {}
    for v in values:
        curve = np.array([_conv_error(v, m, conv_error) for m in ms])
        curves[v["lam"]] = curve
        if v["lam"] > 0:
            sv = slope_verdict(ms, curve, expected_slope=-0.5)
            sv.name = f"convergence λ={v['lam']:g}"
            slopes.append(sv)
            conv_rows.append(
                [
                    v["lam"],
                    sv.values["slope"],
                    sv.values["ci_low"],
                    sv.values["ci_high"],
                    sv.values["r2"],
                    curve[0],
                    curve[-1],
                ]
            )
    xs = [v["lam"] for v in values for _ in v["identity_f64"]]
    ys = [t["via_vcreg"] for v in values for t in v["identity_f64"]]
    v_trend = trend_verdict(
        xs, ys, "increasing", xname="λ", yname="c(g(X))·dm − marginal", n_boot=1000
    )
    # not a sentence of the paper's C1 (identity, convergence): the project's added check that
    # the covariance term moves with the dependence it is meant to measure
    v_trend.name = "tracks dependence"
    added_test(v_trend, "tracks dependence")
    lib_err = [
        _rel(v["exact_gaussian_library"], v["exact_gaussian"], v["exact_gaussian"])
        for v in values
        if v["exact_gaussian_library"] is not None
    ]
    return {
        "err": err,
        "err32": _errors(values, "identity_f32"),
        "precision": precision,
        "ident": v_ident,
        "slopes": slopes,
        "conv_rows": conv_rows,
        "curves": curves,
        "trend": v_trend,
        "lib_err": lib_err,
        "ms": ms,
    }


def verdict(st: dict[str, Any]) -> Verdict:
    slopes = st["slopes"]
    slope_vals = [s.values["slope"] for s in slopes]
    v_conv = combine_verdicts(slopes, name="convergence κ̂ → κ (all λ > 0)")
    v_conv.short = "convergence"
    t = st["trend"]
    trend = (
        f"ρ(λ, covariance term) = {t.values['rho']:+.2f} "
        f"[{t.values['ci_low']:+.2f}, {t.values['ci_high']:+.2f}]"
        if "rho" in t.values
        else t.statistic
    )
    headline = (
        f"identity max rel. error {max(st['err']):.1e} ({_PREC[st['precision']]}); convergence "
        f"slopes {min(slope_vals):.2f} … {max(slope_vals):.2f} "
        f"({sum(s.status == 'supported' for s in slopes)}/{len(slopes)} significantly < 0); "
        f"added test: {trend}"
    )
    return combine_verdicts([st["ident"], v_conv, t], name="C1", statistic=headline)


def sensitivity(settings: dict[str, Any], values: list[dict[str, Any]], main: Verdict) -> list:
    alts = {
        "identity checked in float32 (tolerance 1e-4)": verdict(
            statistics(settings, values, precision="f32")
        ),
        "convergence of the max error over feature seeds (not RMS)": verdict(
            statistics(settings, values, conv_error="max")
        ),
    }
    return sensitivity_rows(main, alts)


def figures(settings: dict[str, Any], values: list[dict[str, Any]], st: dict, ctx: Context):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    err64, err32, ms, curves = st["err"], st["err32"], st["ms"], st["curves"]
    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    a = [t["via_vcreg"] for v in values for t in v["identity_f64"]]
    b = [t["direct"] for v in values for t in v["identity_f64"]]
    ax[0].scatter(
        b, a, c=[v["lam"] for v in values for _ in v["identity_f64"]], cmap="viridis", s=18
    )
    lim = [0, max(max(a), max(b)) * 1.05]
    ax[0].plot(lim, lim, "k--", lw=1, label="y = x")
    ax[0].set_xlabel("Σ pairwise HSIC_κ̂ (kernel matrices)")
    ax[0].set_ylabel("d·m·c(g(X)) − marginal terms")
    ax[0].set_title(f"exact identity (m = {settings['m_identity']})")
    ax[0].legend()
    ax[1].semilogy(range(len(err64)), np.maximum(err64, 1e-18), "o", ms=3, label="float64")
    ax[1].semilogy(range(len(err32)), np.maximum(err32, 1e-18), "s", ms=3, label="float32")
    ax[1].axhline(_TOL_F64, color="k", ls=":", label="float64 tolerance")
    ax[1].set_xlabel("case (λ × random-feature seed)")
    ax[1].set_ylabel("relative error")
    ax[1].set_title("identity error")
    ax[1].legend()
    f_ident = ctx.save_figure(fig, "c1_identity")

    fig, ax = plt.subplots(figsize=(6, 4.5))
    for lam, rms in curves.items():
        ax.loglog(ms, rms, "o-", ms=4, label=f"λ = {lam:g}")
    ref = curves[max(curves)][0] * (ms / ms[0]) ** -0.5
    ax.loglog(ms, ref, "k--", lw=1, label="slope −1/2")
    ax.set_xlabel("random features per dimension m")
    ax.set_ylabel("relative RMS error vs Gaussian-kernel HSIC")
    ax.set_title("Σ HSIC_κ̂ → Σ HSIC_κ")
    ax.legend(fontsize=8)
    f_conv = ctx.save_figure(fig, "c1_convergence")

    fig, ax = plt.subplots(figsize=(6, 4.5))
    lams = [v["lam"] for v in values]
    via = [np.mean([t["via_vcreg"] for t in v["identity_f64"]]) for v in values]
    ax.plot(
        lams, via, "o-", label=f"VCReg on g(X): d·m·c − marginal (m = {settings['m_identity']})"
    )
    ax.plot(lams, [v["exact_gaussian"] for v in values], "s--", label="Σ HSIC, Gaussian kernel")
    ax.plot(
        lams, [v["linear_cov"] for v in values], "^:", label="VCReg on X (no projector): Σ C_ij²"
    )
    ax.set_xlabel("dependence strength λ")
    ax.set_ylabel("value")
    ax.legend(fontsize=8)
    ax.set_title("the covariance term tracks (nonlinear) dependence")
    f_dep = ctx.save_figure(fig, "c1_dependence")
    return f_ident, f_conv, f_dep


def _identity_rows(values: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for v in values:
        t = v["identity_f64"]
        rows.append(
            [
                v["lam"],
                float(np.mean([x["vcreg_total"] for x in t])),
                float(np.mean([x["marginal"] for x in t])),
                float(np.mean([x["via_vcreg"] for x in t])),
                float(np.mean([x["direct"] for x in t])),
                max(_rel(x["via_vcreg"], x["direct"], x["vcreg_total"]) for x in t),
                v["exact_gaussian"],
                v["linear_cov"],
            ]
        )
    return rows


def blocks(settings: dict[str, Any], st: dict[str, Any], rows: list, figs: tuple) -> list:
    f_ident, f_conv, f_dep = figs
    ms, slopes = st["ms"], st["slopes"]
    n_match = sum(s.values["matches_expected_rate"] for s in slopes)
    out = [
        Table(
            [
                "λ",
                "d·m·c(g(X))",
                "marginal terms",
                "difference",
                "Σ HSIC_κ̂ (direct)",
                "max rel. error",
                "Σ HSIC_κ (Gaussian)",
                "Σ C(X)²_ij (linear)",
            ],
            rows,
            caption=f"Identity at m = {settings['m_identity']} (float64, mean over random-feature seeds)",
        ),
        Figure(f_ident, "Left: VCReg side vs HSIC side (every λ and seed). Right: relative error."),
        Table(
            [
                "λ",
                "slope",
                "CI low",
                "CI high",
                "R²",
                f"error m={int(ms[0])}",
                f"error m={int(ms[-1])}",
            ],
            st["conv_rows"],
            caption="Log-log fit of the relative RMS error of Σ HSIC_κ̂ vs Σ HSIC_κ against m",
        ),
        Figure(f_conv, "Convergence of the random-feature HSIC to the Gaussian-kernel HSIC."),
        Paragraph(
            f"Fitted slopes consistent with the Monte-Carlo rate −1/2 for {n_match} of "
            f"{len(slopes)} dependence levels. float32 identity error: max "
            f"{max(st['err32']):.2e} (float64: {max(st['err']):.2e})."
        ),
        Figure(f_dep, "VCReg's covariance term vs dependence strength."),
        Paragraph(
            "With the x² dependence the features are uncorrelated, so VCReg applied to X "
            "directly (no projector) misses part of the dependence; through the random-feature "
            "projector the covariance term measures it."
        ),
    ]
    if st["lib_err"]:
        out.append(
            Paragraph(
                "Cross-check: `vcreg.independence.hsic` (biased, fixed bandwidth, rescaled by "
                f"n²/(n−1)²) agrees with the direct Gaussian-kernel sum to {max(st['lib_err']):.1e} "
                "relative error."
            )
        )
    return out


def measurement(settings: dict[str, Any]) -> str:
    return (
        f"n = {settings['n']} samples of d = {settings['d']} standardised features with "
        f"dependence strength λ ∈ {settings['dependence']} (X_j = λ·h(X_0) + noise, h alternating "
        f"linear / x²). Projector: element-wise random Fourier features of the Gaussian kernel "
        f"at the kernel scale sqrt(2/m)·cos (σ = {settings['bandwidth']}), m = "
        f"{settings['m_identity']} per dimension for the identity, m ∈ {settings['m_grid']} for "
        f"the convergence, {settings['rf_seeds']} random-feature seeds. Left side with "
        "`vcreg.functional.covariance_loss` on g(X); right side from the n×n kernel matrices; "
        "Gaussian-kernel reference tr(K_i H K_j H)/(n−1)² with exact kernels."
    )


def summarize(settings: dict[str, Any], values: list[dict[str, Any]], ctx: Context) -> Summary:
    st = statistics(settings, values)
    v = verdict(st)
    rows = _identity_rows(values)
    figs = figures(settings, values, st, ctx)
    numbers = {
        "rows": rows,
        "identity_rel_error_f64_max": max(st["err"]),
        "identity_rel_error_f32_max": max(st["err32"]),
        "library_crosscheck_rel_error_max": max(st["lib_err"]) if st["lib_err"] else None,
        "convergence": {str(k): c.tolist() for k, c in st["curves"].items()},
        "m_grid": settings["m_grid"],
        "slopes": st["conv_rows"],
        "n_slopes_matching_minus_half": sum(
            s.values["matches_expected_rate"] for s in st["slopes"]
        ),
    }
    return Summary(
        measurement(settings),
        v,
        numbers,
        blocks(settings, st, rows, figs),
        sensitivity=sensitivity(settings, values, v),
        scale=(
            f"C1: n = {settings['n']}, d = {settings['d']}, {len(values)} dependence levels, "
            f"m ≤ {max(settings['m_grid'])}, {settings['rf_seeds']} random-feature seeds"
        ),
    )
