"""`vcreg ica` input and output-folder rules: bad references and bad --out fail before the fit;
earlier results are replaced only with --overwrite, all together, leaving no stale file."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import vcreg.ica as vcreg_ica
from vcreg._results import write_results_folder
from vcreg.cli import main
from vcreg.ica import make_ica_problem


@pytest.fixture()
def data(tmp_path):
    S, A, X = make_ica_problem("laplace", 300, 3, "well", random_state=0)
    np.save(tmp_path / "x.npy", X)
    np.save(tmp_path / "s.npy", S)
    np.save(tmp_path / "a.npy", A)
    return tmp_path, S


@pytest.fixture()
def fits(monkeypatch):
    """Counts the fits `vcreg ica` starts (the real estimator still runs)."""
    calls = []
    real = vcreg_ica.VCRegICA.fit_transform

    def counted(self, X, y=None):
        calls.append(X.shape)
        return real(self, X)

    monkeypatch.setattr(vcreg_ica.VCRegICA, "fit_transform", counted)
    return calls


def _run(*args):
    return CliRunner().invoke(main, ["ica", *map(str, args)])


@pytest.mark.parametrize("defect", ["nan", "constant"])
def test_bad_sources_rejected_before_the_fit(data, fits, defect):
    tmp, S = data
    S = S.copy()
    if defect == "nan":
        S[7, 1] = np.nan
    else:
        S[:, 2] = 3.0
    np.save(tmp / "bad.npy", S)
    res = _run(tmp / "x.npy", "--out", tmp / "o", "--sources", tmp / "bad.npy")
    assert res.exit_code != 0
    assert "--sources" in res.output
    assert ("NaN" if defect == "nan" else "constant") in res.output
    assert fits == [] and not (tmp / "o").exists()  # nothing fitted, nothing written


def test_out_naming_a_file_rejected_before_the_fit(data, fits):
    tmp, _ = data
    (tmp / "taken").write_text("user data")
    res = _run(tmp / "x.npy", "--out", tmp / "taken")
    assert res.exit_code != 0 and "--out" in res.output and "not a folder" in res.output
    assert fits == [] and (tmp / "taken").read_text() == "user data"


@pytest.mark.parametrize("content", [b"", None])
def test_empty_npy_has_a_clear_message(data, fits, content):
    tmp, _ = data
    path = tmp / "empty.npy"
    if content is None:
        np.save(path, np.zeros((0, 3)))
    else:
        path.write_bytes(content)
    res = _run(path, "--out", tmp / "o")
    assert res.exit_code != 0 and "empty" in res.output and "Aborted" not in res.output
    assert fits == []


def test_earlier_results_kept_unless_overwrite_then_replaced_without_stale_files(data, fits):
    tmp, _ = data
    out = tmp / "o"
    res = _run(tmp / "x.npy", "--out", out, "--sources", tmp / "s.npy", "--seed", 1)
    assert res.exit_code == 0, res.output
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert "metrics.json" in before and len(fits) == 1

    res = _run(tmp / "x.npy", "--out", out, "--seed", 2)  # no --overwrite: refused, untouched
    assert res.exit_code != 0 and "--overwrite" in res.output
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before and len(fits) == 1

    res = _run(tmp / "x.npy", "--out", out, "--seed", 2, "--overwrite")
    assert res.exit_code == 0, res.output
    after = {p.name: p.read_bytes() for p in out.iterdir()}
    # the new run has no --sources: the earlier metrics.json (another fit) must not survive
    assert "metrics.json" not in after
    assert set(after) == set(before) - {"metrics.json"}
    assert after["unmixing.npy"] != before["unmixing.npy"]
    assert sorted(p.name for p in tmp.iterdir() if p.name.startswith(".")) == []  # no temps


def test_overwrite_never_deletes_the_users_other_files(data, fits):
    tmp, _ = data
    out = tmp / "o"
    assert _run(tmp / "x.npy", "--out", out).exit_code == 0
    (out / "notes.txt").write_text("mine")
    res = _run(tmp / "x.npy", "--out", out, "--overwrite")
    assert res.exit_code != 0 and "notes.txt" in res.output
    assert (out / "notes.txt").read_text() == "mine" and len(fits) == 1
    # a folder of the user's own files (no earlier results) just receives the results
    own = tmp / "own"
    own.mkdir()
    (own / "notes.txt").write_text("mine")
    assert _run(tmp / "x.npy", "--out", own).exit_code == 0
    assert (own / "notes.txt").read_text() == "mine" and (own / "sources.npy").exists()


def test_a_failed_write_leaves_the_earlier_results(tmp_path):
    out = tmp_path / "o"
    write_results_folder(out, {"a.npy": lambda fh: fh.write(b"old")}, ["a.npy", "b.npy"], False)

    def boom(fh):
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_results_folder(
            out, {"a.npy": lambda fh: fh.write(b"new"), "b.npy": boom}, ["a.npy", "b.npy"], True
        )
    assert [p.name for p in out.iterdir()] == ["a.npy"] and (out / "a.npy").read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]  # no staging folder left


def test_metrics_json_is_valid(data):
    tmp, _ = data
    res = _run(tmp / "x.npy", "--out", tmp / "o", "--mixing", tmp / "a.npy")
    assert res.exit_code == 0, res.output
    info = json.loads((tmp / "o" / "metrics.json").read_text())
    assert 0 <= info["amari_distance"] < 0.3 and "mcc_pearson" not in info
