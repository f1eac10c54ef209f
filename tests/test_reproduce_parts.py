"""C2–C4 verdicts from synthetic training runs with known answers: every claim is decomposed
into the paper's statements plus labelled added tests, and only the paper's parts decide
(verdicts.CLAIM_RULE); C3 rests on the runs through a projector and reports dHSIC under the
per-variable median convention; C4 states a permutation p-value beside its bootstrap CI."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from vcreg.experiments import c2_projector, c3_dynamics, c4_ood
from vcreg.experiments._training import c2_specs
from vcreg.experiments.report_sections import _conclusion, _findings
from vcreg.experiments.verdicts import (
    NOT_SUPPORTED,
    SUPPORTED,
    failing_paper_parts,
    parts_line,
)

SETTINGS = {
    "repr_dim": 64,
    "seeds": [0, 1, 2],
    "kinds": ["trained", "frozen", "random_features"],
    "widths": [128, 256, 512],
    "depths": [1, 2, 3],
    "depth_width": 256,
    "losses": [],
    "loss_spec": "256-128",
    "controls": ["nu0", "no_projector"],
    "control_widths": [128, 512],
    "reference_width": 512,
    "guard_ratio": 0.85,
}
N_EVAL = 512


def _hsic(spec, trend: float) -> float:
    """Known answers: HSIC ∝ width^trend through a projector, 10× higher without the covariance
    term, half the reference's without projector, growing with depth."""
    jitter = 1.0 + 0.01 * spec.seed
    if spec.kind == "none":
        return 0.5 / 512 * jitter
    base = 0.01 * (spec.width / 128.0) ** trend
    if spec.nu == 0.0:
        base *= 10.0
    if spec.depth != 2 and spec.kind == "trained":
        base = 0.01 * spec.depth / 2 * (256 / 128.0) ** trend
    return base * jitter


def _value(spec, trend: float, dhsic_median: str | None) -> dict:
    """One cached unit value (the shape run_training stores)."""
    h = _hsic(spec, trend)
    fall = 0.1 if spec.kind == "none" else 0.6  # end / epoch-1 HSIC
    measures = {
        "pairwise_hsic_mean": h,
        "pairwise_nhsic_mean": 10 * h,
        "dhsic": 0.004,
        "hsic_unbiased": h,
        "hsic_fixed_bw": h,
        "emb_std_mean": 1.0,
        "emb_hinge_frac": 0.97,
        "emb_at_hinge_frac": 0.97,
        "emb_offdiag_excess": 2.0,
        "dhsic_p": 0.01,
    }
    history = []
    for ep, ratio in ((0, 0.5), (1, 1.0), (2, 0.8), (3, fall)):
        row = {"epoch": ep, "pairwise_hsic_mean": h / fall * ratio, "linear_acc": 0.7}
        row["pairwise_nhsic_mean"] = 10 * row["pairwise_hsic_mean"]
        row["dhsic"] = 0.004 * (1 + 0.001 * ((ep + spec.seed) % 3))  # stagnates
        if dhsic_median == "saturated":
            row.update(dhsic_median=None, dhsic_floor=1 / N_EVAL)
        elif dhsic_median == "moving":
            row.update(dhsic_median=(1 + ep) / N_EVAL, dhsic_floor=1 / N_EVAL)
        history.append(row)
    return {
        "history": history,
        "initial": {**measures, "linear_acc": 0.3},
        "final": measures,
        "acc_id": 0.7,
        "acc_train": 0.72,
        "ood": {"shift": 0.5},
        "train_seconds": 1.0,
    }


def _values(s: dict, trend: float = -1.0, dhsic_median: str | None = None) -> list[dict]:
    return [_value(r, trend, dhsic_median) for r in c2_specs(s)]


def test_c2_added_test_failing_never_makes_the_claim_not_supported():
    v = c2_projector.verdict(c2_projector.statistics(SETTINGS, _values(SETTINGS)))
    assert v.status == SUPPORTED
    assert parts_line(v) == (
        "width ✅ ✅ ✅ · vs ν=0 ✅ · random ✅ ✅ · depth ✅ · vs none ❌ (added)"
    )
    (added,) = [p for p in v.parts if p.added]
    assert added.status == NOT_SUPPORTED and "no projector" in added.name
    assert "added test, vs none: ratio 2.56" in v.statistic
    # the report: no "contradict" sentence, the failing added test stated as a finding
    assert _conclusion("C2", v) == []
    (finding,) = _findings(v)
    assert "Added tests" in finding.text and "❌ not supported" in finding.text


def test_c2_failing_paper_part_is_named_in_the_contradiction():
    v = c2_projector.verdict(c2_projector.statistics(SETTINGS, _values(SETTINGS, trend=+1.0)))
    assert v.status == NOT_SUPPORTED
    failing = failing_paper_parts(v)
    assert [p.short for p in failing] == ["width", "width", "width"]
    (text,) = _conclusion("C2", v)
    assert "contradict the paper's claim C2** in 3 parts" in text.text
    assert "wider → lower hsic (trained MLP)" in text.text and "no projector" not in text.text


def test_c2_design_parts_the_preset_lacks_are_not_assessable():
    s = {**SETTINGS, "depths": [2], "kinds": ["trained", "random_features"]}
    v = c2_projector.verdict(c2_projector.statistics(s, _values(s)))
    depth = [p for p in v.parts if p.short == "depth"]
    assert depth[0].status == "not assessable at this scale"
    assert "no depth sweep in this preset" in depth[0].statistic
    assert v.status == SUPPORTED  # 4 of 5 paper parts assessable and supported
    assert parts_line(v).endswith("depth ⏸ · vs none ❌ (added)")


def _c3_settings(s: dict) -> dict:
    return {"train": copy.deepcopy(s), "loss": "vicreg", "width": 512, "kind": "trained"}


def test_c3_rests_on_runs_through_a_projector():
    st = c3_dynamics.statistics(_c3_settings(SETTINGS), _values(SETTINGS))
    v = c3_dynamics.verdict(st)
    assert all(r["kind"] != "none" for r in st["family"])
    assert {r["kind"] for r in st["no_projector"]} == {"none"} and len(st["no_projector"]) == 3
    # the projector runs fall by 40 % from epoch 1, the no-projector runs by 90 %: the
    # headline mean is the projector runs' alone
    assert f"over {len(st['family'])} VCReg-family runs through a projector" in v.statistic
    assert "from epoch 1: -40.0%" in v.statistic
    assert "no-projector runs (apart, not in the verdict): -90.0% over 3 runs" in v.statistic
    assert v.status == SUPPORTED  # falls, and dHSIC stagnates; the ν = 0 comparison is added
    assert [p.added for p in v.parts] == [False, False, True]


def test_c3_median_convention_row_and_old_records_without_it():
    s3 = _c3_settings(SETTINGS)
    old = _values(SETTINGS)  # cache records from before the field
    rows = c3_dynamics.sensitivity(s3, old, c3_dynamics.verdict(c3_dynamics.statistics(s3, old)))
    assert c3_dynamics.MEDIAN_ROW not in [r["analysis"] for r in rows]
    (note,) = c3_dynamics.median_convention_blocks(c3_dynamics.statistics(s3, old))
    assert "not measured in these runs" in note.text
    # saturated under per-variable medians at every epoch: "stagnates" holds trivially there
    sat = _values(SETTINGS, dhsic_median="saturated")
    st = c3_dynamics.statistics(s3, sat, dkey="dhsic_median")
    stag = [p for p in st["parts"] if p.short == "dHSIC stagnates"][0]
    assert stag.status == SUPPORTED and stag.values["mean"] == 0.0
    table, finding = c3_dynamics.median_convention_blocks(c3_dynamics.statistics(s3, sat))
    assert "holds trivially" in finding.text
    n_fam = len(c3_dynamics.statistics(s3, sat)["family"])
    assert [row[0] for row in table.rows] == [0, 1, 2, 3]
    assert all(row[5] == f"{n_fam} of {n_fam}" for row in table.rows)  # all saturated
    # moving with the epochs under that convention: the row disagrees with the main verdict
    mov = _values(SETTINGS, dhsic_median="moving")
    main = c3_dynamics.verdict(c3_dynamics.statistics(s3, mov))
    rows = c3_dynamics.sensitivity(s3, mov, main)
    (row,) = [r for r in rows if r["analysis"] == c3_dynamics.MEDIAN_ROW]
    assert row["status"] == NOT_SUPPORTED and not row["agrees"]
    table, finding = c3_dynamics.median_convention_blocks(c3_dynamics.statistics(s3, mov))
    assert "can move" in finding.text and "0 of" in finding.text
    assert [row[3] for row in table.rows] == pytest.approx([1.0, 2.0, 3.0, 4.0])


def test_c4_states_an_exact_permutation_p_beside_the_bootstrap():
    recs = []
    rng = np.random.default_rng(0)
    for c in range(8):  # 8 configurations × 2 seeds, OOD accuracy falling with HSIC
        for seed in range(2):
            hsic = 0.001 * (c + 1) * (1 + 0.05 * seed)
            recs.append(
                {
                    "config_id": f"vicreg/trained/{c}",
                    "seed": seed,
                    "loss": "vicreg",
                    "nu": None,
                    "kind": "trained",
                    "hsic": hsic,
                    "acc_id": 0.8 + 0.01 * rng.normal(),
                    "acc_ood": 0.6 - 10 * hsic + 0.002 * rng.normal(),
                    "acc_monitor": 0.7,
                    "acc_init": 0.3,
                    "emb_at_hinge_frac": 0.97,
                    "emb_offdiag_excess": 2.0,
                }
            )
    v = c4_ood.domain_verdict(recs, {}, n_boot=500)
    perm = v.values["permutation"]
    assert perm["exact"] and perm["n_perm"] == 40320 and perm["n"] == 8
    assert perm["p_value"] < 0.01 and perm["p_min"] >= 2 / 40320
    assert "permutation p = " in v.statistic and "8 configuration means" in v.statistic
    alone = c4_ood.domain_verdict(recs, {}, n_boot=500, test="permutation")
    assert alone.status == SUPPORTED and "all 40320 orders" in alone.statistic
