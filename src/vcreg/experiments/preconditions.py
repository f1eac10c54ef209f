"""Preconditions of the SSL claims (C2, C3, C4), fixed in code before the data.

The paper's claims are about networks trained *to* the VCReg constraint. A run enters a claim's
statistics only when it meets these preconditions (each measured on held-out test signals at
the end of training):

* **trained**: its linear-probe accuracy (the trainer's closed-form ridge probe) exceeds the
  same probe on the *random-init encoder of the same architecture and seed* by at least
  :data:`PROBE_MARGIN` (absolute accuracy) — otherwise training taught the encoder nothing the
  claims could be about;
* **at the constraint** (runs whose loss has VICReg's variance hinge and the covariance term:
  VICReg with the official ν): :func:`vcreg.diagnostics.constraint_met` — ≥ 90 % of embedding
  dimensions with std ≥ 0.9 × the hinge target and the mean squared off-diagonal correlation of
  the embedding below 10 × its independent-features level. The hinge target
  (:func:`vcreg.diagnostics.hinge_target`) is ≈ γ for projectors narrow relative to the training
  batch and, for wider ones, the std at which the variance term's pull balances the covariance
  term's sampling part plus the residual correlation the γ rule tolerates: a projector wider
  than ~3× the batch cannot hold γ however long it trains, so every width is held to the same
  residual correlation (docs/sections/training.md, "Wide projectors: the hinge a batch
  allows"); and settled there: its logged variance term (the mean std deficit below γ) changed
  by at most :data:`~vcreg.training.regime.CONVERGED_TOL` over the last quarter of the epochs.
  Barlow Twins and W-MSE have no variance hinge
  (W-MSE whitens exactly; Barlow Twins' target is the cross-correlation), and the controls
  lack the term under test (ν = 0) or the projector by design: for them only "trained" applies.

A claim is **not assessable at this scale** when fewer than :data:`MIN_VALID_FRAC` of its
VCReg-family runs meet the preconditions, or a verdict part is left with fewer runs than its
statistic needs; excluded runs are listed with their reasons. "Not supported" is never
concluded from runs outside the regime.
"""

from __future__ import annotations

from typing import Any

from vcreg.diagnostics import constraint_met
from vcreg.experiments.verdicts import Verdict, not_assessable
from vcreg.training.regime import CONVERGED_TOL, variance_term_change

__all__ = [
    "PROBE_MARGIN",
    "MIN_VALID_FRAC",
    "PRECONDITION_TEXT",
    "run_failures",
    "gate",
    "claim_gate",
    "precondition_rows",
]

PROBE_MARGIN = 0.05  # probe accuracy above the random-init encoder's (absolute)
MIN_VALID_FRAC = 0.5  # of a claim's VCReg-family runs

PRECONDITION_TEXT = (
    f"a run counts when its ridge-probe accuracy exceeds the random-init encoder's (same "
    f"architecture and seed) by ≥ {PROBE_MARGIN:g}, and — for VICReg with the official ν — it "
    "ended at the VCReg constraint (≥ 90 % of embedding dims with std ≥ 0.9 × the hinge target "
    "γ·(1 + F)^(−1/3), F = 8ν(k−1)/(μ(n−1)) the covariance term's sampling pull at std γ for "
    "embedding width k and batch n — ≈ γ for narrow projectors, the std the loss can hold for "
    "wide ones — and mean squared off-diagonal correlation < 10 × its independent-features "
    "level 1/(n−1)) and settled there (its variance term changed by ≤ "
    f"{CONVERGED_TOL:g} over the last quarter of the epochs); a claim needs "
    f"≥ {MIN_VALID_FRAC:.0%} of its VCReg-family runs to count"
)


def _needs_constraint(r: dict[str, Any]) -> bool:
    return r["loss"] == "vicreg" and r.get("nu") is None and r["kind"] != "none"


def run_failures(r: dict[str, Any]) -> list[str]:
    """Why run record ``r`` misses the preconditions (empty: it meets them)."""
    out = []
    if r["loss"] == "supervised":
        return out
    acc, init = r.get("acc_monitor"), r.get("acc_init")
    if acc is None or init is None:
        out.append("probe accuracy or random-init baseline not measured")
    elif acc < init + PROBE_MARGIN:
        out.append(f"not trained (probe {acc:.3f} < random-init {init:.3f} + {PROBE_MARGIN:g})")
    if _needs_constraint(r):
        keys = ("emb_at_target_frac", "emb_at_hinge_frac", "emb_offdiag_excess")
        met = constraint_met({k: r.get(k) for k in keys})
        if met is None:
            out.append("embedding diagnostics not measured")
        elif not met:
            frac, exc = _at_target(r), r.get("emb_offdiag_excess")
            target = r.get("emb_hinge_target")
            tgt_s = f" (target std {target:.2f})" if target is not None and target < 1 else ""
            exc_s = f", off-diag {exc:.1f}× indep." if exc is not None else ""
            out.append(f"constraint not met ({100 * frac:.0f} % dims at hinge{tgt_s}{exc_s})")
        change = variance_term_change(r.get("history") or [])
        if change is not None and change > CONVERGED_TOL:
            out.append(
                f"not settled (variance term changed by {change:.3f} over the last quarter of "
                f"the epochs > {CONVERGED_TOL:g})"
            )
    return out


def _at_target(r: dict[str, Any]) -> float | None:
    """Fraction of dims at the hinge target (records before the target: at 0.9·γ)."""
    frac = r.get("emb_at_target_frac")
    return r.get("emb_at_hinge_frac") if frac is None else frac


def gate(recs: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """``(valid records, {run label: reasons})`` — the records meeting the preconditions."""
    valid, excluded = [], {}
    for r in recs:
        why = run_failures(r)
        if why:
            excluded[f"{r['config_id']} seed={r['seed']}"] = why
        else:
            valid.append(r)
    return valid, excluded


def claim_gate(
    claim: str, family: list[dict[str, Any]], preset: str | None = "full"
) -> Verdict | None:
    """None when enough of the claim's VCReg-family runs ``family`` meet the preconditions,
    else the claim's "not assessable at this scale" verdict (with the count and the reasons)."""
    n = len(family)
    ok = sum(not run_failures(r) for r in family)
    if n and ok / n >= MIN_VALID_FRAC:
        return None
    reasons: dict[str, int] = {}
    for r in family:
        for why in run_failures(r):
            key = why.split(" (")[0]
            reasons[key] = reasons.get(key, 0) + 1
    top = ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items(), key=lambda kv: -kv[1]))
    return not_assessable(
        claim,
        f"{ok}/{n} VCReg-family runs meet the preconditions (need ≥ {MIN_VALID_FRAC:.0%}; "
        f"{top or 'no runs'})",
        preset,
    )


def precondition_rows(recs: list[dict[str, Any]]) -> list[list[Any]]:
    """Table rows per run: config, seed, probe, random-init probe, hinge target, dims at the
    target, dims at 0.9·γ, off-diagonal excess, counts (yes/no) and why not."""
    rows = []
    for r in recs:
        why = run_failures(r)
        rows.append(
            [
                r["config_id"],
                r["seed"],
                r.get("acc_monitor"),
                r.get("acc_init"),
                r.get("emb_hinge_target"),
                _at_target(r),
                r.get("emb_at_hinge_frac"),
                r.get("emb_offdiag_excess"),
                "yes" if not why else "no",
                "; ".join(why),
            ]
        )
    return rows


PRECONDITION_HEADER = [
    "run",
    "seed",
    "probe acc",
    "random-init probe",
    "hinge target",
    "dims at target",
    "dims ≥ 0.9·γ",
    "off-diag r² / indep.",
    "counts",
    "why not",
]
