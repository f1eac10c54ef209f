"""Untrusted input: exported encoder files that cannot steer vcreg, and independence-function
inputs (dtype, complex data, extreme bandwidths) that give the right number or a clear error."""

from __future__ import annotations

import copy
import json
import re
import resource
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save as safetensors_bytes

import vcreg.data
from vcreg import independence as ind
from vcreg._exportfile import UnverifiedExportWarning, payload_sha256
from vcreg.cli import main
from vcreg.export import exported_train_config, load_exported
from vcreg.models import (
    EXPORT_FORMAT,
    EXPORT_VERSION,
    build_encoder,
    load_encoder,
    read_export_config,
)
from vcreg.training.config import TrainConfig


def _hsic_reference(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    """Biased HSIC written plainly: tr(K H L H) / n², Gaussian kernels exp(-d²/(2 sigma²))."""
    n = len(x)
    k = np.exp(-((x[:, None] - x[None, :]) ** 2) / (2 * sigma**2))
    l_ = np.exp(-((y[:, None] - y[None, :]) ** 2) / (2 * sigma**2))
    h = np.eye(n) - 1.0 / n
    return float(np.trace(k @ h @ l_ @ h)) / n**2


# ----------------------------------------------------------------------------- independence input


def test_integer_data_is_converted_and_gives_the_float_answer():
    rng = np.random.default_rng(0)
    x = rng.integers(-5, 6, size=80)
    y = x**2 + rng.integers(-2, 3, size=80)
    ref = _hsic_reference(x.astype(float), y.astype(float), 3.0)
    for xi, yi in ((x, y), (torch.from_numpy(x), torch.from_numpy(y))):
        assert ind.hsic(xi, yi, bandwidth=3.0) == pytest.approx(ref, rel=1e-10)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.float16, torch.bool, "float64"])
def test_a_non_float_compute_dtype_is_a_clear_error(dtype):
    x = np.arange(20.0)
    calls = [
        lambda: ind.hsic(x, x**2, dtype=dtype),
        lambda: ind.pairwise_hsic(np.stack([x, x**2], 1), dtype=dtype),
        lambda: ind.dhsic([x, x**2], dtype=dtype),
    ]
    for call in calls:
        with pytest.raises(TypeError, match="dtype must be torch.float32 or torch.float64"):
            call()


def test_complex_input_is_refused_everywhere():
    z = np.arange(20.0) + 1j * np.arange(20.0)[::-1]
    calls = [
        lambda v: ind.hsic(v, np.arange(20.0)),
        lambda v: ind.pairwise_hsic(np.stack([v, v], 1)),
        lambda v: ind.dhsic([v, np.arange(20.0)]),
        lambda v: ind.bandwidth(v),
    ]
    for call in calls:
        for v in (z, torch.from_numpy(z)):
            with pytest.raises(TypeError, match="complex data"):
                call(v)


# Gaussian: 2·sigma² must be a normal float32; Laplacian: sigma itself
@pytest.mark.parametrize(
    ("bw", "kernel"),
    [(1e-300, "gaussian"), (1e-30, "gaussian"), (1e30, "gaussian"), (1e300, "gaussian")]
    + [(1e-300, "laplacian"), (1e-45, "laplacian"), (1e300, "laplacian")],
)
def test_a_bandwidth_that_under_or_overflows_is_a_clear_error(bw, kernel):
    rng = np.random.default_rng(1)
    x = rng.normal(size=50)
    y = x + rng.normal(size=50)
    calls = [
        lambda: ind.hsic(x, y, kernel=kernel, bandwidth=bw),
        lambda: ind.hsic_test(x, y, kernel=kernel, bandwidth=bw),
        lambda: ind.pairwise_hsic(np.stack([x, y], 1), kernel=kernel, bandwidth=bw),
        lambda: ind.dhsic([x, y], kernel=kernel, bandwidth=bw),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="under/overflows"):
            call()


def test_a_small_but_representable_bandwidth_gives_the_formula_value():
    rng = np.random.default_rng(2)
    x = rng.normal(size=40)
    y = x + 0.1 * rng.normal(size=40)
    for sigma in (1e-3, 0.5, 1e3):
        assert ind.hsic(x, y, bandwidth=sigma) == pytest.approx(
            _hsic_reference(x, y, sigma), rel=1e-9, abs=1e-15
        )


# ----------------------------------------------------------------------------- exported files
# Each crafted file below is built the way `vcreg export` writes one (tensors of a real encoder,
# the training config, a valid content hash), then made hostile in one field.

TRAIN = {
    "epochs": 1,
    "batch_size": 32,
    "device": "cpu",
    "data": {"name": "mnist1d", "options": {"num_samples": 400, "ood": False}},
    "encoder": {"name": "cnn1d", "repr_dim": 8, "options": {"channels": [4, 8, 8]}},
    "projector": {"spec": "16-16"},
    "evaluation": {"independence_samples": 64, "max_iter": 50},
}


def _config(train: dict[str, Any], input_shape: list[int]) -> dict[str, Any]:
    cfg = TrainConfig.from_dict(train)
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "encoder": {
            "name": cfg.encoder.name,
            "input_shape": input_shape,
            "repr_dim": cfg.encoder.repr_dim,
            "options": dict(cfg.encoder.options),
        },
        "projector": None,
        "data": cfg.to_dict()["data"],
        "train_config": cfg.to_dict(),
        "source": {"run_dir": "/somewhere/run", "checkpoint_sha256": None, "epoch": 1, "step": 12},
    }


def _write(path: Path, config: Any, tensors: dict | None = None, **meta: str | None) -> Path:
    """An export file with ``config`` (dict -> JSON; str as is), the tensors of a freshly built
    cnn1d (or ``tensors``) and a valid content hash unless ``sha256=None`` is given."""
    if tensors is None:
        enc = build_encoder("cnn1d", [1, 40], 8, channels=[4, 8, 8])
        tensors = {f"encoder.{k}": v.clone() for k, v in enc.state_dict().items()}
    text = config if isinstance(config, str) else json.dumps(config)
    md = {"format": EXPORT_FORMAT, "version": str(EXPORT_VERSION), "config": text}
    md.update({k: v for k, v in meta.items() if k != "sha256"})
    if meta.get("sha256", "") is not None:
        md["sha256"] = payload_sha256(safetensors_bytes(tensors, metadata=md))
    path.write_bytes(safetensors_bytes(tensors, metadata=md))
    return path


def _hostile(tmp_path: Path, name: str, edit) -> Path:
    config = _config(copy.deepcopy(TRAIN), [1, 40])
    edit(config)
    return _write(tmp_path / f"{name}.safetensors", config)


@pytest.fixture
def user_dirs(tmp_path, monkeypatch):
    """The user's cache and data folders (environment), all under tmp_path."""
    monkeypatch.setenv("VCREG_CACHE", str(tmp_path / "user_cache"))
    monkeypatch.setenv("VCREG_DATA", str(tmp_path / "user_data"))
    return tmp_path


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def _measure(path: Path, out: Path, *extra: str):
    args = ["measure", str(path), "--out", str(out), "--no-dhsic", "--no-progress"]
    return CliRunner().invoke(main, [*args, "--max-samples", "64", "--device", "cpu", *extra])


def test_a_file_never_chooses_where_data_is_written(user_dirs):
    hostile = user_dirs / "not_yours"

    def edit(c):
        c["train_config"]["data"]["root"] = str(hostile)
        c["train_config"]["data"]["options"]["cache"] = True

    path = _hostile(user_dirs, "root", edit)
    before = _files(user_dirs)
    res = _measure(path, user_dirs / "out", "--data-samples", "200")
    assert res.exit_code == 0, res.output
    assert "ignoring the file's" in res.output and f'data.root="{hostile}"' in res.output
    assert not hostile.exists()
    written = _files(user_dirs) - before
    # only the results in --out and MNIST-1D's arrays in the user's own cache ($VCREG_CACHE)
    assert written and all(f.startswith(("out/", "user_cache/")) for f in written), written
    assert any(f.startswith("out/") for f in written)
    # the user's --data-root is where the data go when given
    mine = user_dirs / "my_data"
    res = _measure(path, user_dirs / "out2", "--data-samples", "200", "--data-root", str(mine))
    assert res.exit_code == 0, res.output
    assert _files(mine) and not hostile.exists()


@pytest.mark.parametrize("count", [10**12, 1e12, "400000000000"])
def test_a_file_never_chooses_sample_counts(user_dirs, count):
    def edit(c):
        c["train_config"]["data"]["options"]["num_samples"] = count
        c["train_config"]["data"]["options"]["ood_samples"] = count

    path = _hostile(user_dirs, "count", edit)
    res = _measure(path, user_dirs / "out", "--data-samples", "200")
    assert res.exit_code == 0, res.output
    report = json.loads((user_dirs / "out" / "independence.json").read_text())
    assert report["input"]["n_samples_total"] == 40  # the user's 200 signals, 20 % test
    assert "ignoring the file's data.options.num_samples" in res.output


def test_without_a_user_count_the_generator_default_is_used(user_dirs):
    path = _hostile(user_dirs, "count", lambda c: None)
    config = read_export_config(path)
    with pytest.warns(UserWarning, match="ignoring the file's data.options.num_samples=400"):
        cfg = exported_train_config(path, config)
    assert "num_samples" not in cfg.data.options and cfg.data.root is None


def test_a_file_never_downloads(user_dirs, monkeypatch):
    seen = []

    def loader(root, download=False, **options):
        seen.append((root, download, options))
        raise FileNotFoundError("no Fashion-MNIST here (test loader)")

    monkeypatch.setattr(vcreg.data, "load_fashion_mnist", loader)
    train = copy.deepcopy(TRAIN)
    train["data"] = {
        "name": "fashion-mnist",
        "root": str(user_dirs / "elsewhere"),
        "options": {"download": True, "ood": False},
    }
    train["encoder"] = {"name": "mlp", "repr_dim": 8, "options": {"hidden": [16]}}
    enc = build_encoder("mlp", [784], 8, hidden=[16])
    tensors = {f"encoder.{k}": v.clone() for k, v in enc.state_dict().items()}
    path = _write(user_dirs / "fm.safetensors", _config(train, [784]), tensors)
    res = _measure(path, user_dirs / "out")
    assert res.exit_code == 1 and "no Fashion-MNIST here" in res.output
    assert "ignoring the file's data.options.download=true" in res.output
    assert seen == [(None, False, {"ood": False})]
    assert not (user_dirs / "elsewhere").exists() and not (user_dirs / "out").exists()


def test_a_huge_declared_input_shape_allocates_nothing(tmp_path):
    # in bounds for the schema (2^24 input values), but the cnn1d it describes (a 2^30 x 8
    # linear layer: 34 GB of weights, after a probe forward of 4096 x 2^20 activations) does not
    # fit the file's small tensors: it is built on the meta device and checked against them first
    config = _config(copy.deepcopy(TRAIN), [16, 2**20])
    config["encoder"]["options"]["channels"] = [4, 8, 4096]
    path = _write(tmp_path / "shape.safetensors", config)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ValueError, match="do not fit"):
        load_encoder(path)
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) / 1024
    assert grown_mb < 100, f"peak resident memory grew by {grown_mb:.0f} MB"
    config["encoder"]["input_shape"] = [1, 2**30]
    with pytest.raises(ValueError, match="input_shape: must be"):
        load_encoder(_write(tmp_path / "shape2.safetensors", config))


def _set(path: str, value: Any):
    def edit(c):
        *parents, last = path.split(".")
        node = c
        for key in parents:
            node = node[key]
        node[last] = value

    return edit


MALFORMED = {
    "unknown_top": (_set("evil", 1), "evil: unknown field"),
    "unknown_encoder": (_set("encoder.hook", "x"), "encoder.hook: unknown field"),
    "unknown_data_option": (
        _set("train_config.data.options.url", "http://x"),
        "data.options.url: unknown field",
    ),
    "unknown_train_key": (_set("train_config.hooks", {"a": 1}), "unknown"),
    "shape_type": (_set("encoder.input_shape", "1x40"), "encoder.input_shape"),
    "shape_negative": (_set("encoder.input_shape", [1, -40]), "encoder.input_shape"),
    "repr_dim_str": (_set("encoder.repr_dim", "8"), "encoder.repr_dim"),
    "repr_dim_huge": (_set("encoder.repr_dim", 10**9), "encoder.repr_dim"),
    "options_type": (_set("encoder.options", [1, 2]), "encoder.options"),
    "channels_huge": (_set("encoder.options.channels", [4, 10**9]), "encoder.options.channels"),
    "encoder_missing": (lambda c: c.pop("encoder"), "encoder: must be an object"),
    "source_type": (_set("source.epoch", "one"), "source.epoch"),
    "train_config_type": (_set("train_config", [1]), "train_config: must be an object"),
    "train_config_bad": (_set("train_config.batch_size", "big"), "batch_size"),
    "option_out_of_range": (_set("train_config.data.options.padding", [0, 10**9]), "padding"),
    "max_iter": (_set("train_config.evaluation.max_iter", 10**12), "evaluation.max_iter"),
    "eval_batch": (_set("train_config.evaluation.batch_size", 10**7), "evaluation.batch_size"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_metadata_is_a_one_line_error(user_dirs, case):
    edit, message = MALFORMED[case]
    path = _hostile(user_dirs, case, edit)
    with pytest.raises(ValueError, match=re.escape(message)) as info:
        load_exported(path)
    assert "\n" not in str(info.value)
    res = _measure(path, user_dirs / "out")
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert res.output.count("\n") == 1 and message in res.output, res.output
    assert not (user_dirs / "out").exists()


@pytest.mark.parametrize(
    ("config", "meta", "message"),
    [
        ("{not json", {}, "not valid JSON"),
        ("[1, 2]", {}, "config must be a JSON object"),
        (None, {"version": "x"}, "invalid export version"),
        (None, {"version": "99"}, "newer vcreg"),
    ],
)
def test_malformed_metadata_strings(tmp_path, config, meta, message):
    text = config if config is not None else _config(copy.deepcopy(TRAIN), [1, 40])
    path = _write(tmp_path / "m.safetensors", text, **meta)
    with pytest.raises(ValueError, match=re.escape(message)):
        load_encoder(path)


def test_a_flipped_byte_is_refused(tmp_path):
    good = _write(tmp_path / "good.safetensors", _config(copy.deepcopy(TRAIN), [1, 40]))
    load_encoder(good)
    data = good.read_bytes()
    header_end = 8 + int.from_bytes(data[:8], "little")
    where = {"weights": header_end + (len(data) - header_end) // 2}
    where["config"] = data.index(b"independence_samples") + 2  # inside the stored config
    for part, pos in where.items():
        bad = bytearray(data)
        bad[pos] ^= 0x01
        path = tmp_path / f"bad_{part}.safetensors"
        path.write_bytes(bytes(bad))
        with pytest.raises(ValueError, match="is damaged") as info:
            load_encoder(path)
        assert "\n" not in str(info.value)
        res = CliRunner().invoke(main, ["measure", str(path), "--out", str(tmp_path / part)])
        assert res.exit_code == 1 and "is damaged" in res.output and "Traceback" not in res.output


def test_files_without_a_hash(tmp_path):
    config = _config(copy.deepcopy(TRAIN), [1, 40])
    v1 = dict(config, version=1)
    old = _write(tmp_path / "v1.safetensors", v1, version="1", sha256=None)
    with pytest.warns(UnverifiedExportWarning, match="no content hash"):
        load_encoder(old)
    stripped = _write(tmp_path / "v2.safetensors", config, sha256=None)
    with pytest.raises(ValueError, match="without its content hash"):
        load_encoder(stripped)
