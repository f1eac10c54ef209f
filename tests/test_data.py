"""Tests for vcreg.data: MNIST-1D + OOD sets, Fashion-MNIST IDX reader, corruptions,
missing-dataset errors, augmentations and the two-view dataset."""

from __future__ import annotations

import colorsys
import gzip
import os
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import ndimage

from vcreg.data import (
    CORRUPTIONS,
    MNIST1D_OOD_SETS,
    SEVERITIES,
    TwoViewDataset,
    corrupt,
    load_dataset,
    make_augmentation,
    ood_set_names,
)
from vcreg.data import augment as A
from vcreg.data.images import FASHION_MNIST_SYSTEM_PATH, read_idx
from vcreg.data.mnist1d import OOD_SEED_OFFSET, default_args, generate_raw, ood_args

SMALL = {"num_samples": 200, "ood_samples": 150}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("vcreg_cache")


@pytest.fixture(scope="module")
def mnist(cache: Path):
    return load_dataset("mnist1d", root=str(cache), **SMALL)


# ----------------------------------------------------------------------------- MNIST-1D
def test_mnist1d_shapes_and_types(mnist) -> None:
    x, y = mnist.train.tensors
    xt, yt = mnist.test.tensors
    assert x.shape == (160, 1, 40) and xt.shape == (40, 1, 40)
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert set(y.tolist()) <= set(range(10)) and len(set(y.tolist())) == 10
    assert mnist.input_shape == (1, 40) and mnist.num_classes == 10
    assert mnist.kind == "signal1d" and mnist.default_augmentation == "mnist1d"
    assert list(mnist.ood) == list(MNIST1D_OOD_SETS) == ood_set_names("mnist1d")
    for ds in mnist.ood.values():
        xo, yo = ds.tensors
        assert xo.shape == (150, 1, 40) and xo.dtype == torch.float32 and yo.dtype == torch.int64


def test_mnist1d_matches_package_make_dataset(mnist) -> None:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.num_samples = 200
    ref = make_dataset(args)
    np.testing.assert_allclose(mnist.train.tensors[0][:, 0].numpy(), ref["x"], atol=1e-5)
    np.testing.assert_array_equal(mnist.test.tensors[1].numpy(), ref["y_test"])


def test_mnist1d_deterministic_cache_and_rng_untouched(cache: Path, mnist) -> None:
    state = np.random.get_state()[1].copy()  # noqa: NPY002
    again = load_dataset("mnist1d", root=str(cache), cache=False, ood=["shear"], **SMALL)
    assert np.array_equal(state, np.random.get_state()[1])  # noqa: NPY002
    assert torch.equal(again.train.tensors[0], mnist.train.tensors[0])
    assert torch.equal(again.ood["shear"].tensors[0], mnist.ood["shear"].tensors[0])
    files = sorted((cache / "mnist1d").glob("*.npz"))
    assert len(files) == 1 + len(MNIST1D_OOD_SETS)
    # a corrupted cache file (e.g. from a crash) is regenerated, not trusted
    target = next(f for f in files if "-ood-" not in f.name)
    target.write_bytes(b"garbage")
    fresh = load_dataset("mnist1d", root=str(cache), ood=False, **SMALL)
    assert torch.equal(fresh.train.tensors[0], mnist.train.tensors[0])
    assert np.load(target)["x_train"].shape == (160, 40)
    assert not list((cache / "mnist1d").glob("*.tmp"))


def _raw_std(args: dict) -> np.ndarray:
    raw, _ = generate_raw(args)
    return raw


def test_mnist1d_ood_sets_are_shifted_as_documented(mnist) -> None:
    """Each OOD set differs from an in-distribution control (same size, same seed, in-domain
    parameters, same standardization) in the statistic its parameter controls."""
    args = dict(default_args(), num_samples=200)
    mean, std = mnist.info["standardization"]["mean"], mnist.info["standardization"]["std"]

    def control(name: str) -> np.ndarray:
        ctrl = dict(args, num_samples=150, seed=ood_args(name, args, 150)["seed"])
        return (_raw_std(ctrl) - mean) / std

    def ood(name: str) -> np.ndarray:
        return mnist.ood[name].tensors[0][:, 0].numpy().astype(np.float64)

    def roughness(x: np.ndarray) -> float:  # high-frequency energy (iid noise)
        return float(np.mean(np.diff(x, axis=1) ** 2))

    def slope_spread(x: np.ndarray) -> float:  # spread of per-signal linear trends (shear)
        t = np.linspace(-0.5, 0.5, x.shape[1])
        return float(np.std((x - x.mean(1, keepdims=True)) @ t / (t @ t)))

    def amplitude_cv(x: np.ndarray) -> float:  # relative spread of per-signal amplitude
        a = np.abs(x).max(1)
        return float(a.std() / a.mean())

    assert roughness(ood("iid_noise")) > 3 * roughness(control("iid_noise"))
    assert ood("corr_noise").std() > 1.3 * control("corr_noise").std()
    assert slope_spread(ood("shear")) > 1.5 * slope_spread(control("shear"))
    assert amplitude_cv(ood("scale")) > 1.3 * amplitude_cv(control("scale"))
    # parameters are those documented, seeds differ from train/test, no signal is shared
    for i, name in enumerate(MNIST1D_OOD_SETS):
        p = mnist.info["ood_params"][name]
        assert p["seed"] == 42 + OOD_SEED_OFFSET + i
        for key, value in MNIST1D_OOD_SETS[name].items():
            assert p[key] == value
    train = mnist.train.tensors[0][:, 0]
    for ds in mnist.ood.values():
        d = torch.cdist(ds.tensors[0][:, 0], train)
        assert float(d.min()) > 1e-3


def test_mnist1d_bad_options(cache: Path) -> None:
    with pytest.raises(ValueError, match="unknown option"):
        load_dataset("mnist1d", root=str(cache), num_sample=10)
    with pytest.raises(ValueError, match="unknown MNIST-1D OOD set"):
        load_dataset("mnist1d", root=str(cache), ood=["nope"], **SMALL)
    with pytest.raises(ValueError, match="num_samples"):
        load_dataset("mnist1d", root=str(cache), num_samples=5)
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("mnist2d")


# ----------------------------------------------------------------------------- Fashion-MNIST
def _write_idx(path: Path, arr: np.ndarray, compress: bool) -> None:
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = header + arr.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path, "wb") as fh:
            fh.write(data)
    else:
        path.write_bytes(data)


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_roundtrip_and_errors(tmp_path: Path, compress: bool) -> None:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
    p = tmp_path / ("a.gz" if compress else "a")
    _write_idx(p, arr, compress)
    np.testing.assert_array_equal(read_idx(p), arr)
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x08\x01" + struct.pack(">I", 3) + b"abc")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(bad)
    trunc = tmp_path / "trunc"
    trunc.write_bytes(struct.pack(">BBBB", 0, 0, 8, 1) + struct.pack(">I", 10) + b"abc")
    with pytest.raises(ValueError, match="truncated or corrupted"):
        read_idx(trunc)


@pytest.fixture()
def tiny_fashion(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, 20, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (12, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, 12, dtype=np.uint8),
    }
    for stem, arr in arrays.items():
        _write_idx(tmp_path / f"{stem}.gz", arr, compress=True)
    return tmp_path, arrays


def test_fashion_mnist_reader_on_tiny_files(tiny_fashion) -> None:
    root, arrays = tiny_fashion
    b = load_dataset("fashion-mnist", root=str(root), ood_severities=[1, 5])
    x, y = b.train.tensors
    assert x.shape == (20, 1, 28, 28) and x.dtype == torch.float32 and y.dtype == torch.int64
    expected = (arrays["train-images-idx3-ubyte"] / 255.0 - 0.2860) / 0.3530
    np.testing.assert_allclose(x[:, 0].numpy(), expected, atol=1e-5)
    np.testing.assert_array_equal(b.test.tensors[1].numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert b.input_shape == (1, 28, 28) and b.kind == "image" and b.num_classes == 10
    assert sorted(b.ood) == sorted(f"{c}-{s}" for c in CORRUPTIONS for s in (1, 5))
    assert list(b.ood) == ood_set_names("fashion-mnist", ood_severities=[1, 5])
    assert ood_set_names("cifar10") == []  # CIFAR corruptions are opt-in
    xo, yo = b.ood["contrast-5"].tensors
    u8 = corrupt(arrays["t10k-images-idx3-ubyte"], "contrast", 5)
    np.testing.assert_allclose(xo[:, 0].numpy(), (u8 / 255.0 - 0.2860) / 0.3530, atol=1e-5)
    assert torch.equal(b.ood["contrast-5"][3][0], xo[3])
    with pytest.raises(ValueError, match="unknown option"):
        load_dataset("fashion-mnist", root=str(root), ood_severity=[1])


@pytest.mark.skipif(
    not Path(FASHION_MNIST_SYSTEM_PATH, "train-images-idx3-ubyte.gz").is_file(),
    reason="dataset-fashion-mnist not installed",
)
def test_fashion_mnist_real_files() -> None:
    b = load_dataset("fashion-mnist", root=FASHION_MNIST_SYSTEM_PATH, ood=False)
    x, y = b.train.tensors
    assert x.shape == (60000, 1, 28, 28) and b.test.tensors[0].shape == (10000, 1, 28, 28)
    assert torch.bincount(y).tolist() == [6000] * 10
    # the standardization constants are the train-set statistics
    assert abs(float(x.mean())) < 1e-3 and abs(float(x.std()) - 1) < 1e-3


def test_missing_datasets_say_how_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist") as e:
        load_dataset("fashion-mnist", root=str(tmp_path))
    assert "download=True" in str(e.value) and str(tmp_path) in str(e.value)
    with pytest.raises(FileNotFoundError, match="download=True") as e:
        load_dataset("cifar10", root=str(tmp_path))
    assert "cifar-10-batches-py" in str(e.value)
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        load_dataset("cifar100", root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="train/<class>"):
        load_dataset("imagefolder", root=str(tmp_path))


def test_imagefolder_tiny(tmp_path: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    for split in ("train", "val", "ood_noise"):
        for cls in ("cat", "dog"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(2):
                arr = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
                Image.fromarray(arr).save(tmp_path / split / cls / f"{i}.png")
    b = load_dataset("imagefolder", root=str(tmp_path), image_size=32)
    x, y = b.train[0]
    assert x.shape == (3, 32, 32) and b.input_shape == (3, 32, 32) and b.num_classes == 2
    assert list(b.ood) == ["ood_noise"] and len(b.test) == 4


# ----------------------------------------------------------------------------- corruptions
def _smooth_images(n: int = 12, size: int = 28) -> np.ndarray:
    """Two off-centre Gaussian blobs (sigma 4 px) per image: structures large enough that the
    distance to the clean image keeps growing up to the largest rotation / warp."""
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    img = np.zeros((n, size, size))
    for _ in range(2):
        r, a = rng.uniform(5, 9, (n, 1, 1)), rng.uniform(0, 2 * np.pi, (n, 1, 1))
        img += np.exp(-((yy - r * np.sin(a)) ** 2 + (xx - r * np.cos(a)) ** 2) / (2 * 4.0**2))
    img /= img.max(axis=(1, 2), keepdims=True)
    return (img * 230).astype(np.uint8)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_corruptions_deterministic_and_severity_monotone(name: str) -> None:
    clean = _smooth_images()
    dists = []
    for s in SEVERITIES:
        out = corrupt(clean, name, s, seed=7)
        assert out.dtype == np.uint8 and out.shape == clean.shape
        assert np.array_equal(out, corrupt(clean, name, s, seed=7))
        dists.append(float(np.mean((out.astype(float) - clean) ** 2)))
    assert all(a < b for a, b in zip(dists[:-1], dists[1:], strict=True)), dists
    assert dists[0] > 0
    rgb = corrupt(np.repeat(clean[:, None], 3, axis=1), name, 3, seed=7)
    assert rgb.shape == (12, 3, 28, 28)


def test_corruptions_match_plain_references() -> None:
    clean = _smooth_images()
    grey = np.full((200, 28, 28), 128, np.uint8)
    noise = (corrupt(grey, "gaussian_noise", 1, seed=0).astype(float) - 128) / 255
    assert abs(noise.std() - 0.08) < 0.005
    assert not np.array_equal(
        corrupt(clean, "gaussian_noise", 1, seed=0), corrupt(clean, "gaussian_noise", 1, seed=1)
    )
    x = clean / 255.0
    m = x.mean(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(
        corrupt(clean, "contrast", 2) / 255.0, m + 0.45 * (x - m), atol=1 / 255
    )
    rot = corrupt(clean, "rotation", 3, seed=0).astype(float)
    inner = (slice(None), slice(8, 20), slice(8, 20))  # away from the zero-filled corners
    for i in range(len(clean)):
        refs = [
            ndimage.rotate(clean[i].astype(float), a, reshape=False, order=1) for a in (30, -30)
        ]
        err = min(np.abs(rot[i][inner[1:]] - r[inner[1:]]).mean() for r in refs)
        assert err < 1.5, err
    with pytest.raises(ValueError, match="severity"):
        corrupt(clean, "rotation", 6)
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt(clean, "fog", 1)
    with pytest.raises(TypeError, match="uint8"):
        corrupt(clean.astype(np.float32), "contrast", 1)


# ----------------------------------------------------------------------------- augmentations
def test_signal_augmentation_two_views_shapes_and_seeding(mnist) -> None:
    aug = make_augmentation("mnist1d", (1, 40))
    x = mnist.train.tensors[0][:32]
    v1, v2 = aug(x), aug(x)
    assert v1.shape == x.shape and v1.dtype == torch.float32
    assert not torch.allclose(v1, v2) and not torch.allclose(v1, x)
    single = aug(x[0])
    assert single.shape == (1, 40)
    same = aug(x[:1].expand(8, 1, 40))  # each sample of a batch gets its own parameters
    assert not torch.allclose(same[0], same[1])
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    assert torch.equal(aug(x, generator=g1), aug(x, generator=g2))
    seeded = make_augmentation("mnist1d", (1, 40), seed=5)
    assert torch.equal(seeded(x), make_augmentation("mnist1d", (1, 40), seed=5)(x))
    with pytest.raises(ValueError, match="expects shape"):
        aug(x, batch=False)
    with pytest.raises(ValueError, match="unknown parameter"):
        make_augmentation("mnist1d", (1, 40), noise=0.1)
    with pytest.raises(ValueError, match="unknown augmentation"):
        make_augmentation("mnist3d", (1, 40))


def test_signal_augmentation_components() -> None:
    x = torch.randn(16, 2, 40)
    off = dict(crop_scale=(1.0, 1.0), max_shift=0, amplitude=(1.0, 1.0), trend=0.0, noise_std=0.0)
    torch.testing.assert_close(make_augmentation("signal1d", (2, 40), **off)(x), x)
    shifted = make_augmentation("signal1d", (2, 40), **dict(off, max_shift=5))(x)
    for i in range(16):  # every view is a circular shift of its input, |k| <= 5
        assert any(
            torch.allclose(shifted[i], torch.roll(x[i], k, -1), atol=1e-4) for k in range(-5, 6)
        )
    flipped = make_augmentation("signal1d", (2, 40), **dict(off, flip_p=1.0))(x)
    torch.testing.assert_close(flipped, x.flip(-1))
    noisy = make_augmentation("signal1d", (2, 40), **dict(off, noise_std=0.5))(x.repeat(50, 1, 1))
    assert abs(float((noisy - x.repeat(50, 1, 1)).std()) - 0.5) < 0.02
    amp = make_augmentation("signal1d", (2, 40), **dict(off, amplitude=(0.5, 2.0)))(x)
    a = (amp * x).sum((1, 2)) / (x * x).sum((1, 2))  # least-squares per-sample factor
    torch.testing.assert_close(amp, a.view(-1, 1, 1) * x, atol=1e-4, rtol=0)
    assert float(a.min()) >= 0.5 - 1e-5 and float(a.max()) <= 2.0 + 1e-5
    # crop-resize: a linear ramp stays a linear ramp with slope scaled by the crop fraction
    ramp = torch.linspace(0, 1, 40).expand(8, 1, 40)
    crop = make_augmentation("signal1d", (1, 40), **dict(off, crop_scale=(0.5, 0.5)))(ramp)
    slope = crop.diff(dim=-1)
    torch.testing.assert_close(slope, torch.full_like(slope, 0.5 / 39), atol=1e-5, rtol=0)


def _image_aug(name: str, shape: tuple[int, ...], **params):
    off = dict(
        crop_scale=(1.0, 1.0), flip_p=0.0, jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, solarize_p=0.0
    )
    off.update(params)
    return make_augmentation(name, shape, **off)


@pytest.mark.parametrize("batched", [True, False])
def test_image_augmentation_deterministic_ops_match_torchvision(batched: bool) -> None:
    from torchvision.transforms.v2 import functional as TF

    mean, std = A.NORMALIZATION["cifar10"]
    m, s = torch.tensor(mean).view(3, 1, 1), torch.tensor(std).view(3, 1, 1)
    pix = torch.rand(6, 3, 32, 32)
    x = (pix - m) / s
    cases = {
        "none": ({}, pix),
        "flip": ({"flip_p": 1.0}, pix.flip(-1)),
        "solarize": ({"solarize_p": 1.0}, TF.solarize(pix, 0.5)),
        "gray": ({"grayscale_p": 1.0}, TF.rgb_to_grayscale(pix, 3)),
    }
    for name, (params, ref) in cases.items():
        out = _image_aug("cifar10", (3, 32, 32), batched=batched, **params)(x)
        torch.testing.assert_close(out * s + m, ref, atol=1e-4, rtol=0, msg=name)


def test_image_augmentation_views_and_seeding() -> None:
    x = torch.randn(8, 3, 32, 32) * 0.5
    for batched in (True, False):
        aug = make_augmentation("cifar10", (3, 32, 32), batched=batched)
        v1, v2 = aug(x), aug(x)
        assert v1.shape == x.shape and not torch.allclose(v1, v2)
        g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
        assert torch.equal(aug(x, generator=g1), aug(x, generator=g2))
    fm = make_augmentation("fashion-mnist", (1, 28, 28))
    assert fm.jitter_p == 0.0 and fm.grayscale_p == 0.0  # documented: no colour ops
    assert fm(torch.randn(28, 28).unsqueeze(0)).shape == (1, 28, 28)
    assert fm(torch.randn(5, 1, 28, 28)).shape == (5, 1, 28, 28)
    with pytest.raises(ValueError, match="expects shape"):
        fm(torch.randn(5, 3, 28, 28))


def test_hsv_roundtrip_matches_colorsys() -> None:
    pix = torch.rand(1, 3, 4, 5)
    hsv = A._rgb_to_hsv(pix)
    for i in range(4):
        for j in range(5):
            ref = colorsys.rgb_to_hsv(*pix[0, :, i, j].tolist())
            torch.testing.assert_close(hsv[0, :, i, j], torch.tensor(ref), atol=1e-5, rtol=0)
    torch.testing.assert_close(A._hsv_to_rgb(hsv), pix, atol=1e-5, rtol=0)


def test_two_view_dataset(mnist) -> None:
    aug = make_augmentation("mnist1d", (1, 40))
    ds = TwoViewDataset(mnist.train, aug, seed=0)
    v1, v2, y = ds[3]
    assert v1.shape == v2.shape == (1, 40) and int(y) == int(mnist.train.tensors[1][3])
    assert not torch.allclose(v1, v2) and len(ds) == 160
    again = TwoViewDataset(mnist.train, aug, seed=0)[3]
    assert torch.equal(again[0], v1) and torch.equal(again[1], v2)
    ds.set_epoch(1)
    assert not torch.allclose(ds[3][0], v1)
    loader = torch.utils.data.DataLoader(TwoViewDataset(mnist.train, aug), batch_size=16)
    a, b, yb = next(iter(loader))
    assert a.shape == b.shape == (16, 1, 40) and yb.shape == (16,)


def test_env_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from vcreg.data._cache import cache_dir

    monkeypatch.setenv("VCREG_CACHE", str(tmp_path))
    assert cache_dir() == tmp_path
    assert os.fspath(cache_dir("~/x")).endswith("x")
