"""``vcreg measure`` on saved embeddings (random, planted dependence, all file formats)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from vcreg import independence as ind
from vcreg._io import atomic_write
from vcreg.cli import main


def run(*args: str):
    return CliRunner().invoke(main, ["measure", *args, "--no-progress"], catch_exceptions=False)


def embeddings(n=200, d=12, planted=None, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, d))
    if planted is not None:
        i, j = planted
        z[:, j] = np.cos(2 * z[:, i]) + 0.2 * rng.standard_normal(n)  # uncorrelated, dependent
    return z


def test_random_embeddings_npy(tmp_path: Path):
    np.save(tmp_path / "emb.npy", embeddings())
    res = run(str(tmp_path / "emb.npy"), "--out", str(tmp_path / "out"))
    assert res.exit_code == 0, res.output
    out = tmp_path / "out"
    rep = json.loads((out / "independence.json").read_text())
    assert rep["input"]["n_samples_used"] == 200 and rep["input"]["n_features"] == 12
    nh = rep["pairwise_nhsic"]
    assert nh["n_pairs"] == 66 and 0 <= nh["mean"] <= nh["max"] <= 1
    assert rep["pairwise_hsic"]["mean"] > 0
    assert 0 <= rep["dhsic"]["p_value"] <= 1 and rep["dhsic"]["statistic"] > 0
    assert rep["settings"]["bandwidth"] == "median" and rep["settings"]["method"] == "exact"
    assert (out / "pairwise_hsic.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    m = np.load(out / "pairwise_nhsic.npy")
    assert m.shape == (12, 12) and np.allclose(np.diag(m), 1)
    assert not list(out.glob(".*.tmp"))  # no temporary files left behind


def test_planted_pair_is_most_dependent(tmp_path: Path):
    np.save(tmp_path / "emb.npy", embeddings(planted=(3, 9)))
    res = run(str(tmp_path / "emb.npy"), "--out", str(tmp_path / "o"), "--max-samples", "150")
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "o" / "independence.json").read_text())
    assert rep["input"]["n_samples_used"] == 150
    for key in ("pairwise_nhsic", "pairwise_hsic"):
        top = rep[key]["top_pairs"][0]
        assert (top["i"], top["j"]) == (3, 9)
    assert rep["pairwise_nhsic"]["top_pairs"][0]["p_value"] < 1e-3
    assert "(features 3, 9)" in res.output


def test_npz_pt_csv_and_labels(tmp_path: Path):
    z = embeddings(n=120, d=6, planted=(0, 4))
    y = (z[:, 2] > 0).astype(int)  # feature 2 carries the label
    np.savez(tmp_path / "e.npz", feats=z, labels=y)
    res = run(
        str(tmp_path / "e.npz"),
        "--key",
        "feats",
        "--labels",
        "labels",
        "--out",
        str(tmp_path / "a"),
        "--method",
        "lowrank",
        "--test",
        "permutation",
        "--permutations",
        "50",
    )
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "a" / "independence.json").read_text())
    assert rep["labels"]["n_classes"] == 2
    assert rep["labels"]["most_label_dependent_features"][0]["feature"] == 2
    assert rep["settings"]["test"] == "permutation"

    torch.save({"z": torch.tensor(z, dtype=torch.float32)}, tmp_path / "e.pt")
    res = run(str(tmp_path / "e.pt"), "--out", str(tmp_path / "b"), "--no-dhsic")
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "b" / "independence.json").read_text())
    assert rep["dhsic"] is None and rep["pairwise_nhsic"]["top_pairs"][0]["j"] == 4

    header = ",".join(f"f{i}" for i in range(6))
    np.savetxt(tmp_path / "e.csv", z, delimiter=",", header=header, comments="")
    res = run(str(tmp_path / "e.csv"))  # default output folder next to the file
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "e_independence" / "independence.json").read_text())
    assert rep["pairwise_nhsic"]["top_pairs"][0]["names"] == ["f0", "f4"]


def test_constant_feature_is_reported(tmp_path: Path):
    z = embeddings(n=80, d=5)
    z[:, 1] = 3.0
    np.save(tmp_path / "c.npy", z)
    res = run(str(tmp_path / "c.npy"), "--out", str(tmp_path / "o"), "--no-dhsic")
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "o" / "independence.json").read_text())
    assert rep["constant_features"] == [1] and rep["pairwise_nhsic"]["n_variables"] == 4
    assert "constant" in res.output


@pytest.mark.parametrize(
    ("content", "extra", "message"),
    [
        ("1d", [], "2-D"),
        ("nan", [], "NaN/Inf"),
        ("npz2", [], "--key"),
        ("npz2", ["--key", "nope"], "not in"),
        ("ok", ["--bandwidth", "wide"], "--bandwidth"),
        ("ok", ["--max-memory", "lots"], "--max-memory"),
        ("ok", ["--labels", "missing.npy"], "--labels"),
        ("txt", [], "numeric CSV"),
        ("bin", [], "unsupported file type"),
        ("tiny", [], "at least 4 samples"),
    ],
)
def test_bad_input_messages(tmp_path: Path, content, extra, message):
    z = embeddings(n=30, d=4)
    path = tmp_path / "x.npy"
    if content == "1d":
        np.save(path, z[:, 0])
    elif content == "nan":
        z[5, 2] = np.nan
        np.save(path, z)
    elif content == "npz2":
        path = tmp_path / "x.npz"
        np.savez(path, a=z, b=z)
    elif content == "txt":
        path = tmp_path / "x.txt"
        np.savetxt(path, z)
    elif content == "bin":
        path = tmp_path / "x.bin"
        z.tofile(path)
    elif content == "tiny":
        np.save(path, z[:3])
    else:
        np.save(path, z)
    res = CliRunner().invoke(main, ["measure", str(path), "--no-progress", *extra])
    assert res.exit_code != 0
    assert message in res.output
    assert "Traceback" not in res.output


def test_missing_file():
    res = CliRunner().invoke(main, ["measure", "does-not-exist.npy"])
    assert res.exit_code == 2 and "does not exist" in res.output


def test_atomic_write_keeps_old_file_on_crash(tmp_path: Path):
    target = tmp_path / "independence.json"
    target.write_text("old")

    def crash(fh):
        fh.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(target, crash)
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


# ----------------------------------------------------------------------------- issue 9 / 13


def test_refuses_to_overwrite_then_replaces_atomically(tmp_path: Path):
    np.save(tmp_path / "e.npy", embeddings(n=60, d=5))
    out = tmp_path / "o"
    assert run(str(tmp_path / "e.npy"), "--out", str(out), "--no-dhsic").exit_code == 0
    (out / "stale.txt").write_text("the user's own file")
    res = CliRunner().invoke(main, ["measure", str(tmp_path / "e.npy"), "--out", str(out)])
    assert res.exit_code != 0 and "--overwrite" in res.output and "Traceback" not in res.output
    (out / "stale.txt").unlink()
    (out / "independence.json").write_text("{}")  # an earlier result
    res = run(str(tmp_path / "e.npy"), "--out", str(out), "--no-dhsic", "--overwrite")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["independence.json", "pairwise_hsic.png", "pairwise_hsic.npy", "pairwise_nhsic.npy",
         "pairwise_pvalues.npy"]
    )  # fmt: skip
    assert json.loads((out / "independence.json").read_text())["input"]["n_features"] == 5
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left


def test_no_progress_bars_when_output_is_not_a_terminal(tmp_path: Path):
    np.save(tmp_path / "e.npy", embeddings(n=60, d=5))
    res = CliRunner().invoke(
        main, ["measure", str(tmp_path / "e.npy"), "--out", str(tmp_path / "o")]
    )
    assert res.exit_code == 0, res.output
    assert "\r" not in res.output and "\x1b[" not in res.output and "it/s" not in res.output


def test_planted_pair_significant_after_correction_and_noise_not(tmp_path: Path):
    np.save(tmp_path / "p.npy", embeddings(n=400, d=16, planted=(2, 11), seed=3))
    np.save(tmp_path / "n.npy", embeddings(n=400, d=16, seed=6))  # one fixed noise set
    for name, want in (("p", 1), ("n", 0)):
        res = run(
            str(tmp_path / f"{name}.npy"), "--out", str(tmp_path / name), "--permutations", "99"
        )
        assert res.exit_code == 0, res.output
        rep = json.loads((tmp_path / name / "independence.json").read_text())
        assert rep["pairwise_tests"]["n_significant"] == want
        assert f"significant after holm at alpha = 0.05: {want} of 120" in res.output
        if want:
            top = rep["pairwise_tests"]["top_pairs"][0]
            assert (top["i"], top["j"]) == (2, 11) and top["p_adjusted"] <= 0.05
        else:
            assert rep["dhsic"]["p_value"] > 0.05  # rate over seeds: test_independence_dhsic
        pv = np.load(tmp_path / name / "pairwise_pvalues.npy")
        assert pv.shape == (16, 16) and np.isnan(np.diag(pv)).all()


@pytest.mark.parametrize(
    ("make", "suffix", "message"),
    [
        (lambda p: p.write_bytes(np.random.default_rng(0).bytes(4000)), ".npy", "not a NumPy .npy"),
        (lambda p: np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True), ".npy",
         "never unpickles"),
        (lambda p: np.savez(p), ".npz", "holds no arrays"),
        (lambda p: p.write_bytes(b"PK\x03\x04" + bytes(200)), ".npz", "not a NumPy .npz file"),
        (lambda p: torch.save({"model": torch.nn.Linear(2, 2)}, p), ".pt", "pickled Python objects"),
        (lambda p: p.write_bytes(np.random.default_rng(1).bytes(4000)), ".pt", "not a file written by torch.save"),
    ],
)  # fmt: skip
def test_unreadable_files_get_a_clean_message(tmp_path: Path, make, suffix, message):
    path = tmp_path / f"bad{suffix}"
    make(path)
    res = CliRunner().invoke(main, ["measure", str(path), "--no-progress"])
    assert res.exit_code != 0
    assert message in res.output and "Traceback" not in res.output
    assert "allow_pickle" not in res.output


def test_column_scaled_by_1e200(tmp_path: Path):
    z = embeddings(n=100, d=5, planted=(0, 3))
    z[:, 3] *= 1e200
    np.save(tmp_path / "big.npy", z)
    res = run(str(tmp_path / "big.npy"), "--out", str(tmp_path / "o"))
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "o" / "independence.json").read_text())
    top = rep["pairwise_nhsic"]["top_pairs"][0]
    assert (top["i"], top["j"]) == (0, 3) and np.isfinite(rep["pairwise_nhsic"]["mean"])


def test_measure_embeddings_library_report(monkeypatch):
    from vcreg import independence as ind
    from vcreg.independence import cost

    z = embeddings(n=300, d=8, planted=(1, 6), seed=5)
    z[:, 4] = 2.0
    y = (z[:, 0] > 0).astype(int)
    with pytest.warns(ind.SubsampledWarning, match="250 of 300"):
        rep = ind.measure_embeddings(z, labels=y, max_samples=250, n_permutations=49, top_k=3)
    assert rep["input"]["n_samples_used"] == 250 and rep["input"]["subsampled"]
    assert rep["notes"][0].startswith("SUBSAMPLED: 250 of 300 rows")
    est = rep["cost"]["estimate"]
    assert est["seconds"] > 0 and est["peak_bytes"] > 0 and rep["cost"]["pairwise_seconds"] > 0
    lr = ind.measure_embeddings(z, method="lowrank", max_samples=None, with_dhsic=False)
    acc = lr["lowrank_accuracy"]
    assert (
        acc["pairs_checked"] == min(28, lr["pairwise_tests"]["n_pairs"])
        and acc["relative_error_of_mean"] < 0.05
    )
    assert acc["mean_rank"] >= 1 and lr["cost"]["estimate"]["method"] == "lowrank"
    assert rep["constant_features"] == [4]
    assert rep["pairwise_tests"]["n_pairs"] == 21 and rep["pairwise_tests"]["n_significant"] >= 1
    assert rep["labels"]["most_label_dependent_features"][0]["feature"] == 0
    assert 1 <= rep["effective_rank"] <= 8 and rep["feature_std"]["collapsed"] == [4]
    assert 0 <= rep["mutual_dependence"]["mean_one_vs_rest_nhsic"] <= 1
    json.dumps(rep)  # JSON-ready
    monkeypatch.setattr(cost, "AUTO_EXACT_LIMIT_S", 0.0)
    rep = ind.measure_embeddings(z, with_dhsic=False)
    assert rep["settings"]["method"] == "lowrank" and "lowrank" in rep["notes"][-1]
    assert ind.exact_pairwise_seconds(2000, 256) > 60 > ind.exact_pairwise_seconds(1024, 256)


def test_test_none_reports_the_dhsic_statistic_without_a_p_value(tmp_path: Path):
    z = embeddings()
    np.save(tmp_path / "emb.npy", z)
    res = run(str(tmp_path / "emb.npy"), "--out", str(tmp_path / "out"), "--test", "none")
    assert res.exit_code == 0, res.output
    d = json.loads((tmp_path / "out" / "independence.json").read_text())["dhsic"]
    assert d["p_value"] is None and d["test"] is None
    # the same statistic as the library's dHSIC with the rule measure maps "median" to
    assert d["statistic"] == pytest.approx(ind.dhsic(z, bandwidth="auto"), rel=1e-12)
