"""``vcreg train`` + ``vcreg evaluate`` end to end on a tiny MNIST-1D config (in-process CLI)."""

from __future__ import annotations

import json

import yaml
from click.testing import CliRunner

from vcreg.cli import main

CFG = {
    "epochs": 2,
    "batch_size": 64,
    "device": "cpu",
    "threads": 1,
    "data": {
        "name": "mnist1d",
        "options": {"num_samples": 600, "ood": ["shear", "iid_noise"], "ood_samples": 100},
    },
    "encoder": {"name": "cnn1d", "repr_dim": 8, "options": {"channels": [8, 16, 16]}},
    "projector": {"spec": "32-32"},
    "optimizer": {"lr": 3e-3},
    "monitor": {
        "every": 1,
        "samples": 64,
        "probe_train_samples": 128,
        "hsic": False,
        "dhsic": False,
    },
    "evaluation": {"independence_samples": 64, "max_iter": 200},
}


def test_train_then_evaluate(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(CFG))
    run = tmp_path / "run"
    runner = CliRunner()
    res = runner.invoke(
        main,
        ["train", "-c", str(cfg), "--out", str(run), "--no-progress", "--set", "optimizer.lr=2e-3"],
    )
    assert res.exit_code == 0, res.output
    assert "done: 2 epochs" in res.output
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["optimizer"]["lr"] == 2e-3
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 2
    # resuming a finished run is a no-op that succeeds
    res = runner.invoke(main, ["train", "--out", str(run), "--resume", "--no-progress"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["evaluate", str(run)])
    assert res.exit_code == 0, res.output
    ev = json.loads((run / "eval.json").read_text())
    assert set(ev["ood_acc"]) == {"shear", "iid_noise"}
    for acc in [ev["in_domain_acc"], ev["train_acc"], *ev["ood_acc"].values()]:
        assert 0.0 <= acc <= 1.0
    assert ev["in_domain_acc"] > 0.15  # 10 classes: better than chance after 2 epochs
    for key in ("pairwise_hsic_mean", "pairwise_nhsic_mean", "dhsic"):
        assert key in ev["independence"]
    assert ev["epochs_trained"] == 2


def test_cli_errors_are_clear(tmp_path):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(CFG))
    runner = CliRunner()
    res = runner.invoke(
        main,
        [
            "train",
            "-c",
            str(cfg),
            "--out",
            str(tmp_path / "r"),
            "--set",
            "batch_size=1",
            "--set",
            "loss.name=simclr",
        ],
    )
    assert res.exit_code != 0
    assert "batch_size" in res.output or "loss.name" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(main, ["train", "-c", str(tmp_path / "missing.yaml")])
    assert res.exit_code != 0 and "not found" in res.output
    res = runner.invoke(main, ["evaluate", str(tmp_path / "nope")])
    assert res.exit_code != 0 and "not found" in res.output
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "checkpoint.pt").write_bytes(b"garbage")
    res = runner.invoke(main, ["evaluate", str(tmp_path / "bad")])
    assert res.exit_code != 0 and "corrupted" in res.output
