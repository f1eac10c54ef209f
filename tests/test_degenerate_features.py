"""Dead and near-dead features (issue #30 item 5): reported by rule, in the user's numbering.

Reference: a plain per-column count with ``collections.Counter`` (distinct values, rows off the
most common value), written here independently of the implementation.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from vcreg.cli import main
from vcreg.independence import degenerate_features, measure_embeddings
from vcreg.independence.health import near_constant_limit


def _features(n: int = 600, seed: int = 0) -> tuple[np.ndarray, dict[str, list[int]]]:
    """ReLU-like features with dead, near-dead, spiky and binary units at known columns; dead
    columns come first, so positions after dropping them differ from the input's numbers."""
    rng = np.random.default_rng(seed)
    z = np.maximum(rng.standard_normal((n, 24)), 0)
    truth = {"constant": [0, 3, 11], "near_constant": [5, 14, 20], "single_spike": [14],
             "few_distinct": [17, 22]}  # fmt: skip
    z[:, [0, 3]] = 0.0
    z[:, 11] = 2.5  # dead at a non-zero value
    for j, k in ((5, 4), (14, 1), (20, 6)):  # fires on k rows only
        z[:, j] = 0.0
        z[rng.choice(n, k, replace=False), j] = rng.uniform(1, 3, k)
    z[:, 17] = rng.integers(0, 3, n)  # 3 levels
    z[:, 22] = (rng.random(n) < 0.2) * 1.0  # binary, 20 % ones
    return z, truth


def _reference(z: np.ndarray) -> dict[str, list[int]]:
    limit = max(5, int(np.ceil(0.01 * len(z))))
    out = {"constant": [], "near_constant": [], "single_spike": [], "few_distinct": []}
    for j in range(z.shape[1]):
        counts = Counter(z[:, j].tolist())
        off = len(z) - max(counts.values())
        if len(counts) == 1:
            out["constant"].append(j)
        elif off <= limit:
            out["near_constant"].append(j)
            if off == 1:
                out["single_spike"].append(j)
        elif len(counts) <= 3:
            out["few_distinct"].append(j)
    return out


def test_rules_match_a_plain_count_and_are_invariant_to_shift_and_scale():
    z, truth = _features()
    got = degenerate_features(z)
    for key, cols in truth.items():
        assert got[key] == cols == _reference(z)[key], key
    assert near_constant_limit(600) == 6 and got["near_constant_rows"] == 6
    spike = next(d for d in got["details"] if d["feature"] == 14)
    assert spike == {"feature": 14, "n_distinct": 2, "rows_off_mode": 1, "mode": 0.0}
    moved = degenerate_features(z * 7.0 - 1e3)  # every value stays exact in float64
    for key in truth:
        assert moved[key] == got[key]
    noise = np.random.default_rng(1).standard_normal((600, 20))
    assert not any(degenerate_features(noise)[k] for k in truth)


def test_report_uses_the_input_numbering_and_leaks_no_warning():
    z, truth = _features(n=1500)
    extra = [1, 2, 7, 8, 9]  # more units that fire once: some miss the 512-row subsample below
    z[:, extra] = 0.0
    z[np.random.default_rng(2).choice(1500, 5, replace=False), extra] = 1.0
    truth["near_constant"] = sorted(truth["near_constant"] + extra)
    truth["single_spike"] = sorted(truth["single_spike"] + extra)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. a ConstantVariableWarning about kept positions
        rep = measure_embeddings(z, method="exact", test="none", max_samples=None)
    assert rep["constant_features"] == truth["constant"]
    deg = rep["degenerate_features"]
    for key, cols in truth.items():
        assert deg[key] == cols, key
    # units firing on 1-6 of 1500 rows: constant on mutual dependence's 512-row subsample
    note = next(n for n in rep["notes"] if n.startswith("mutual dependence"))
    named = [int(i) for i in note.split(": ")[-1].split(", ")]
    assert named and set(named) <= set(truth["near_constant"]), note
    assert "collapsed" in rep["feature_std"]["meaning"]
    assert set(truth["constant"]) <= set(rep["feature_std"]["collapsed"])


def test_cli_prints_one_line_with_the_rules_in_the_input_numbering(tmp_path: Path):
    z, truth = _features()
    np.save(tmp_path / "f.npy", z)
    res = CliRunner().invoke(
        main,
        ["measure", str(tmp_path / "f.npy"), "--out", str(tmp_path / "o"), "--no-dhsic",
         "--method", "exact", "--no-progress"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    line = next(ln for ln in res.output.splitlines() if ln.startswith("dead / near-dead"))
    assert "3 constant [0, 3, 11]" in line
    assert (
        "3 near-constant (<= 6 rows off the most common value; 1 a single spike) [5, 14, 20]"
        in (line)
    )
    assert "2 with 2-3 distinct values [17, 22]" in line
    assert "collapsed (std <= 0.01 x the RMS of all entries; includes the constant ones)" in line
    assert "warning" not in res.output.lower()
    pairs = next(ln for ln in res.output.splitlines() if ln.startswith("pairs significant"))
    rep = json.loads((tmp_path / "o" / "independence.json").read_text())
    untested = rep["pairwise_tests"]["n_not_tested"]
    assert untested > 0 and f"; {untested} not tested (" in pairs  # e.g. (5, 14): 4 x 1 rows
    assert rep["pairwise_tests"]["n_pairs"] + untested == 21 * 20 // 2
    rep = json.loads((tmp_path / "o" / "independence.json").read_text())
    assert rep["degenerate_features"]["rules"]["near_constant"].startswith("at most 6 of the 600")


@pytest.mark.parametrize("bad", [np.zeros(5), np.zeros((0, 3))])
def test_bad_shapes(bad):
    with pytest.raises(ValueError, match="2-D"):
        degenerate_features(bad)


def test_feature_label_dependence_equals_the_plain_formula():
    """The label section in one product == per feature tr(KHLH) / sqrt(tr(KHKH) tr(LHLH)) with
    linear kernels K = z z^T and L = Y Y^T (one-hot Y), H = I - 11^T / n, written out here."""
    rng = np.random.default_rng(3)
    n, d = 120, 9
    y = rng.integers(0, 4, n)
    z = rng.standard_normal((n, d))
    z[:, 2] += y == 1
    z[:, 7] += 0.5 * y
    rep = measure_embeddings(z, labels=y, method="exact", test="none", top_k=d)
    h = np.eye(n) - 1.0 / n
    ell = h @ np.eye(4)[y] @ np.eye(4)[y].T @ h
    ref = []
    for j in range(d):
        k = h @ np.outer(z[:, j], z[:, j]) @ h
        ref.append(np.sum(k * ell) / np.sqrt(np.sum(k * k) * np.sum(ell * ell)))
    got = {f["feature"]: f["nhsic"] for f in rep["labels"]["most_label_dependent_features"]}
    np.testing.assert_allclose([got[j] for j in range(d)], ref, rtol=1e-10)
    assert rep["labels"]["feature_label_nhsic_mean"] == pytest.approx(np.mean(ref), rel=1e-10)
    assert list(got)[:2] == [7, 2]
