"""One CLI convention (issue 23): every command accepts ``--no-progress``, and every command
that reads a run folder holds its lock (``vcreg._lock``) — refused with a clear message while
``vcreg train`` (or another writer) holds it, and a reader keeps writers out."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from vcreg._lock import FolderLock, FolderLockedError
from vcreg.cli import main
from vcreg.training import train


def _cli(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A 1-epoch, 600-sample MNIST-1D run (seconds)."""
    out = tmp_path_factory.mktemp("run")
    cfg = {
        "epochs": 1,
        "batch_size": 64,
        "seed": 5,
        "device": "cpu",
        "threads": 1,
        "data": {"name": "mnist1d", "options": {"num_samples": 600, "ood": False}},
        "encoder": {"name": "cnn1d", "repr_dim": 8, "options": {"channels": [8, 16, 16]}},
        "projector": {"spec": "32-32"},
        "monitor": {"every": 0},
        "evaluation": {"independence_samples": 64, "max_iter": 50},
    }
    train(cfg, out_dir=out, progress=False)
    return out


def test_every_command_accepts_no_progress():
    commands = main.list_commands(None)
    assert {"train", "evaluate", "measure", "ica", "reproduce", "export"} <= set(commands)
    for name in commands:
        res = _cli(name, "--help")
        assert res.exit_code == 0 and "--no-progress" in res.output, name


def test_evaluate_no_progress_prints_only_the_results(run_dir, tmp_path):
    res = _cli("evaluate", str(run_dir), "--device", "cpu", "--no-ood", "--no-progress")
    assert res.exit_code == 0, res.output
    assert "linear probe on" not in res.output and "independence measures..." not in res.output
    assert res.output.startswith("in-domain accuracy: ")
    res = _cli("export", str(run_dir), "--out", str(tmp_path / "e.safetensors"), "--no-progress")
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize(
    "command",
    [
        lambda run, tmp: ("evaluate", str(run), "--device", "cpu", "--no-ood", "--overwrite"),
        lambda run, tmp: ("export", str(run), "--out", str(tmp / "enc.safetensors")),
    ],
    ids=["evaluate", "export"],
)
def test_a_reader_is_refused_while_train_holds_the_run(run_dir, tmp_path, command):
    with FolderLock(run_dir, purpose="vcreg train"):
        res = _cli(*command(run_dir, tmp_path))
        assert res.exit_code == 1, res.output
        assert "in use by another vcreg process" in res.output
        assert not isinstance(res.exception, FolderLockedError)  # a message, not a traceback
        assert not (tmp_path / "enc.safetensors").exists()
    assert _cli(*command(run_dir, tmp_path)).exit_code == 0  # once it is released


def test_export_shares_the_lock_with_readers_and_keeps_writers_out(run_dir, tmp_path):
    with FolderLock(run_dir, purpose="vcreg export", shared=True):
        res = _cli("export", str(run_dir), "--out", str(tmp_path / "b.safetensors"))
        assert res.exit_code == 0, res.output  # two readers at once
        res = _cli("evaluate", str(run_dir), "--device", "cpu", "--no-ood", "--overwrite")
        assert res.exit_code == 1 and "(a reader, e.g. vcreg export)" in res.output
        with pytest.raises(FolderLockedError, match="vcreg train cannot use it now"):
            FolderLock(run_dir, purpose="vcreg train").acquire()
    with FolderLock(run_dir, purpose="vcreg train"):  # released: the writer gets it
        pass


def test_a_shared_lock_never_creates_the_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="folder not found"):
        FolderLock(tmp_path / "missing", shared=True).acquire()
    assert not (tmp_path / "missing").exists()
    res = _cli("evaluate", str(tmp_path / "missing"), "--device", "cpu")
    assert res.exit_code == 1 and "run folder not found" in res.output
    assert not (tmp_path / "missing").exists()
