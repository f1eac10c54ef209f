"""measure_model: a model and a DataLoader in, the report of measuring the saved array out.

The reference is the plain loop a user would write (encode every batch with torch.no_grad, save
the array with np.save, read it back with vcreg.io.load_array) followed by measure_embeddings.
"""

from __future__ import annotations

import subprocess
import sys
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


# --- the model is left exactly as it was found (issue #30 item 3) -----------------------------


def _snapshot(net: nn.Module) -> dict:
    """Every module's own flag, every parameter/buffer object and its bits, every hook."""
    tensors = [*net.named_parameters(remove_duplicate=False), *net.named_buffers()]
    hooks = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks")
    return {
        "flags": [(name, m.training) for name, m in net.named_modules()],
        "objects": [(name, id(t)) for name, t in tensors],
        "bits": {name: t.detach().reshape(-1).view(torch.uint8).clone() for name, t in tensors},
        "devices": {name: t.device for name, t in tensors},
        "hooks": [(name, h, list(getattr(m, h))) for name, m in net.named_modules() for h in hooks],
    }


def _assert_unchanged(net: nn.Module, before: dict) -> None:
    after = _snapshot(net)
    assert after["flags"] == before["flags"]
    assert after["objects"] == before["objects"] and after["devices"] == before["devices"]
    for name, bits in before["bits"].items():
        assert torch.equal(after["bits"][name], bits), name
    assert after["hooks"] == before["hooks"]


def _wrapped_eval_resnet() -> nn.Module:
    """The issue's pattern: a train-mode wrapper around eval-mode ResNet-18 layers."""
    torch.manual_seed(0)
    return nn.Sequential(*list(resnet18(weights=None).eval().children())[:-1], nn.Flatten())


def _frozen_bn_resnet() -> nn.Module:
    """The fine-tuning recipe: model.train(), BatchNorm layers frozen in eval mode."""
    torch.manual_seed(0)
    net = resnet18(weights=None, num_classes=8).train()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
    return net


@pytest.mark.parametrize("make", [_wrapped_eval_resnet, _frozen_bn_resnet])
@pytest.mark.parametrize("layer", [None, "layer1"])
def test_model_left_exactly_as_found(make, layer):
    net = make()
    names = [n for n, _ in net.named_modules()]
    layer = None if layer is None else next(n for n in names if n.endswith(layer) or n == "4")
    x = torch.rand(16, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out_before = net(x)  # in the user's own modes (BatchNorm in eval: running statistics)
    before = _snapshot(net)
    assert any(not m.training for m in net.modules()) and any(m.training for m in net.modules())
    loader = DataLoader(_images(40), batch_size=20)
    if layer is None:  # 512 features: the measurement itself is not what this test is about
        collect_features(net, loader, device="cpu")
    else:
        measure_model(net, loader, layer, device="cpu", **FAST)
    _assert_unchanged(net, before)
    with torch.no_grad():
        torch.testing.assert_close(net(x), out_before, rtol=0, atol=0)
    _assert_unchanged(net, before)  # that forward used (did not overwrite) the running stats


class _FailingLoader:
    """Two good batches, then the loader itself fails (a corrupt file, a worker crash)."""

    def __iter__(self):
        for i in range(5):
            if i == 2:
                raise OSError("disk read failed")
            yield torch.rand(8, 3, 32, 32)


@pytest.mark.parametrize("sample", ["first", "reservoir"])
def test_model_left_as_found_when_the_call_fails(sample):
    net = _frozen_bn_resnet()
    before = _snapshot(net)
    with pytest.raises(OSError, match="disk read failed"):
        measure_model(net, _FailingLoader(), "layer3", sample=sample, device="cpu", **FAST)
    _assert_unchanged(net, before)
    bad = DataLoader(torch.rand(16, 5), batch_size=8)  # wrong input shape: the forward fails
    with pytest.raises(RuntimeError):
        measure_model(net, bad, "layer3", device="cpu", **FAST)
    _assert_unchanged(net, before)
    unused = _Counting()
    unused.spare = nn.Linear(4, 4)  # registered, never called in forward
    before_unused = _snapshot(unused)
    with pytest.raises(ValueError, match="'spare' was not called"):
        measure_model(unused, DataLoader(torch.randn(8, 4), batch_size=4), "spare", **FAST)
    _assert_unchanged(unused, before_unused)
    with pytest.raises(ValueError, match="no submodule named"):
        measure_model(net, DataLoader(_images(8)), "layer9", device="cpu")
    _assert_unchanged(net, before)


class _Counting(nn.Module):
    """Writes a buffer even in eval mode (a custom statistic), and a parameter if asked."""

    def __init__(self, write_param: bool = False) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 6)
        self.register_buffer("calls", torch.zeros((), dtype=torch.int64))
        self.write_param = write_param

    def forward(self, x):
        self.calls += 1
        if self.write_param:
            self.lin.bias.add_(1.0)
        return self.lin(x)


def test_buffers_written_by_the_forward_are_restored_and_parameter_writes_refused():
    net = _Counting().train()
    before = _snapshot(net)
    measure_model(net, DataLoader(torch.randn(40, 4), batch_size=10), **FAST)
    _assert_unchanged(net, before)
    assert int(net.calls) == 0
    bad = _Counting(write_param=True)
    with pytest.raises(RuntimeError, match=r"wrote parameter\(s\) \['lin.bias'\] in place"):
        measure_model(bad, DataLoader(torch.randn(40, 4), batch_size=10), **FAST)
    assert int(bad.calls) == 0 and bad.training


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"layer": 3}, TypeError, "layer must be a submodule name .* got 3 \\(int\\)"),
        ({"max_samples": "10"}, TypeError, "max_samples must be an int .* got '10'"),
        ({"max_samples": 2.5}, TypeError, "max_samples must be an int"),
        ({"max_samples": True}, TypeError, "max_samples must be an int"),
        ({"max_samples": 3}, ValueError, "max_samples must be at least 4"),
        ({"sample": "random"}, ValueError, "unknown sample rule 'random'"),
        ({"spatial": "max"}, ValueError, "unknown spatial rule 'max'"),
        ({"seed": "0"}, TypeError, "seed must be an int >= 0, got '0'"),
        ({"seed": -1}, ValueError, "seed must be an int >= 0, got -1"),
        ({"labels": "yes"}, TypeError, "labels must be True or False"),
        ({"device": "gpu"}, ValueError, "unknown device 'gpu'"),
    ],
)
def test_arguments_are_one_line_errors_naming_them(kwargs, error, message):
    net = _Counting()
    before = _snapshot(net)
    with pytest.raises(error, match=message) as info:
        measure_model(net, DataLoader(torch.randn(20, 4), batch_size=10), **kwargs)
    assert "\n" not in str(info.value)
    _assert_unchanged(net, before)
    with pytest.raises(TypeError, match="encoder must be a torch.nn.Module, got function"):
        collect_features(lambda x: x, DataLoader(torch.randn(20, 4)))
    with pytest.raises(TypeError, match="dataloader must be an iterable of batches"):
        collect_features(net, torch.randn(20, 4))


MEMORY_CHILD = """
import resource, sys
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from vcreg.independence import collect_features

def status(key):
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) * 1024 for l in fh if l.startswith(key))

torch.set_num_threads(1)
net = nn.Sequential(nn.Conv2d(3, 16, 3), nn.Flatten())  # 576 features per row
loader = DataLoader(TensorDataset(torch.randn(96, 3, 8, 8)), batch_size=32)
collect_features(net, loader, max_samples=8, device="cpu")  # warm up torch's own buffers
limit = status("VmSize") + 2**30
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
for sample in ("first", "reservoir"):
    base = status("VmHWM")
    got = collect_features(net, loader, max_samples=10**8, sample=sample, device="cpu")
    print(got["features"].shape[0], status("VmHWM") - base)
"""


def test_memory_follows_the_rows_kept_not_max_samples():
    """max_samples = 1e8 on 96 rows, under an address-space limit of 1 GiB more than the
    process had mapped: the reservoir used to be sized by max_samples (230 GB here)."""
    proc = subprocess.run(
        [sys.executable, "-c", MEMORY_CHILD], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for line in proc.stdout.splitlines():  # first, then reservoir
        rows, growth = map(int, line.split())
        assert rows == 96 and growth < 64 * 2**20  # the kept rows: 96 x 576 floats, 0.2 MB


class _NeverRead:
    def __iter__(self):
        raise AssertionError("the loader was read before the options were checked")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"top_k": "3"}, TypeError, "top_k must be an int >= 0, got '3'"),
        ({"pair_permutations": -1}, ValueError, "pair_permutations must be an int >= 0"),
        ({"n_permutations": 0}, ValueError, "n_permutations must be an int >= 1"),
        ({"with_dhsic": "no"}, TypeError, "with_dhsic must be True or False"),
        (
            {"test": "perm"},
            ValueError,
            "unknown test 'perm'; choose one of auto, gamma, permutation, none",
        ),
        ({"estimator": "u"}, ValueError, "unknown estimator 'u'"),
        ({"method": 3}, ValueError, "unknown method 3"),
        ({"max_memory": "lots"}, ValueError, "max_memory: cannot parse 'lots'"),
        ({"maxsamples": 10}, TypeError, r"unknown measure option\(s\) \['maxsamples'\]"),
    ],
)
def test_measure_options_checked_before_the_loader_is_read(kwargs, error, message):
    with pytest.raises(error, match=message) as info:
        measure_model(_Counting(), _NeverRead(), **kwargs)
    assert "\n" not in str(info.value)
    z = np.random.default_rng(0).normal(size=(20, 3))
    if "maxsamples" not in kwargs:
        with pytest.raises(error, match=message):  # the same line from measure_embeddings
            measure_embeddings(z, **kwargs)
