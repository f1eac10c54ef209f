"""What a command prints while it works: bars only on a terminal, one line per epoch / unit
elsewhere, each warning once on one channel, no library internals (issue 33, items 3 and 4)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from vcreg._progress import WorkProgress, bars_enabled, on_terminal, resolve_progress
from vcreg.cli import main
from vcreg.cli._errors import is_internal_warning, one_line_warnings
from vcreg.experiments.cache import UnitCache
from vcreg.experiments.parallel import compute_pending
from vcreg.experiments.runner import Context, Unit
from vcreg.training import RegimeWarning, train

REPO = Path(__file__).resolve().parents[1]

# a VICReg run too short to reach the constraint: it ends with a RegimeWarning
CFG = {
    "epochs": 2,
    "batch_size": 64,
    "device": "cpu",
    "threads": 1,
    "data": {"name": "mnist1d", "options": {"num_samples": 600, "ood": False}},
    "encoder": {"name": "cnn1d", "repr_dim": 8, "options": {"channels": [8, 16, 16]}},
    "projector": {"spec": "32-32"},
    "loss": {"name": "vicreg"},
    "monitor": {"every": 1, "samples": 64, "probe": "none", "hsic": False, "dhsic": False},
}


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_bars_only_on_a_terminal():
    tty, pipe = _Stream(True), _Stream(False)
    assert on_terminal(tty) and not on_terminal(pipe)
    assert resolve_progress(True, tty) == "bar" and resolve_progress("auto", tty) == "bar"
    assert resolve_progress(True, pipe) == "log"
    assert resolve_progress("log", tty) == "log" and resolve_progress("bar", pipe) == "bar"
    assert resolve_progress(False, tty) == resolve_progress(None) == "off"
    assert bars_enabled(True, tty) and not bars_enabled(False, tty)
    assert not bars_enabled(True, pipe)
    with pytest.raises(ValueError, match="progress must be"):
        resolve_progress("loud")


def test_time_left_comes_from_the_units_cost_estimates(monkeypatch):
    lines: list[str] = []
    p = WorkProgress(130.0, 4, mode="log", jobs=1, write=lines.append)
    assert p.eta_seconds() == pytest.approx(130.0)  # before any unit: the estimates alone
    # the largest unit first, twice as slow as estimated: the rest is scaled by the ratio of
    # time to estimate (shrunk toward 1 by a prior of a quarter of the total), not by its rate
    monkeypatch.setattr("time.time", lambda: p.started + 10_000)  # wall clock plays no part
    p.done("big", 100.0, 200.0)
    prior = 130.0 / 4
    assert p.eta_seconds() == pytest.approx(30.0 * (200.0 + prior) / (100.0 + prior))
    assert len(lines) == 1 and lines[0].startswith("[1/4 units")
    assert "big: 200 s (estimated 100 s)" in lines[0] and "left" in lines[0]
    # two workers share what is left (never more workers than units left)
    q = WorkProgress(40.0, 4, mode="off", jobs=2, write=lines.append)
    assert q.eta_seconds() == pytest.approx(20.0)
    for _ in range(3):
        q.done("u", 10.0, 10.0)
    assert q.eta_seconds() == pytest.approx(10.0)  # one unit left: one worker
    assert len(lines) == 1  # "off" prints nothing per unit


def test_the_bar_never_runs_past_its_total():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # tqdm's "clamping frac to range [0, 1]" would raise
        p = WorkProgress(0.3, 3, mode="bar", jobs=1, write=lambda s: None)
        for _ in range(3):
            p.done("u", 0.1 + 1e-12, 1.0)  # sums past the total by rounding
        p.close()


def test_warning_lines_once_and_no_library_internals(capsys):
    ctx = click.Context(click.Command("x"))
    with ctx:
        one_line_warnings(ctx)
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            for _ in range(2):
                warnings.warn(
                    "the run did not reach the VCReg constraint", RegimeWarning, stacklevel=1
                )
            warnings.warn("invalid value encountered in divide", RuntimeWarning, stacklevel=1)
            warnings.warn("removed 1 temporary file(s) left in run/", RuntimeWarning, stacklevel=1)
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "warning: the run did not reach the VCReg constraint",
        "warning: removed 1 temporary file(s) left in run/",
    ]


def test_which_warnings_are_internal():
    from sklearn.exceptions import ConvergenceWarning
    from tqdm import TqdmWarning

    from vcreg.independence import SaturationWarning

    assert is_internal_warning(TqdmWarning, "clamping frac to range [0, 1]")
    assert is_internal_warning(RuntimeWarning, "divide by zero encountered in log")
    assert is_internal_warning(RuntimeWarning, "Mean of empty slice")
    assert is_internal_warning(FutureWarning, "x is deprecated", "/site-packages/sklearn/a.py")
    # vcreg's own warnings, whatever their class
    assert not is_internal_warning(SaturationWarning, "dHSIC saturates at 1/n")
    assert not is_internal_warning(RuntimeWarning, "checkpoint.pt was unreadable")
    assert not is_internal_warning(ConvergenceWarning, "VCRegICA: unreliable")
    vcreg_file = str(REPO / "src" / "vcreg" / "ica" / "estimator.py")
    assert not is_internal_warning(FutureWarning, "n_restarts is deprecated", vcreg_file)


def test_python_train_warns_once_and_prints_one_line_per_epoch(tmp_path, capsys):
    with pytest.warns(RegimeWarning) as record:
        train(CFG, out_dir=None, progress="log")
    assert len([w for w in record if w.category is RegimeWarning]) == 1
    out, err = capsys.readouterr()
    assert [ln.split(" | ")[0] for ln in out.splitlines()] == ["epoch 1/2", "epoch 2/2"]
    assert "warning" not in out + err and "\r" not in out + err
    with pytest.warns(RegimeWarning):
        train(CFG, out_dir=None, progress=False)
    assert capsys.readouterr() == ("", "")


def test_cli_train_no_progress_logs_epochs_and_warns_once(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(CFG))
    res = CliRunner().invoke(
        main, ["train", "-c", str(cfg), "--out", str(tmp_path / "run"), "--no-progress"]
    )
    assert res.exit_code == 0, res.output
    assert "epoch 1/2 | loss" in res.output and "epoch 2/2 | loss" in res.output
    assert res.output.count("did not reach the VCReg constraint") == 1
    assert res.output.count("warning:") == 1


def test_cli_train_into_a_log_file_has_lines_not_bars(tmp_path):
    """The real command, its output redirected to files as `vcreg train > log 2>&1` would."""
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(CFG))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "PYTHONWARNINGS": "default"}
    cmd = [sys.executable, "-m", "vcreg", "train", "-c", str(cfg), "--out", str(tmp_path / "r")]
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        rc = subprocess.run(cmd, stdout=out, stderr=err, env=env, timeout=300).returncode
    out, err = (tmp_path / "out").read_text(), (tmp_path / "err").read_text()
    assert rc == 0, out + err
    assert "\r" not in out + err  # no bar redraws in a log
    assert "epoch 1/2 | loss" in out and "epoch 2/2 | loss" in out
    assert (out + err).count("did not reach the VCReg constraint") == 1
    assert err.startswith("warning: the run did not reach") and err.count("\n") == 1


def test_warnings_of_worker_processes_reach_the_parent(tmp_path, monkeypatch):
    mod = tmp_path / "warning_unit_i33.py"
    mod.write_text(
        textwrap.dedent(
            """
            import warnings

            import numpy as np


            def run_unit(unit, ctx):
                warnings.warn(f"unit {unit.label} says so", UserWarning)
                np.log(np.zeros(1))  # numpy's 'divide by zero encountered in log'
                return {"ok": unit.label}
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cache = UnitCache(tmp_path / "cache")
    units = [("warning_unit_i33", Unit("W", {"i": i}, f"w{i}")) for i in range(2)]
    ctx = Context(out_dir=tmp_path, device="cpu", settings={})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        n = compute_pending(units, cache, ctx, 2, lambda u: None, print)
    assert n == 2
    texts = sorted(str(w.message) for w in caught)
    assert texts[:2] == ["divide by zero encountered in log"] * 2
    assert texts[2:] == ["unit w0 says so", "unit w1 says so"]
