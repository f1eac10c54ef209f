"""Error messages in the user's words (issue 33, item 6): the CLI option's name, "not a vcreg run
folder", "did you mean", and data errors located by the file's own line numbers."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from vcreg.cli import main
from vcreg.io import LoadError, check_finite, load_array
from vcreg.training import TrainConfig


def _run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(main, list(args))
    return res.exit_code, res.output


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(0).standard_normal((50, 3)))
    return path


@pytest.mark.parametrize(
    ("option", "value", "named"),
    [
        ("--n-restarts", "0", "'--n-init' / '--n-restarts'"),
        ("--n-init", "0", "'--n-init' / '--n-restarts'"),
        ("--max-iter", "0", "'--max-iter'"),
        ("--tol", "-1", "'--tol'"),
        ("--width", "0", "'--width'"),
        ("-k", "0", "'--n-components' / '-k'"),
    ],
)
def test_ica_names_its_options_not_the_estimators_parameters(data, tmp_path, option, value, named):
    code, out = _run("ica", str(data), option, value, "--out", str(tmp_path / "o"))
    assert code == 2 and named in out, out
    assert "VCRegICA" not in out and "parameter" not in out


def test_ica_estimator_errors_use_option_names(data, tmp_path):
    code, out = _run("ica", str(data), "-k", "5", "--out", str(tmp_path / "o"))
    assert code == 1 and "--n-components 5" in out and "n_components=" not in out


def test_a_folder_that_is_not_a_run(tmp_path, data):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("mine")
    for args in (["measure", str(folder)], ["evaluate", str(folder)], ["export", str(folder)]):
        code, out = _run(*args, *(["--out", str(tmp_path / "o")] if args[0] != "evaluate" else []))
        assert code == 1 and "is not a vcreg run folder" in out, (args, out)
        assert "checkpoint not found" not in out
    code, out = _run("ica", str(folder), "--out", str(tmp_path / "o"))
    assert code == 2 and "a folder, not an array file" in out and "unsupported" not in out
    # nothing was left in the user's folder (no lock file)
    assert sorted(p.name for p in folder.iterdir()) == ["readme.txt"]


@pytest.mark.parametrize(
    ("override", "suggestion"),
    [
        ("epoch=2", "epoch: unknown key (did you mean `epochs`?)"),
        ("optimizer.lrr=2", "optimizer.lrr: unknown key (did you mean `optimizer.lr`?)"),
        ("loss.name=vicrg", "got 'vicrg' (did you mean `vicreg`?)"),
        ("encoder.name=cnn1", "(did you mean `cnn1d`?)"),
    ],
)
def test_did_you_mean_for_config_keys_and_values(override, suggestion):
    with pytest.raises(ValueError) as info:
        TrainConfig.from_yaml("mnist1d_vicreg", [override])
    assert suggestion in str(info.value)


def test_no_suggestion_when_nothing_is_close():
    with pytest.raises(ValueError) as info:
        TrainConfig.from_yaml("mnist1d_vicreg", ["zzzz=1"])
    assert "did you mean" not in str(info.value) and "zzzz: unknown key" in str(info.value)


def test_did_you_mean_for_cli_choices_and_commands(data):
    code, out = _run("reproduce", "--preset", "quik")
    assert code == 2 and "(did you mean `quick`?)" in out
    code, out = _run("measure", str(data), "--method", "exakt")
    assert code == 2 and "(did you mean `exact`?)" in out
    code, out = _run("trian")
    assert code == 2 and "no such command 'trian' (did you mean `train`?)" in out
    code, out = _run("train", "--set", "epoch=2", "-c", "mnist1d_vicreg", "--out", "x")
    assert code == 1 and "did you mean `epochs`?" in out


def _csv(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_nan_in_a_csv_is_located_by_the_files_line_number(tmp_path):
    # header on line 1, a comment and a blank line that np.loadtxt skips, NaN on line 6
    rows = ["a,b,c", "1,2,3", "# a comment", "", "4,5,6", "7,nan,9", "1,1,1"]
    path = _csv(tmp_path / "h.csv", rows)
    arr = load_array(path).array
    assert arr.shape == (4, 3) and np.isnan(arr[2, 1])
    with pytest.raises(
        LoadError, match=r"h\.csv: 1 NaN/Inf value\(s\) in 1 row\(s\): on line\(s\) 6 "
    ):
        check_finite(arr, path)
    code, out = _run("measure", str(path), "--out", str(tmp_path / "o"))
    assert code == 2 and "on line(s) 6 of the file" in out
    code, out = _run("ica", str(path), "--out", str(tmp_path / "o2"))
    assert code == 2 and "on line(s) 6 of the file" in out
    # without a header the data start on line 1
    path = _csv(tmp_path / "n.csv", ["1,2", "inf,3"])
    with pytest.raises(LoadError, match=r"on line\(s\) 2 of the file"):
        check_finite(load_array(path).array, path)


def test_nan_in_a_binary_file_says_0_based_rows(tmp_path):
    z = np.ones((6, 2))
    z[4, 0] = np.nan
    np.save(tmp_path / "z.npy", z)
    with pytest.raises(LoadError, match=r"0-based data row\(s\) 4;"):
        check_finite(z, tmp_path / "z.npy")
    from vcreg.independence import measure_embeddings

    with pytest.raises(ValueError, match=r"0-based row indices, first: \[4\]"):
        measure_embeddings(z)
