"""``vcreg measure`` on saved embeddings (random, planted dependence, all file formats)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

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
        ("txt", [], "unsupported file type"),
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
