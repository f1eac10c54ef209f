"""measure_model: a model and a DataLoader in, the report of measuring the saved array out.

The reference is the plain loop a user would write (encode every batch with torch.no_grad, save
the array with np.save, read it back with vcreg.io.load_array) followed by measure_embeddings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchvision.models import resnet18

from vcreg.independence import collect_features, measure_embeddings, measure_model
from vcreg.io import load_array

FAST = dict(with_dhsic=False, method="exact")


def _images(n: int, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.rand(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,)))


def _resnet(d: int) -> nn.Module:
    torch.manual_seed(0)
    return resnet18(weights=None, num_classes=d).eval()


def _saved(tmp_path: Path, fn, loader) -> np.ndarray:
    with torch.no_grad():
        z = torch.cat([fn(x) for x, _ in loader]).numpy()
    np.save(tmp_path / "z.npy", z)
    return load_array(tmp_path / "z.npy").array


def _same_report(a: dict, b: dict) -> None:
    for key in ("pairwise_nhsic", "pairwise_hsic", "pairwise_tests", "effective_rank"):
        assert a[key] == b[key], key
    assert a["feature_std"] == b["feature_std"]
    assert a["input"]["n_samples_used"] == b["input"]["n_samples_used"]


def _check_resnet(tmp_path: Path, n: int) -> None:
    net, loader = _resnet(16), DataLoader(_images(n), batch_size=100)
    rep = measure_model(net, loader, device="cpu", **FAST)
    ref = measure_embeddings(_saved(tmp_path, net, loader), device="cpu", **FAST)
    _same_report(rep, ref)
    assert rep["input"]["rows_seen"] == rep["input"]["n_samples_total"] == n
    assert rep["input"]["complete"] and not rep["input"]["subsampled"]
    assert not any(note.startswith("SUBSAMPLED") for note in rep["notes"])


def test_resnet18_on_1000_images_equals_the_saved_array(tmp_path: Path):
    _check_resnet(tmp_path, 1000)  # ~8 s on one shared core


def test_layer_hook_with_pooled_feature_maps(tmp_path: Path):
    net, loader = _resnet(10), DataLoader(_images(120), batch_size=40)
    rep = measure_model(net, loader, "layer1", device="cpu", **FAST)

    def stem_layer1(x):  # the same layer, written out: conv1 -> bn -> relu -> maxpool -> layer1
        fmap = net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(x)))))
        return fmap.mean(dim=(2, 3))  # global average pooling: one feature per channel

    ref = measure_embeddings(_saved(tmp_path, stem_layer1, loader), device="cpu", **FAST)
    assert rep["input"]["n_features"] == 64 and rep["input"]["layer"] == "layer1"
    _same_report(rep, ref)
    flat = collect_features(net, loader, "layer1", spatial="flatten", device="cpu", max_samples=8)
    assert flat["features"].shape == (8, 64 * 8 * 8)


def test_bad_layer_name_is_a_clear_error():
    with pytest.raises(ValueError, match=r"no submodule named 'layer9'.*did you mean"):
        measure_model(_resnet(8), DataLoader(_images(8)), "layer9", device="cpu")


def test_first_n_stops_early_and_says_so():
    seen = []

    class Counting(TensorDataset):
        def __getitem__(self, i):
            seen.append(i)
            return super().__getitem__(i)

    data = Counting(torch.randn(500, 6), torch.zeros(500))
    net = nn.Linear(6, 5)
    rep = measure_model(net, DataLoader(data, batch_size=50), max_samples=120, **FAST)
    assert rep["input"]["n_samples_used"] == 120 and not rep["input"]["complete"]
    assert rep["input"]["subsampled"]
    assert max(seen) < 150  # three batches read, not ten
    assert rep["notes"][0].startswith("SUBSAMPLED: the first 120 rows")
    with torch.no_grad():
        ref = measure_embeddings(net(data.tensors[0][:120]), **FAST)
    _same_report(rep, ref)


def test_reservoir_is_a_seeded_uniform_subset():
    x = torch.arange(400.0)[:, None].repeat(1, 3) + torch.randn(400, 3)
    loader = DataLoader(TensorDataset(x, torch.zeros(400)), batch_size=64)
    net = nn.Identity()
    a = collect_features(net, loader, max_samples=100, sample="reservoir", seed=3, device="cpu")
    b = collect_features(net, loader, max_samples=100, sample="reservoir", seed=3, device="cpu")
    idx = a["row_indices"]
    assert np.array_equal(idx, b["row_indices"]) and len(set(idx.tolist())) == 100
    assert np.all(np.diff(idx) > 0)  # kept in loader order
    np.testing.assert_array_equal(a["features"], x[idx].numpy())
    # uniform over the stream: the kept positions spread over all of it, not the first rows
    assert idx.max() > 300 and idx.min() < 100
    assert a["rows_seen"] == 400


def test_labels_device_and_mode_restored():
    net = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.Linear(8, 6)).train()
    x, y = torch.randn(60, 4), torch.arange(60) % 3
    rep = measure_model(net, DataLoader(TensorDataset(x, y), batch_size=16), labels=True, **FAST)
    assert rep["labels"]["n_classes"] == 3
    assert net.training  # eval() for the pass (dropout off), train mode restored afterwards
    with pytest.raises(ValueError, match="labels=True needs batches"):
        measure_model(net, DataLoader(x, batch_size=16), labels=True)
    with pytest.raises(ValueError, match="unknown device"):
        measure_model(net, DataLoader(x, batch_size=16), device="gpu")


def test_reservoir_keeps_every_position_with_probability_k_over_n():
    n, k, runs = 50, 10, 400
    x = torch.arange(float(n))[:, None].repeat(1, 2)
    loader = DataLoader(TensorDataset(x, torch.arange(n) % 7), batch_size=16)
    hits = np.zeros(n)
    for seed in range(runs):
        got = collect_features(
            nn.Identity(), loader, max_samples=k, sample="reservoir", seed=seed, labels=True
        )
        hits[got["row_indices"]] += 1
        assert np.array_equal(got["labels"], got["row_indices"] % 7)  # labels follow their rows
    # Binomial(400, 0.2) per position: mean 80, sd 8; a first-n or last-n bias would be 0 or 400
    assert hits.sum() == runs * k and hits.min() > 80 - 5 * 8 and hits.max() < 80 + 5 * 8
    assert abs(hits[: n // 2].mean() - hits[n // 2 :].mean()) < 8
