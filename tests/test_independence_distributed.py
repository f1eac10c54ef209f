"""Sharded all-pairs HSIC: 2 CPU processes (gloo) each compute their share of the d x d blocks
and all-reduce; every rank's matrix must equal one process's to float tolerance."""

from __future__ import annotations

import datetime
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from vcreg import independence as ind

WORLD = 2
CASES = {  # name -> pairwise_hsic keyword arguments
    "exact": {"method": "exact"},
    "exact_small_budget": {"method": "exact", "max_memory": 40 * (80 * 79 // 2) * 8},
    "exact_unbiased": {"method": "exact", "estimator": "unbiased"},
    "lowrank": {"method": "lowrank"},
    "lowrank_unbiased": {"method": "lowrank", "estimator": "unbiased"},
}


def _data() -> np.ndarray:
    rng = np.random.default_rng(4)
    z = rng.standard_normal((80, 13))
    z[:, 3] = np.sin(2 * z[:, 0]) + 0.2 * z[:, 3]
    return np.maximum(z, 0) + 0.1 * z  # ReLU-like, some ties


def _worker(rank: int, port: int, out_dir: str) -> None:
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=WORLD,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        torch.set_num_threads(1)
        z = _data()
        res = {k: ind.pairwise_hsic(z, normalized=False, **kw) for k, kw in CASES.items()}
        res["test"] = ind.pairwise_hsic_test(z, method="lowrank")["p_values"]
        torch.save(res, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    out = tmp_path_factory.mktemp("shard")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


@pytest.mark.parametrize("name", list(CASES))
def test_sharded_pairwise_hsic_equals_one_process(sharded, name):
    want = ind.pairwise_hsic(_data(), normalized=False, **CASES[name])
    # the per-pair formula, written plainly, for the exact biased case
    if name == "exact":
        z = _data()
        n = z.shape[0]
        h = np.eye(n) - 1.0 / n
        sig = [ind.bandwidth(z[:, j]) for j in range(z.shape[1])]
        ks = [h @ np.exp(-((z[:, j, None] - z[None, :, j]) ** 2) / (2 * s * s)) @ h
              for j, s in enumerate(sig)]  # fmt: skip
        ref = np.array([[(a * b).sum() / n**2 for b in ks] for a in ks])
        np.testing.assert_allclose(want, ref, rtol=1e-9, atol=1e-14)
    for rank in range(WORLD):
        np.testing.assert_allclose(sharded[rank][name], want, rtol=1e-9, atol=1e-12)


def test_sharded_pairwise_test_p_values_equal_one_process(sharded):
    want = ind.pairwise_hsic_test(_data(), method="lowrank")["p_values"]
    for rank in range(WORLD):
        np.testing.assert_allclose(sharded[rank]["test"], want, rtol=1e-7, equal_nan=True)


def test_distributed_false_without_group_is_single_process():
    z = _data()
    np.testing.assert_array_equal(
        ind.pairwise_hsic(z, distributed=False), ind.pairwise_hsic(z, distributed=None)
    )


@pytest.mark.slow
def test_vcreg_measure_under_torchrun_equals_one_process(tmp_path):
    import json
    import shutil
    import subprocess
    import sys

    np.save(tmp_path / "z.npy", np.maximum(_data(), 0.05)[:, :10])
    env = dict(os.environ, OMP_NUM_THREADS="1")
    common = ["measure", str(tmp_path / "z.npy"), "--method", "lowrank", "--no-dhsic"]
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    for cmd, out in (
        ([torchrun, "--nproc_per_node=2", "-m", "vcreg"], "two"),
        ([sys.executable, "-m", "vcreg"], "one"),
    ):
        proc = subprocess.run(
            [*cmd, *common, "--out", str(tmp_path / out)], capture_output=True, text=True,
            env=env, timeout=300,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        est = next(ln for ln in proc.stdout.splitlines() if ln.startswith("estimate: "))
        assert "(lowrank pairwise HSIC" in est and f"{2 if out == 'two' else 1} rank(s)" in est
    two = json.loads((tmp_path / "two" / "independence.json").read_text())
    one = json.loads((tmp_path / "one" / "independence.json").read_text())
    assert two["settings"]["world_size"] == 2 and one["settings"]["world_size"] == 1
    np.testing.assert_allclose(
        np.load(tmp_path / "two" / "pairwise_hsic.npy"),
        np.load(tmp_path / "one" / "pairwise_hsic.npy"),
        rtol=1e-9,
        atol=1e-15,
    )
