"""Fault injection: corrupted checkpoints, crashes mid-write, two writers, full disks, bad input.

The fast tests run by default; the ``slow`` ones start real processes and ``kill -9`` them
(CI runs them with ``pytest -m slow``).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from click.testing import CliRunner

from vcreg._lock import FolderLock, FolderLockedError
from vcreg.cli import main
from vcreg.training import (
    CheckpointError,
    evaluate_run,
    load_checkpoint,
    load_run,
    save_checkpoint,
    train,
)
from vcreg.training.checkpoint import previous_path

ROOT = Path(__file__).resolve().parents[1]


def tiny(epochs: int = 2, **over) -> dict:
    """A 600-sample MNIST-1D run, 7 steps an epoch, monitoring off (fast)."""
    cfg = {
        "epochs": epochs,
        "batch_size": 64,
        "seed": 5,
        "device": "cpu",
        "threads": 1,
        "data": {"name": "mnist1d", "options": {"num_samples": 600, "ood": False}},
        "encoder": {"name": "cnn1d", "repr_dim": 8, "options": {"channels": [8, 16, 16]}},
        "projector": {"spec": "32-32"},
        "optimizer": {"name": "adam", "lr": 3e-3},
        "monitor": {"every": 0},
        "evaluation": {"independence_samples": 64, "max_iter": 50},
    }
    cfg.update(over)
    return cfg


def _weights(path: Path) -> dict:
    return load_checkpoint(path)["model"]


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _flip(path: Path, at: float = 0.5, n: int = 4) -> None:
    data = bytearray(path.read_bytes())
    i = int(len(data) * at)
    for j in range(i, i + n):
        data[j] ^= 0xFF
    path.write_bytes(bytes(data))


def _temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 3-epoch run: the weights every resumed run must reproduce exactly."""
    out = tmp_path_factory.mktemp("reference")
    train(tiny(3), out_dir=out, progress=False)
    return out


# -- checkpoint integrity ------------------------------------------------------------------------


def test_flipped_bytes_inside_a_tensor_raise(tmp_path):
    path = tmp_path / "c.pt"
    weights = {"w": torch.arange(100_000, dtype=torch.float32)}
    save_checkpoint(path, {"config": {}, "epoch": 1, "step": 0, "model": weights})
    _flip(path)  # the middle of the file lies inside the 400 kB tensor record
    with pytest.raises(CheckpointError, match=r"c\.pt.*CRC-32 of record"):
        load_checkpoint(path)


def test_wrong_types_and_wrong_tensors_are_checkpoint_errors(tmp_path, reference):
    bad_config = tmp_path / "config.pt"
    save_checkpoint(bad_config, {"config": [1, 2], "epoch": 1, "step": 0, "model": {}})
    with pytest.raises(CheckpointError, match="config is list"):
        load_checkpoint(bad_config)
    not_tensor = tmp_path / "model.pt"
    save_checkpoint(not_tensor, {"config": {}, "epoch": 1, "step": 0, "model": {"w": 3}})
    with pytest.raises(CheckpointError, match=r"model\['w'\] is int"):
        load_checkpoint(not_tensor)
    # right format, wrong tensors for the model its config builds
    run = tmp_path / "run"
    run.mkdir()
    state = load_checkpoint(reference / "checkpoint.pt")
    model = dict(state["model"])
    model.pop(next(iter(model)))
    model["extra.weight"] = torch.zeros(2)
    save_checkpoint(run / "checkpoint.pt", {**state, "model": model})
    with pytest.raises(CheckpointError, match="do not fit the model"):
        load_run(run)
    with pytest.raises(CheckpointError, match="do not fit the model"):
        train(tiny(3), out_dir=run, resume=True, progress=False)


def test_previous_checkpoint_is_kept_and_resume_can_use_it(tmp_path, reference):
    train(tiny(3), out_dir=tmp_path, progress=False, stop_after_epochs=2)
    latest, prev = tmp_path / "checkpoint.pt", previous_path(tmp_path / "checkpoint.pt")
    assert load_checkpoint(latest)["epoch"] == 2 and load_checkpoint(prev)["epoch"] == 1
    _flip(latest)
    with pytest.raises(CheckpointError, match=r"checkpoint\.prev\.pt \(epoch 1.*--use-previous"):
        train(tiny(3), out_dir=tmp_path, resume=True, progress=False)
    with pytest.warns(RuntimeWarning, match="resuming from checkpoint.prev.pt"):
        done = train(tiny(3), out_dir=tmp_path, resume="previous", progress=False)
    assert done.status == "completed"
    assert (tmp_path / "checkpoint.corrupt.pt").is_file()  # kept for inspection
    assert _same(_weights(latest), _weights(reference / "checkpoint.pt"))


def test_orphan_temp_files_are_removed_on_the_next_start(tmp_path):
    train(tiny(2), out_dir=tmp_path, progress=False, stop_after_epochs=1)
    for name in (".checkpoint.pt.k1ll3d_x.tmp", ".metrics.jsonl.a8b7c6d5.tmp"):
        (tmp_path / name).write_bytes(b"x" * 1000)
    with pytest.warns(RuntimeWarning, match="removed 2 temporary file"):
        train(tiny(2), out_dir=tmp_path, resume=True, progress=False)
    assert _temps(tmp_path) == []


# -- one writer per run folder --------------------------------------------------------------------


def test_second_trainer_on_the_same_folder_is_refused(tmp_path):
    refused: list[str] = []

    def second(epoch, step):
        if (epoch, step) == (0, 1):
            with pytest.raises(FolderLockedError, match=f"in use .*pid {os.getpid()}") as e:
                train(tiny(2), out_dir=tmp_path, progress=False)
            refused.append(str(e.value))

    res = train(tiny(2), out_dir=tmp_path, progress=False, on_step=second)
    assert refused and res.status == "completed"
    assert (tmp_path / ".vcreg.lock").read_text() == ""  # released


def test_stale_lock_of_a_killed_process_is_taken_over(tmp_path):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from vcreg._lock import FolderLock; "
            f"FolderLock({str(tmp_path)!r}).acquire(); print('held', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(FolderLockedError, match=f"pid {holder.pid}"):
        FolderLock(tmp_path).acquire()
    holder.kill()
    holder.wait()
    with pytest.warns(RuntimeWarning, match=f"taking over the lock left by pid {holder.pid}"):
        res = train(tiny(1), out_dir=tmp_path, progress=False)
    assert res.status == "completed"


# -- never overwrite what the user did not ask ----------------------------------------------------


def test_train_refuses_a_folder_that_is_not_a_run(tmp_path):
    mine = tmp_path / "config.yaml"
    mine.write_text("my: own config\n")
    with pytest.raises(FileExistsError, match="not a vcreg run folder .*config.yaml"):
        train(tiny(1), out_dir=tmp_path, progress=False)
    assert mine.read_text() == "my: own config\n"


def test_evaluate_refuses_to_overwrite_warns_and_records_its_checkpoint(tmp_path):
    train(tiny(2), out_dir=tmp_path, progress=False, stop_after_epochs=1)
    with pytest.warns(RuntimeWarning, match="incomplete run.*epoch 1/2"):
        res = evaluate_run(tmp_path, device="cpu", ood=False)
    sha = hashlib.sha256((tmp_path / "checkpoint.pt").read_bytes()).hexdigest()
    assert res["checkpoint"] == {
        "path": str((tmp_path / "checkpoint.pt").resolve()),
        "sha256": sha,
        "epoch": 1,
        "step": 0,
        "complete": False,
    }
    before = (tmp_path / "eval.json").read_text()
    with pytest.raises(FileExistsError, match="--overwrite"):
        evaluate_run(tmp_path, device="cpu", ood=False)
    assert (tmp_path / "eval.json").read_text() == before
    # finishing the run retires the now-stale eval.json instead of leaving it to mislead
    with pytest.warns(RuntimeWarning, match="eval.epoch1.json"):
        train(tiny(2), out_dir=tmp_path, resume=True, progress=False)
    assert not (tmp_path / "eval.json").exists()
    assert json.loads((tmp_path / "eval.epoch1.json").read_text())["checkpoint"]["sha256"] == sha
    res = evaluate_run(tmp_path, device="cpu", ood=False)
    assert res["checkpoint"]["complete"] and res["checkpoint"]["epoch"] == 2


# -- one-line CLI errors ---------------------------------------------------------------------------


def _cli(*args: str):
    return CliRunner().invoke(main, list(args))


def test_cli_errors_are_one_line_with_the_cause(tmp_path, monkeypatch):
    train(tiny(1), out_dir=tmp_path, progress=False)
    res = _cli("evaluate", str(tmp_path), "--device", "bogus")
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert res.output.strip().splitlines() == [
        "Error: unknown device 'bogus'; choose auto, cpu, cuda or cuda:N"
    ]
    # an unexpected failure deep inside: one line naming it; --debug shows the traceback
    import vcreg.training.evaluate as ev

    def boom(*a, **k):
        raise RuntimeError("simulated failure\nsecond line")

    monkeypatch.setattr(ev, "linear_probe", boom)
    res = _cli("evaluate", str(tmp_path), "--device", "cpu")
    errors = [line for line in res.output.splitlines() if line.startswith("Error")]
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert errors == [
        "Error: RuntimeError: simulated failure (run `vcreg --debug ...` for the traceback)"
    ]
    res = _cli("--debug", "evaluate", str(tmp_path), "--device", "cpu")
    assert res.exit_code == 1 and isinstance(res.exception, RuntimeError)


def test_cli_disk_full_during_checkpoint(tmp_path, monkeypatch):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny(2)))
    run = tmp_path / "run"
    train(tiny(2), out_dir=run, progress=False, stop_after_epochs=1)
    before = (run / "checkpoint.pt").read_bytes()
    import vcreg.training.checkpoint as ck

    real = ck.atomic_open

    def full(path, mode="wb", suffix=".tmp"):
        class Full:
            def __init__(self, fh):
                self.fh = fh

            def write(self, data):
                self.fh.write(bytes(data)[:100])
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        cm = real(path, mode, suffix)

        class Ctx:
            def __enter__(self):
                return Full(cm.__enter__())

            def __exit__(self, *exc):
                return cm.__exit__(*exc)

        return Ctx()

    monkeypatch.setattr(ck, "atomic_open", full)
    res = _cli("train", "--out", str(run), "--resume", "--no-progress")
    assert res.exit_code == 1 and "Traceback" not in res.output
    (last,) = [line for line in res.output.splitlines() if line.startswith("Error")]
    assert "could not write checkpoint" in last and "No space left on device" in last
    assert (run / "checkpoint.pt").read_bytes() == before
    assert _temps(run) == []


def test_cli_resume_offers_and_uses_the_previous_checkpoint(tmp_path, reference):
    train(tiny(3), out_dir=tmp_path, progress=False, stop_after_epochs=2)
    _flip(tmp_path / "checkpoint.pt")
    res = _cli("train", "--out", str(tmp_path), "--resume", "--no-progress")
    (err,) = [line for line in res.output.splitlines() if line.startswith("Error")]
    assert res.exit_code == 1 and "CRC-32" in err and "--resume --use-previous" in err
    res = _cli("train", "--out", str(tmp_path), "--resume", "--use-previous", "--no-progress")
    assert res.exit_code == 0, res.output
    assert "warning: checkpoint.pt was unreadable" in res.output
    assert _same(_weights(tmp_path / "checkpoint.pt"), _weights(reference / "checkpoint.pt"))
    res = _cli("train", "--out", str(tmp_path), "--use-previous")
    assert res.exit_code == 2 and "only makes sense with --resume" in res.output


def test_cli_evaluate_warns_on_an_incomplete_run_and_names_its_checkpoint(tmp_path):
    train(tiny(2), out_dir=tmp_path, progress=False, stop_after_epochs=1)
    res = _cli("evaluate", str(tmp_path), "--device", "cpu", "--no-ood")
    assert res.exit_code == 0, res.output
    assert "warning: " in res.output and "incomplete run" in res.output
    sha = hashlib.sha256((tmp_path / "checkpoint.pt").read_bytes()).hexdigest()
    assert f"(checkpoint at epoch 1, run incomplete; sha256 {sha[:12]}" in res.output
    res = _cli("evaluate", str(tmp_path), "--device", "cpu", "--no-ood")
    assert res.exit_code == 1 and "--overwrite" in res.output
    res = _cli("evaluate", str(tmp_path), "--device", "cpu", "--no-ood", "--overwrite")
    assert res.exit_code == 0, res.output


# -- numeric overflow ------------------------------------------------------------------------------


def _plain_cov_term(z: torch.Tensor) -> torch.Tensor:
    """c(Z) = (1/k) Σ_{i≠j} C_ij², C the unbiased covariance — written out, in float64."""
    z = z.double()
    zc = z - z.mean(0)
    c = zc.T @ zc / (len(z) - 1)
    return (c.pow(2).sum() - c.diagonal().pow(2).sum()) / z.shape[1]


@pytest.mark.parametrize("n,k", [(256, 16), (16, 64)])  # covariance and Gram paths
def test_float32_losses_with_huge_embeddings_match_float64(n, k):
    from vcreg import functional as VF

    g = torch.Generator().manual_seed(0)
    za = torch.randn(n, k, generator=g) * 1e9
    zb = za + torch.randn(n, k, generator=g) * 1e8
    ref_c = _plain_cov_term(za)
    assert float(ref_c) < torch.finfo(torch.float32).max  # representable: must be returned
    for method in ("cov", "gram"):
        torch.testing.assert_close(
            VF.covariance_loss(za, method=method).double(), ref_c, rtol=1e-4, atol=0
        )
        vc = VF.vcreg_loss(za, method=method)
        torch.testing.assert_close(vc.double(), ref_c, rtol=1e-4, atol=0)  # variance term is 0
        vic = VF.vicreg_loss(za, zb, method=method)
        ref = 25 * (za.double() - zb.double()).pow(2).mean() + ref_c + _plain_cov_term(zb)
        torch.testing.assert_close(vic.double(), ref, rtol=1e-4, atol=0)
    z = za.clone().requires_grad_()
    (grad,) = torch.autograd.grad(VF.covariance_loss(z), z)
    assert bool(torch.isfinite(grad).all())


def test_float32_overflow_beyond_the_range_is_raised_with_the_reason():
    from vcreg import functional as VF

    z = torch.randn(64, 64, generator=torch.Generator().manual_seed(1)) * 1e15
    assert float(_plain_cov_term(z)) > torch.finfo(torch.float32).max
    for call in (
        lambda: VF.covariance_loss(z),
        lambda: VF.vcreg_loss(z),
        lambda: VF.vicreg_loss(z, z.flip(0)),
    ):
        with pytest.raises(ValueError, match=r"overflows torch.float32.*\|z\| = .*float64"):
            call()
    torch.testing.assert_close(
        VF.covariance_loss(z.double()), _plain_cov_term(z), rtol=1e-9, atol=0
    )


# -- data cache --------------------------------------------------------------------------------------


def test_corrupt_mnist1d_cache_is_regenerated_with_a_warning(tmp_path):
    from vcreg.data.mnist1d import load_mnist1d

    first = load_mnist1d(str(tmp_path), ood=False, num_samples=200)
    (cached,) = (tmp_path / "mnist1d").glob("*.npz")
    _flip(cached, 0.5, 64)  # inside the arrays: the zip CRC-32 no longer matches
    with pytest.warns(RuntimeWarning, match="unreadable.*regenerating"):
        again = load_mnist1d(str(tmp_path), ood=False, num_samples=200)
    for split in ("train", "test"):
        for a, b in zip(first[split].tensors, again[split].tensors, strict=True):
            assert torch.equal(a, b)
    cached.write_bytes(b"PK\x03\x04 not a zip at all")
    with pytest.warns(RuntimeWarning, match="BadZipFile"):
        load_mnist1d(str(tmp_path), ood=False, num_samples=200)
    import numpy as np

    with np.load(cached, allow_pickle=False) as f:  # rewritten, readable again
        assert len(f.files) > 0


# -- API edges -------------------------------------------------------------------------------------


def test_whiten_rejects_bad_input_by_name():
    from vcreg.functional import whiten

    nan = torch.randn(8, 3)
    nan[2, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        whiten(nan)
    with pytest.raises(ValueError, match=r"shape \(batch, dim\)"):
        whiten(torch.randn(8))
    with pytest.raises(TypeError, match="floating-point"):
        whiten(torch.randint(0, 5, (8, 3)))


@pytest.mark.parametrize("spec", [None, 3.5, True, [4, True]])
def test_mlp_projector_spec_type_errors(spec):
    from vcreg.projectors import MLPProjector

    with pytest.raises(TypeError, match="projector spec"):
        MLPProjector(8, spec)


def test_double_backward_through_the_gram_path_says_not_twice_differentiable():
    from vcreg import functional as VF

    for method in ("gram", "cov"):
        z = torch.randn(4, 16, requires_grad=True)
        (grad,) = torch.autograd.grad(VF.covariance_loss(z, method=method), z, create_graph=True)
        with pytest.raises(RuntimeError, match="not twice differentiable"):
            grad.pow(2).sum().backward()


def test_cifar_pickle_handling_is_documented_where_data_root_is():
    """The pickled CIFAR batches: the docs say how vcreg keeps them from running code (MD5s
    before unpickling, an arrays-only unpickler; tests/test_cifar.py checks it)."""
    for doc in ("training.md", "data.md"):
        text = (ROOT / "docs" / "sections" / doc).read_text()
        start = text.index("cifar-10-batches-py")
        near = text[start : start + 1000]
        assert "pickle" in near and "MD5" in near and "run code" in near, doc
        assert "allow_pickle=False" in near, doc


# -- slow: real processes, kill -9 ------------------------------------------------------------------

_ENV = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "PYTHONPATH": str(ROOT / "src")}

# Runs `vcreg` with os.fsync replaced by a SIGKILL on its N-th call: the process dies after the
# temp file of the N-th atomic write is complete but before it is renamed into place.
_KILL_AT_FSYNC = """
import os, signal, sys
n, calls, real = int(os.environ["KILL_AT_FSYNC"]), [0], os.fsync
def fsync(fd):
    calls[0] += 1
    if calls[0] == n:
        os.kill(os.getpid(), signal.SIGKILL)
    real(fd)
os.fsync = fsync
from vcreg.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _vcreg(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "vcreg", *args],
        env={**_ENV, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,
    )


@pytest.fixture
def cfg_file(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny(3)))
    return path


@pytest.mark.slow
def test_kill_during_training_then_resume_is_bit_identical(tmp_path, cfg_file, reference):
    run = tmp_path / "run"
    proc = _vcreg("train", "-c", str(cfg_file), "--out", str(run), "--no-progress")
    deadline = time.time() + 120
    while not (run / "checkpoint.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # somewhere in epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    res = _vcreg("train", "--out", str(run), "--resume", "--no-progress")
    out, err = res.communicate(timeout=300)
    assert res.returncode == 0, err
    assert _same(_weights(run / "checkpoint.pt"), _weights(reference / "checkpoint.pt"))


@pytest.mark.slow
# each atomic write fsyncs its file, then its folder: fsync 1 = config.yaml's data, 3 = the
# metrics of epoch 1, 5 = the first checkpoint, 9 = the second (its .prev link already made)
@pytest.mark.parametrize("at", [1, 3, 5, 9])
def test_kill_during_a_write_then_resume_is_bit_identical(tmp_path, cfg_file, reference, at):
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-c", _KILL_AT_FSYNC, "train", "-c", str(cfg_file), "--out", str(run)],
        env={**_ENV, "KILL_AT_FSYNC": str(at)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert _temps(run), "the kill should leave the interrupted write's temp file"
    if (run / "checkpoint.pt").exists():
        load_checkpoint(run / "checkpoint.pt")  # never a torn checkpoint
        args = ["train", "--out", str(run), "--resume", "--no-progress"]
    else:
        args = ["train", "-c", str(cfg_file), "--out", str(run), "--no-progress"]
    res = _vcreg(*args)
    _, err = res.communicate(timeout=300)
    assert res.returncode == 0, err
    assert _temps(run) == []
    assert _same(_weights(run / "checkpoint.pt"), _weights(reference / "checkpoint.pt"))


@pytest.mark.slow
def test_second_vcreg_train_process_is_refused(tmp_path, cfg_file):
    run = tmp_path / "run"
    first = _vcreg(
        "train", "-c", str(cfg_file), "--out", str(run), "--no-progress", "--set", "epochs=200"
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (
            (run / ".vcreg.lock").exists() and (run / ".vcreg.lock").read_text()
        ):
            time.sleep(0.05)
        second = _vcreg(
            "train", "-c", str(cfg_file), "--out", str(run), "--no-progress", "--set", "epochs=200"
        )
        _, err = second.communicate(timeout=120)
        assert second.returncode == 1
        assert err.strip().splitlines() == [
            line for line in err.strip().splitlines() if line.startswith("Error:")
        ]
        assert f"in use by another vcreg process (pid {first.pid}" in err
    finally:
        first.kill()
        first.wait()


@pytest.mark.slow
def test_file_size_limit_during_a_checkpoint_write(tmp_path):
    import resource

    run = tmp_path / "run"
    train(tiny(3), out_dir=run, progress=False, stop_after_epochs=1)
    before = (run / "checkpoint.pt").read_bytes()
    limit = len(before) // 2

    def cap():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    res = _vcreg("train", "--out", str(run), "--resume", "--no-progress", preexec_fn=cap)
    _, err = res.communicate(timeout=300)
    assert res.returncode == 1 and "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("Error: OSError: could not write checkpoint"), err
    assert "file-size limit" in last and "previous checkpoint is unchanged" in last
    assert (run / "checkpoint.pt").read_bytes() == before
    assert _temps(run) == []


def _verdicts(report: Path) -> dict:
    results = json.loads((report / "results.json").read_text())
    return {c: e["verdict"] for c, e in results["experiments"].items()}


@pytest.mark.slow
def test_killed_reproduce_gives_the_same_verdicts_on_rerun(tmp_path):
    args = ["reproduce", "--preset", "tiny", "--only", "C1", "--device", "cpu", "--no-progress"]
    clean = _vcreg(*args, "--out", str(tmp_path / "clean"))
    _, err = clean.communicate(timeout=600)
    assert clean.returncode == 0, err
    killed = tmp_path / "killed"
    proc = _vcreg(*args, "--out", str(killed))
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        cache = killed / "cache"
        if cache.is_dir() and any(p.is_file() for p in cache.rglob("*")):
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "reproduce finished before it could be killed"
    rerun = _vcreg(*args, "--out", str(killed))
    _, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    assert _verdicts(killed) == _verdicts(tmp_path / "clean")
