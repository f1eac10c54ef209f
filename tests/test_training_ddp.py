"""DDP: ``torchrun --nproc_per_node=2 -m vcreg train`` (gloo, CPU) equals one process.

Same config, same global batch: the two ranks each hold half of every global batch, batch norms
are synchronized (all-reduce batch norm on CPU), the loss is computed on the gathered embeddings,
DDP averages the gradients; after 7 SGD steps the weights must match the single-process run.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
import yaml

from vcreg.training import TrainConfig, build_model, load_checkpoint, train

CFG = {
    "epochs": 1,
    "batch_size": 64,
    "seed": 5,
    "device": "cpu",
    "threads": 1,
    "data": {"name": "mnist1d", "options": {"num_samples": 600, "ood": False}},
    "encoder": {"name": "cnn1d", "repr_dim": 8, "options": {"channels": [8, 16, 16]}},
    "projector": {"spec": "32-32"},
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "monitor": {"every": 0},
}


@pytest.mark.parametrize("loss", ["vicreg", pytest.param("barlow", marks=pytest.mark.slow)])
def test_two_process_ddp_matches_single_process(tmp_path, loss):
    cfg = {**CFG, "loss": {"name": loss}}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "vcreg",
        "train",
        "--config",
        str(path),
        "--out",
        str(tmp_path / "ddp"),
        "--no-progress",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    single = train(cfg, out_dir=tmp_path / "single", progress=False)
    a = load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "single" / "checkpoint.pt")
    assert a["world_size"] == 2 and b["world_size"] == 1
    for key in b["model"]:
        if key.endswith("num_batches_tracked"):
            assert torch.equal(a["model"][key], b["model"][key])
            continue
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=2e-4, atol=2e-5, msg=key)
    # the weights did move (the comparison is not trivially between two initialisations)
    init = build_model(TrainConfig.from_dict(cfg), (1, 40)).state_dict()
    assert not torch.allclose(
        init["encoder.body.0.0.weight"], b["model"]["encoder.body.0.0.weight"]
    )
    assert a["history"][0]["loss"] == pytest.approx(b["history"][0]["loss"], rel=1e-4)
    assert single.history[0]["loss"] == pytest.approx(b["history"][0]["loss"])
