"""The trainer's data feeding (vcreg.training.feeding): augmentation on the training device
(``augmentation.on_device``), the memory / loader / per-sample paths, per-rank rows of the
global batch, and CPU results unchanged by the switch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import Dataset

from vcreg.data import write_synthetic_cifar
from vcreg.training import TrainConfig, load_bundle, load_checkpoint, train
from vcreg.training.feeding import Batches, feeding_mode, make_views

pytestmark = pytest.mark.filterwarnings("ignore::vcreg.training.regime.RegimeWarning")

CIFAR_CFG = {
    "epochs": 1,
    "batch_size": 32,
    "seed": 3,
    "device": "cpu",
    "threads": 1,
    "data": {"name": "cifar10", "options": {}},
    "encoder": {"name": "smallcnn", "repr_dim": 8, "options": {"channels": [4, 8, 8, 8]}},
    "projector": {"spec": "16-16"},
    "optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "monitor": {"every": 0},
}


@pytest.fixture(scope="module")
def cifar_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_cifar(
        tmp_path_factory.mktemp("data"), n_train=96, n_test=32, corruptions=None
    )


def _cfg(root: Path, **over) -> TrainConfig:
    cfg = TrainConfig.from_dict({**CIFAR_CFG, "data": {"name": "cifar10", "root": str(root)}})
    return cfg.replace({k.replace("__", "."): v for k, v in over.items()})


class _NoTensors(Dataset):
    """A dataset that only yields items (like ImageFolder): the trainer must load it."""

    def __init__(self, base: Dataset) -> None:
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        return self.base[i]


def test_the_switch_picks_the_path() -> None:
    cfg = TrainConfig.from_dict({})
    mem, items = torch.utils.data.TensorDataset(torch.zeros(4, 1)), _NoTensors([0])
    cpu, cuda = torch.device("cpu"), torch.device("cuda")  # a device object; no GPU needed
    for on, workers, ds, dev, mode in [
        ("auto", 0, mem, cpu, "memory"),
        ("auto", 2, mem, cpu, "per-sample"),  # what the trainer always did on the CPU
        ("auto", 2, items, cpu, "per-sample"),
        ("auto", 2, mem, cuda, "memory"),  # CUDA: the data and the views on the device
        ("auto", 2, items, cuda, "loader"),  # workers load, the device augments
        (True, 2, mem, cpu, "memory"),
        (True, 0, items, cpu, "loader"),
        (False, 0, mem, cuda, "memory"),
        (False, 2, mem, cuda, "per-sample"),
    ]:
        c = cfg.replace({"augmentation.on_device": on, "data.num_workers": workers})
        assert feeding_mode(c, ds, dev) == mode, (on, workers, dev)
    with pytest.raises(ValueError, match="on_device"):
        cfg.replace({"augmentation.on_device": "gpu"})


def _weights(result) -> dict[str, torch.Tensor]:
    return {**result.encoder.state_dict(), **result.projector.state_dict()}


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_on_device_on_the_cpu_changes_nothing(cifar_root: Path) -> None:
    """CPU results do not depend on the switch: on_device=true (views made on the CPU, the
    training device) equals the in-memory path of num_workers=0, bit for bit."""
    base = train(_cfg(cifar_root), progress=False)
    on = train(_cfg(cifar_root, augmentation__on_device=True, data__num_workers=2), progress=False)
    _assert_same(_weights(base), _weights(on))
    mn = {"data": {"name": "mnist1d", "options": {"num_samples": 300, "ood": False}}}
    mn.update(encoder={"name": "cnn1d", "repr_dim": 8}, batch_size=64)
    a = train(TrainConfig.from_dict({**CIFAR_CFG, **mn}), progress=False)
    b = train(
        TrainConfig.from_dict({**CIFAR_CFG, **mn}).replace({"augmentation.on_device": True}),
        progress=False,
    )
    _assert_same(_weights(a), _weights(b))


def test_loaded_batches_equal_in_memory_batches(cifar_root: Path) -> None:
    """A dataset without tensors is loaded by DataLoader workers and augmented after loading:
    the same batches and views as from memory."""
    cfg = _cfg(cifar_root, augmentation__on_device=True)
    bundle = load_bundle(cfg)
    ref = train(cfg, progress=False, bundle=bundle)
    bundle.train = _NoTensors(bundle.train)
    for workers in (0, 1):
        res = train(cfg.replace({"data.num_workers": workers}), progress=False, bundle=bundle)
        _assert_same(_weights(ref), _weights(res))


@pytest.mark.parametrize("on", [True, False])
def test_ranks_hold_the_rows_of_the_single_process_batch(cifar_root: Path, on: bool) -> None:
    cfg = _cfg(cifar_root, augmentation__on_device=on)
    bundle = load_bundle(cfg)
    aug = make_views(cfg, bundle)
    cpu = torch.device("cpu")
    whole = list(Batches(cfg, bundle.train, aug, 1, 0, cpu).epoch(1, 0, False))
    sources = [bundle.train, _NoTensors(bundle.train)] if on else [bundle.train]
    assert len(whole) == 3
    for ds in sources:  # memory, then loader
        rk = [list(Batches(cfg, ds, aug, 2, r, cpu).epoch(1, 0, False)) for r in (0, 1)]
        for step, (va, vb, y) in enumerate(whole):
            torch.testing.assert_close(
                torch.cat([rk[0][step][0], rk[1][step][0]]), va, rtol=0, atol=1e-6
            )
            torch.testing.assert_close(
                torch.cat([rk[0][step][1], rk[1][step][1]]), vb, rtol=0, atol=1e-6
            )
            assert torch.equal(torch.cat([rk[0][step][2], rk[1][step][2]]), y)
    # resuming at step 2 redraws the same batch
    again = list(Batches(cfg, bundle.train, aug, 1, 0, cpu).epoch(1, 2, False))
    assert torch.equal(again[0][0], whole[2][0])
    assert not torch.equal(whole[0][0], whole[1][0])


def _imagefolder(root: Path, n_per_class: int = 12) -> Path:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", n_per_class), ("val", 4)):
        for c in range(3):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                arr = np.clip(rng.normal(60 + 60 * c, 30, (36, 36, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(arr).save(folder / f"{i}.png")
    return root


@pytest.mark.slow
def test_two_ranks_loading_and_augmenting_match_one_process(tmp_path: Path) -> None:
    """torchrun, 2 gloo ranks, an ImageFolder dataset (loader path, views made after loading,
    each rank its rows of the global batch's parameters) -> the single-process weights."""
    root = _imagefolder(tmp_path / "folders")
    cfg = {
        **CIFAR_CFG,
        "batch_size": 12,
        "data": {"name": "imagefolder", "root": str(root), "options": {"image_size": 32}},
        "augmentation": {"name": "cifar10", "on_device": True},
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd += [
        "-m",
        "vcreg",
        "train",
        "-c",
        str(path),
        "--out",
        str(tmp_path / "ddp"),
        "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    train(cfg, out_dir=tmp_path / "single", progress=False)
    a = load_checkpoint(tmp_path / "ddp" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "single" / "checkpoint.pt")
    assert a["world_size"] == 2 and b["world_size"] == 1 and b["history"][0]["steps"] == 3
    for key in b["model"]:
        if not key.endswith("num_batches_tracked"):
            torch.testing.assert_close(a["model"][key], b["model"][key], rtol=2e-4, atol=2e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_on_cuda_the_views_are_made_on_the_device(cifar_root: Path) -> None:
    cfg = _cfg(cifar_root, device="cuda")
    bundle = load_bundle(cfg)
    b = Batches(cfg, bundle.train, make_views(cfg, bundle), 1, 0, torch.device("cuda"))
    assert b.mode == "memory" and b.x.is_cuda
    va, vb, _ = next(iter(b.epoch(0, 0, True)))
    assert va.is_cuda and vb.is_cuda
    cpu = Batches(cfg, bundle.train, make_views(cfg, bundle), 1, 0, torch.device("cpu"))
    torch.testing.assert_close(va.cpu(), next(iter(cpu.epoch(0, 0, False)))[0], rtol=0, atol=1e-4)
    res = train(cfg, progress=False, bundle=bundle)
    assert res.device.startswith("cuda")


def test_per_sample_torchvision_views_keep_their_draws_under_ranks(cifar_root: Path) -> None:
    """augmentation.params.batched=false (torchvision sample by sample, global RNG seeded from
    the step): a rank's rows are the rows of the single-process batch."""
    cfg = _cfg(cifar_root, augmentation__params={"batched": False}, batch_size=8)
    bundle = load_bundle(cfg)
    aug = make_views(cfg, bundle)
    cpu = torch.device("cpu")
    whole = next(iter(Batches(cfg, bundle.train, aug, 1, 0, cpu).epoch(0, 0, False)))
    rows = [
        next(iter(Batches(cfg, bundle.train, aug, 2, r, cpu).epoch(0, 0, False))) for r in (0, 1)
    ]
    for v in (0, 1):
        torch.testing.assert_close(torch.cat([rows[0][v], rows[1][v]]), whole[v], rtol=0, atol=1e-6)
    assert not torch.allclose(whole[0], whole[1])
