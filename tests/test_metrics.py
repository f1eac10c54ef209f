"""vcreg.metrics: torchmetrics objects whose values are vcreg.independence's on the same rows.

References: the plain formulas (numpy SVD for RankMe, numpy std for the collapse rule, the mean
and median of the upper triangle) and vcreg.independence.pairwise_hsic on the whole matrix.
"""

from __future__ import annotations

import datetime
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torchmetrics import Metric

from vcreg import independence as ind
from vcreg.metrics import (
    EffectiveRank,
    FeatureStd,
    PairwiseHSIC,
    RepresentationMonitor,
    _equal_shares,
    pairwise_heatmap,
)

N, D = 240, 10


def _data(n: int = N, d: int = D, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, d, generator=g, dtype=torch.float64)
    z[:, 1] = z[:, 0] ** 2 + 0.3 * z[:, 1]  # a dependent, uncorrelated pair (0, 1)
    z[:, 4] = 1e-6 * z[:, 4]  # a collapsed feature
    return z


def _feed(metric: Metric, z: torch.Tensor, batch: int = 64) -> Metric:
    for s in range(0, len(z), batch):
        metric.update(z[s : s + batch])
    return metric


def _rankme(z: np.ndarray, eps: float = 1e-7) -> float:
    sv = np.linalg.svd(z, compute_uv=False)
    p = sv / sv.sum() + eps
    return float(np.exp(-(p * np.log(p)).sum()))


def test_metrics_are_torchmetrics():
    for cls in (PairwiseHSIC, EffectiveRank, FeatureStd, RepresentationMonitor):
        assert issubclass(cls, Metric)


def test_pairwise_hsic_equals_independence_on_the_same_rows():
    z = _data()
    out = _feed(PairwiseHSIC(max_samples=1024, top_k=3), z).compute()
    raw = np.asarray(ind.pairwise_hsic(z.numpy(), normalized=False))
    iu = np.triu_indices(D, 1)
    nrm = raw / np.sqrt(np.outer(np.diag(raw), np.diag(raw)))
    assert out["hsic_mean"].item() == pytest.approx(raw[iu].mean(), rel=1e-10)
    assert out["hsic_median"].item() == pytest.approx(np.median(raw[iu]), rel=1e-10)
    assert out["nhsic_mean"].item() == pytest.approx(nrm[iu].mean(), rel=1e-10)
    assert out["nhsic_max"].item() == pytest.approx(nrm[iu].max(), rel=1e-10)
    top = out["top_pairs"]
    assert top.shape == (3, 3)
    assert tuple(top[0, :2].long().tolist()) == (0, 1)  # the planted dependent pair
    assert top[0, 2].item() == pytest.approx(nrm[0, 1], rel=1e-10)


def test_constant_features_are_left_out_of_the_pairs_as_in_independence_metrics():
    from vcreg.evaluation import independence_metrics

    z = _data()
    z[:, 7] = 3.0
    with pytest.warns(ind.ConstantVariableWarning):
        out = _feed(PairwiseHSIC(), z).compute()
    ref = independence_metrics(z, dhsic=False)
    assert out["n_constant_features"].item() == ref["n_constant_features"] == 1
    assert out["hsic_mean"].item() == pytest.approx(ref["pairwise_hsic_mean"], rel=1e-10)
    assert out["nhsic_mean"].item() == pytest.approx(ref["pairwise_nhsic_mean"], rel=1e-10)
    assert 7 not in out["top_pairs"][:, :2]
    # one non-constant feature left: NaN with a reason, never a number that looks valid
    z[:, 1:] = 1.0
    with pytest.warns(RuntimeWarning, match="collapsed"):
        out = _feed(PairwiseHSIC(), z).compute()
    assert np.isnan(out["nhsic_mean"].item()) and out["n_constant_features"].item() == D - 1


def test_effective_rank_and_feature_std_equal_plain_formulas():
    z = _data()
    rank = _feed(EffectiveRank(), z).compute()
    assert rank.item() == pytest.approx(_rankme(z.numpy()), rel=1e-10)
    assert rank.item() == pytest.approx(ind.effective_rank(z), rel=1e-12)
    std = _feed(FeatureStd(threshold=1e-2), z).compute()
    s = z.numpy().std(0, ddof=1)
    assert std["std_mean"].item() == pytest.approx(s.mean(), rel=1e-10)
    assert std["std_min"].item() == pytest.approx(s.min(), rel=1e-10)
    rms = np.sqrt((z.numpy() ** 2).mean())
    assert std["n_collapsed"].item() == (s <= 1e-2 * rms).sum() == 1


def test_monitor_combines_the_three_with_a_prefix():
    z = _data()
    mon = _feed(RepresentationMonitor(max_samples=1024, prefix="repr/"), z)
    out = mon.compute()
    assert out["repr/n_samples"] == N
    assert out["repr/nhsic_mean"] == pytest.approx(
        _feed(PairwiseHSIC(), z).compute()["nhsic_mean"].item(), rel=1e-12
    )
    assert out["repr/effective_rank"] == pytest.approx(_rankme(z.numpy()), rel=1e-10)
    assert out["repr/n_collapsed"] == 1
    assert "repr/dhsic" not in out
    with_dhsic = _feed(RepresentationMonitor(dhsic=True), z).compute()
    assert with_dhsic["dhsic"] == pytest.approx(ind.dhsic(z), rel=1e-12)
    assert mon.top_pairs[0][:2] == (0, 1)
    assert mon.matrix.shape == (D, D)
    assert all(isinstance(v, float) for v in out.values())


def test_buffer_keeps_the_first_max_samples_rows_and_resets():
    z = _data()
    m = _feed(EffectiveRank(max_samples=100), z, batch=30)
    assert m.samples().shape == (100, D)
    torch.testing.assert_close(m.samples(), z[:100])
    assert m.compute().item() == pytest.approx(_rankme(z[:100].numpy()), rel=1e-10)
    m.reset()
    _feed(m, z[100:160])
    torch.testing.assert_close(m.samples(), z[100:160])


def test_rows_are_detached_flattened_and_kept_in_float32_or_float64():
    m = FeatureStd()
    x = torch.randn(8, 3, 5, requires_grad=True)
    m.update(x.half())
    assert m.samples().dtype == torch.float32 and m.samples().shape == (24, 5)
    assert not m.samples().requires_grad


@pytest.mark.parametrize(
    ("bad", "err", "match"),
    [
        (torch.randn(10), ValueError, "shape"),
        (torch.ones(10, 3, dtype=torch.long), TypeError, "floating"),
        ([[1.0, 2.0]], TypeError, "torch.Tensor"),
    ],
)
def test_bad_batches_raise_clear_errors(bad, err, match):
    with pytest.raises(err, match=match):
        PairwiseHSIC().update(bad)


def test_dimension_change_and_empty_buffer_raise():
    m = PairwiseHSIC()
    with pytest.raises(ValueError, match="no representation rows"), pytest.warns(UserWarning):
        m.compute()
    m.update(torch.randn(8, 4))
    with pytest.raises(ValueError, match="dimension changed"):
        m.update(torch.randn(8, 5))
    with pytest.raises(ValueError, match="max_samples"):
        EffectiveRank(max_samples=2)


@pytest.mark.parametrize(
    ("counts", "budget", "expected"),
    [
        ([50, 40], 100, [50, 40]),
        ([100, 100], 120, [60, 60]),
        ([100, 100], 121, [61, 60]),
        ([10, 100, 100], 90, [10, 40, 40]),
        ([7, 3], 4, [2, 2]),
    ],
)
def test_equal_shares(counts, budget, expected):
    assert _equal_shares(counts, budget) == expected


def test_heatmap_is_written(tmp_path):
    mon = _feed(RepresentationMonitor(), _data())
    mon.compute()
    path = pairwise_heatmap(mon.matrix, tmp_path / "sub" / "h.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="square"):
        pairwise_heatmap(np.zeros((2, 3)), tmp_path / "bad.png")


def test_import_vcreg_stays_light():
    code = (
        "import sys, vcreg; vcreg.__version__; "
        "print(any(m.split('.')[0] in ('torchmetrics', 'lightning', 'pytorch_lightning', "
        "'torch') for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ----------------------------------------------------------------------------- DDP (gloo, CPU)

WORLD = 2


def _ddp_worker(rank: int, port: int, out_dir: str) -> None:
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
        # DistributedSampler-style interleaved batches of 20 rows
        mine = torch.cat([z[s : s + 20] for s in range(rank * 20, N, 20 * WORLD)])
        results = {
            "monitor": _feed(RepresentationMonitor(), mine, batch=16).compute(),
            "rank": _feed(EffectiveRank(), mine).compute(),
            # more rows than the budget: an equal share of each rank's first rows
        }
        capped = _feed(EffectiveRank(max_samples=100), mine)
        with capped.sync_context():
            results["capped"] = capped.samples()
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow  # two spawned processes: 8-30 s depending on the load
def test_ddp_sync_measures_the_same_rows_as_one_process(tmp_path):
    mp.spawn(_ddp_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    res = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    z = _data()
    single = _feed(RepresentationMonitor(), z).compute()
    for r in res:
        assert r["monitor"].keys() == single.keys()
        for k, v in single.items():
            assert r["monitor"][k] == pytest.approx(v, rel=1e-9, abs=1e-15), k
        assert r["rank"].item() == pytest.approx(_rankme(z.numpy()), rel=1e-9)
        # rank 0 holds rows 0-19, 40-59, ...; rank 1 rows 20-39, 60-79, ...: 50 of each
        expected = torch.cat([z[0:20], z[40:60], z[80:90], z[20:40], z[60:80], z[100:110]])
        torch.testing.assert_close(r["capped"], expected)


# ----------------------------------------------------------------------------- vcreg's trainer


def test_trainer_monitor_reports_what_independence_computes(tmp_path):
    # the trainer's built-in monitor is RepresentationMonitor: its metrics.jsonl values equal
    # vcreg.independence on the final encoder's output of the first monitor.samples test rows
    from vcreg.data import load_dataset
    from vcreg.evaluation import encode, independence_metrics
    from vcreg.training import train

    cfg = {
        "epochs": 1,
        "batch_size": 64,
        "device": "cpu",
        "threads": 1,
        "data": {"name": "mnist1d", "options": {"num_samples": 400, "ood": False}},
        "encoder": {"name": "cnn1d", "repr_dim": 8, "options": {"channels": [4, 8, 8]}},
        "projector": {"spec": "16-16"},
        "monitor": {"every": 1, "samples": 96, "probe": "none", "dhsic": True},
    }
    bundle = load_dataset("mnist1d", root=str(tmp_path / "cache"), num_samples=400, ood=False)
    res = train(cfg, None, progress=False, bundle=bundle)
    last = res.history[-1]
    z = encode(res.encoder, bundle.test.tensors[0][:96], 256, torch.device("cpu")).double()
    ref = independence_metrics(z)
    assert last["dhsic"] == pytest.approx(ref["dhsic"], rel=1e-9)
    assert last["pairwise_hsic_mean"] == pytest.approx(ref["pairwise_hsic_mean"], rel=1e-9)
    assert last["pairwise_nhsic_mean"] == pytest.approx(ref["pairwise_nhsic_mean"], rel=1e-9)
    assert last["effective_rank"] == pytest.approx(_rankme(z.numpy()), rel=1e-6)
    assert last["repr_std_mean"] == pytest.approx(z.numpy().std(0, ddof=1).mean(), rel=1e-6)
    assert "n_collapsed" in last and "nhsic_max" in last
