"""IndependenceMonitor (Lightning callback): logs what vcreg.independence computes directly.

The module under training is tests/lightning_app.py (VICReg on MNIST-1D with vcreg.VICRegLoss).
References: vcreg.independence on the final encoder's output for the probe rows, plain numpy for
RankMe and the std, and (slow) a 2-process DDP run on the same data.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("lightning")

import lightning_app as app  # noqa: E402  (tests/ is on sys.path under pytest's rootdir)
from vcreg import independence as ind  # noqa: E402
from vcreg.integrations.lightning import IndependenceMonitor  # noqa: E402

HERE = Path(__file__).parent


def _csv(out: Path) -> list[dict[str, float]]:
    with open(out / "csv" / "version_0" / "metrics.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r.get("independence/nhsic_mean")]
    return [{k: float(v) for k, v in r.items() if v != ""} for r in rows]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("mnist1d_cache"))


@pytest.fixture(scope="module")
def single_run(tmp_path_factory, cache):
    out = tmp_path_factory.mktemp("lightning_single")
    model, result = app.fit(1, str(out), cache)
    return out, model, result


def test_callback_logs_every_epoch_through_the_logger(single_run):
    out, _, result = single_run
    rows = _csv(out)
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    keys = {
        "hsic_mean",
        "hsic_median",
        "nhsic_mean",
        "nhsic_median",
        "nhsic_max",
        "effective_rank",
        "std_mean",
        "n_collapsed",
        "n_samples",
    }
    assert {f"independence/{k}" for k in keys} <= set(rows[0])
    assert all(r["independence/n_samples"] == app.PROBE_SAMPLES for r in rows)
    # the logger received the measurement, unrounded (float64)
    for r, h in zip(rows, result["history"], strict=True):
        assert r["independence/nhsic_mean"] == h["independence/nhsic_mean"]


def test_logged_values_equal_a_direct_computation(single_run, cache):
    out, model, _ = single_run
    last = _csv(out)[-1]
    x = torch.cat([b[0] for b in app.probe_loader(cache)])[: app.PROBE_SAMPLES]
    with torch.no_grad():
        z = model.encoder.eval()(x.double()).numpy()
    raw = np.asarray(ind.pairwise_hsic(z, normalized=False))
    nrm = raw / np.sqrt(np.outer(np.diag(raw), np.diag(raw)))
    iu = np.triu_indices(z.shape[1], 1)
    assert last["independence/hsic_mean"] == pytest.approx(raw[iu].mean(), rel=1e-9)
    assert last["independence/nhsic_mean"] == pytest.approx(nrm[iu].mean(), rel=1e-9)
    assert last["independence/nhsic_median"] == pytest.approx(np.median(nrm[iu]), rel=1e-9)
    sv = np.linalg.svd(z, compute_uv=False)
    p = sv / sv.sum() + ind.RANKME_EPS
    assert last["independence/effective_rank"] == pytest.approx(np.exp(-(p * np.log(p)).sum()))
    assert last["independence/std_mean"] == pytest.approx(z.std(0, ddof=1).mean(), rel=1e-9)


def test_monitoring_does_not_change_training(single_run, tmp_path, cache):
    # same run without the probe pass: the same final weights (the RNG is forked, eval() undone)
    out, model, _ = single_run
    torch.set_num_threads(1)
    import lightning.pytorch as pl

    plain = app.TinyVICReg()
    plain.train_data = app.bundle(cache).train
    trainer = pl.Trainer(
        accelerator="cpu",
        precision="64-true",
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
    )
    trainer.fit(plain)
    for a, b in zip(plain.parameters(), model.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_training_batch_mode_and_heatmap(tmp_path, cache):
    import lightning.pytorch as pl

    torch.set_num_threads(1)
    model = app.TinyVICReg()
    model.train_data = app.bundle(cache).train
    mon = IndependenceMonitor(every_n_epochs=2, samples=96, heatmap_dir=tmp_path / "maps")
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=3,
        callbacks=[mon],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model)
    # epochs 1 (every 2nd) and 2 (the last); rows from the training forward passes
    assert [h["epoch"] for h in mon.history] == [1, 2]
    assert all(h["independence/n_samples"] == 96 for h in mon.history)
    maps = sorted(p.name for p in (tmp_path / "maps").iterdir())
    assert maps == ["pairwise_nhsic_epoch0001.png", "pairwise_nhsic_epoch0002.png"]
    assert "independence/nhsic_mean" in trainer.callback_metrics


def test_callable_representation_gives_the_module_names_values(single_run, cache):
    # representation=fn(pl_module, batch) on the probe: the same rows as representation="encoder"
    import lightning.pytorch as pl

    torch.set_num_threads(1)
    _, _, single = single_run
    model = app.TinyVICReg()
    model.train_data = app.bundle(cache).train
    mon = IndependenceMonitor(
        samples=app.PROBE_SAMPLES,
        probe=app.probe_loader(cache),
        representation=lambda m, batch: m.encoder(batch[0]),
        top_k=3,
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        precision="64-true",
        max_epochs=2,
        callbacks=[mon],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        deterministic=True,
    )
    trainer.fit(model)
    assert mon.history == single["history"]


def test_plain_loop_use_and_bad_arguments():
    mon = IndependenceMonitor(samples=64)
    z = torch.randn(80, 6, dtype=torch.float64)
    for s in range(0, 80, 16):
        mon.update(z[s : s + 16])
    out = mon.compute()
    assert out["independence/n_samples"] == 64
    assert out["independence/effective_rank"] == pytest.approx(ind.effective_rank(z[:64]))
    with pytest.raises(ValueError, match="every_n_epochs"):
        IndependenceMonitor(every_n_epochs=0)
    with pytest.raises(TypeError, match="representation"):
        IndependenceMonitor(representation=3)


def test_unknown_module_name_fails_at_setup(cache):
    import lightning.pytorch as pl

    model = app.TinyVICReg()
    model.train_data = app.bundle(cache).train
    trainer = pl.Trainer(
        accelerator="cpu",
        max_epochs=1,
        callbacks=[IndependenceMonitor(representation="backbone")],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    with pytest.raises(ValueError, match="no submodule 'backbone'"):
        trainer.fit(model)


def test_import_vcreg_does_not_import_lightning():
    code = (
        "import sys, vcreg, vcreg.metrics; from vcreg import PairwiseHSIC; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('lightning', 'pytorch_lightning', 'lightning_fabric')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.slow  # Lightning launches 2 processes: ~20-40 s on 2 shared cores
def test_ddp_two_processes_log_the_same_values_as_one(single_run, tmp_path, cache):
    _, _, single = single_run
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    cmd = [sys.executable, str(HERE / "lightning_app.py"), "--devices", "2"]
    cmd += ["--out", str(tmp_path), "--cache", cache]
    subprocess.run(cmd, check=True, env=env, timeout=300, capture_output=True)
    ddp = json.loads((tmp_path / "history.json").read_text())
    assert ddp["world_size"] == 2
    assert len(ddp["history"]) == len(single["history"]) == 2
    for h2, h1 in zip(ddp["history"], single["history"], strict=True):
        assert h2.keys() == h1.keys()
        for k, v in h1.items():
            if k == "top_pairs":
                assert [list(p[:2]) for p in h2[k]] == [list(p[:2]) for p in v]
            else:
                assert h2[k] == pytest.approx(v, rel=1e-8, abs=1e-12), k
