"""CIFAR-10/100 and CIFAR-C from local files (vcreg.data.cifar): official batches checked against
the published MD5s before any unpickling, code-free .npz/.npy layouts, CIFAR-C selection and
validation, the generated-corruption fallback, and crafted files that must execute nothing."""

from __future__ import annotations

import hashlib
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from vcreg.cli import main
from vcreg.data import (
    CIFAR_C_CORRUPTIONS,
    CifarDataError,
    OODFallbackWarning,
    find_cifar_files,
    load_dataset,
    ood_set_names,
    write_synthetic_cifar,
)
from vcreg.data import cifar as C

MEAN = torch.tensor((0.4914, 0.4822, 0.4465)).view(3, 1, 1)
STD = torch.tensor((0.2470, 0.2435, 0.2616)).view(3, 1, 1)
FEW = ["gaussian_noise", "glass_blur", "contrast"]


def _standardized(u8_nhwc: np.ndarray) -> torch.Tensor:
    """The documented standardization, written plainly: pixels / 255, (x - mean) / std, NCHW."""
    x = torch.from_numpy(u8_nhwc.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
    return (x - MEAN) / STD


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    return write_synthetic_cifar(tmp_path / "data", n_train=30, n_test=20, corruptions=FEW)


# -- official checksums ------------------------------------------------------------------------


def test_official_checksums_are_torchvisions() -> None:
    from torchvision.datasets import CIFAR10, CIFAR100

    for name, tv in (("cifar10", CIFAR10), ("cifar100", CIFAR100)):
        s = C.CIFAR_SPECS[name]
        assert [list(f) for f in s.train_files] == tv.train_list
        assert [list(f) for f in s.test_files] == tv.test_list
        assert (s.batches_folder, s.archive, s.archive_url, s.archive_md5) == (
            tv.base_folder,
            tv.filename,
            tv.url,
            tv.tgz_md5,
        )


def _write_batches(folder: Path, rng: np.random.Generator, sizes: dict[str, int]) -> dict:
    """Batches in the official python layout (dict: 'data' (n, 3072) uint8 row-major CHW,
    'labels' list); returns what was written."""
    folder.mkdir(parents=True)
    written = {}
    for fname, n in sizes.items():
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, n).tolist()
        batch = {"batch_label": fname, "labels": labels, "data": data, "filenames": ["x"] * n}
        (folder / fname).write_bytes(pickle.dumps(batch, protocol=2))
        written[fname] = (data, labels)
    return written


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _trust(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """Pretend the files in ``folder`` are the official ones (patch the MD5 table)."""
    s = C.CIFAR_SPECS["cifar10"]
    patched = C.CifarSpec(
        **{
            **s.__dict__,
            "train_files": tuple((f, _md5(folder / f)) for f, _ in s.train_files),
            "test_files": tuple((f, _md5(folder / f)) for f, _ in s.test_files),
        }
    )
    monkeypatch.setitem(C.CIFAR_SPECS, "cifar10", patched)


_SIZES = {f"data_batch_{i}": 4 for i in range(1, 6)} | {"test_batch": 6}


def test_official_batches_are_read_after_their_checksums(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    written = _write_batches(folder, np.random.default_rng(0), _SIZES)
    with pytest.raises(CifarDataError, match="MD5"):  # not the official files
        load_dataset("cifar10", root=str(tmp_path))
    _trust(monkeypatch, folder)
    b = load_dataset("cifar10", root=str(tmp_path))
    assert b.info["format"] == "batches" and len(b.train) == 20 and len(b.test) == 6
    # reference: torchvision's own reader of the same files (its MD5 list patched likewise)
    from torchvision.datasets import CIFAR10

    s = C.CIFAR_SPECS["cifar10"]
    monkeypatch.setattr(CIFAR10, "train_list", [list(f) for f in s.train_files])
    monkeypatch.setattr(CIFAR10, "test_list", [list(f) for f in s.test_files])
    monkeypatch.setattr(CIFAR10, "_load_meta", lambda self: None)
    for split, ds in (("train", b.train), ("test", b.test)):
        tv = CIFAR10(str(tmp_path), train=split == "train")
        torch.testing.assert_close(ds.tensors[0], _standardized(tv.data), rtol=0, atol=1e-6)
        assert ds.tensors[1].tolist() == tv.targets
    first = written["data_batch_1"][0][0].reshape(3, 32, 32)
    assert np.array_equal(b.train.images[0], first)


# -- crafted files execute nothing -------------------------------------------------------------


class _Exploit:
    """Unpickling this object opens (creates) ``marker``: code run by a data file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _crafted_batches(tmp_path: Path, marker: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Official-looking batches (their MD5s trusted), then data_batch_3 replaced by a crafted
    pickle."""
    folder = tmp_path / "cifar-10-batches-py"
    _write_batches(folder, np.random.default_rng(1), _SIZES)
    _trust(monkeypatch, folder)
    evil = {"data": np.zeros((4, 3072), np.uint8), "labels": [0] * 4, "x": _Exploit(marker)}
    (folder / "data_batch_3").write_bytes(pickle.dumps(evil, protocol=2))
    assert not marker.exists()
    return folder


def test_a_crafted_batch_file_executes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "pwned"
    folder = _crafted_batches(tmp_path, marker, monkeypatch)
    with pytest.raises(CifarDataError) as e:
        load_dataset("cifar10", root=str(tmp_path))
    msg = str(e.value)
    assert "\n" not in msg and str(folder / "data_batch_3") in msg and "MD5" in msg
    assert "refusing to unpickle" in msg and not marker.exists()
    # even a file that matched the checksum list could only rebuild arrays
    _trust(monkeypatch, folder)
    with pytest.raises(CifarDataError, match="builtins.*not allowed|io.open.*not allowed") as e:
        load_dataset("cifar10", root=str(tmp_path))
    assert "\n" not in str(e.value) and "data_batch_3" in str(e.value) and not marker.exists()


def test_the_cli_says_it_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "pwned"
    _crafted_batches(tmp_path, marker, monkeypatch)
    res = CliRunner().invoke(
        main,
        [
            "train",
            "-c",
            "cifar10_vicreg",
            "--set",
            f"data.root={tmp_path}",
            "--set",
            "device=cpu",
            "--out",
            str(tmp_path / "run"),
        ],
    )
    assert res.exit_code == 1, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "MD5" in lines[0] and "refusing" in lines[0], res.output
    assert "data_batch_3" in lines[0]
    assert not marker.exists()


def test_pickled_npy_and_npz_content_is_refused(root: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = np.array([_Exploit(marker), 1], dtype=object)
    c_dir = root / "CIFAR-10-C"
    np.save(c_dir / "contrast.npy", evil, allow_pickle=True)
    with pytest.raises(CifarDataError, match="contrast.npy") as e:
        load_dataset("cifar10", root=str(root), ood=True, ood_corruptions=["contrast"])
    assert "\n" not in str(e.value) and not marker.exists()
    np.savez(root / "cifar10.npz", train_images=evil, train_labels=evil)
    with pytest.raises(CifarDataError, match="cifar10.npz") as e:
        load_dataset("cifar10", root=str(root))
    assert "\n" not in str(e.value) and not marker.exists()
    # a pickle under the .npz name
    (root / "cifar10.npz").write_bytes(pickle.dumps(_Exploit(marker)))
    with pytest.raises(CifarDataError, match="cifar10.npz"):
        load_dataset("cifar10", root=str(root))
    assert not marker.exists()


# -- the code-free layout ----------------------------------------------------------------------


def test_synthetic_root_in_the_real_formats(root: Path) -> None:
    with np.load(root / "cifar10.npz", allow_pickle=False) as z:
        raw = {k: z[k] for k in z.files}
    b = load_dataset(
        "cifar10", root=str(root), ood=True, ood_corruptions=FEW, ood_severities=[1, 5]
    )
    assert b.info["format"] == "npz" and b.info["ood_source"] == "cifar-c"
    x, y = b.train.tensors
    assert x.shape == (30, 3, 32, 32) and b.input_shape == (3, 32, 32) and b.num_classes == 10
    torch.testing.assert_close(x, _standardized(raw["train_images"]), rtol=0, atol=1e-6)
    assert y.tolist() == raw["train_labels"].tolist() and torch.equal(
        b.test[3][0], b.test.tensors[0][3]
    )
    # CIFAR-C: the documented 15 x 5 layout, here the files written
    assert list(b.ood) == [f"{c}-{s}" for c in FEW for s in (1, 5)]
    blocks = np.load(root / "CIFAR-10-C" / "glass_blur.npy")
    labels = np.load(root / "CIFAR-10-C" / "labels.npy")
    assert blocks.shape == (100, 32, 32, 3) and labels.shape == (100,)
    xo, yo = b.ood["glass_blur-5"].tensors
    torch.testing.assert_close(xo, _standardized(blocks[80:100]), rtol=0, atol=1e-6)
    assert yo.tolist() == labels[80:100].tolist() == raw["test_labels"].tolist()
    assert torch.equal(b.ood["glass_blur-5"][2][0], xo[2])
    # corrupted images get further from the clean ones with severity
    clean = b.test.tensors[0]
    gaps = [float((b.ood[f"contrast-{s}"].tensors[0] - clean).abs().mean()) for s in (1, 5)]
    assert gaps[0] < gaps[1]
    # selection: corruptions x severities, explicit names, samples
    few = load_dataset("cifar10", root=str(root), ood=["contrast-2"], ood_samples=7)
    assert list(few.ood) == ["contrast-2"] and len(few.ood["contrast-2"]) == 7
    torch.testing.assert_close(
        few.ood["contrast-2"].tensors[0],
        _standardized(np.load(root / "CIFAR-10-C" / "contrast.npy")[20:27]),
        rtol=0,
        atol=1e-6,
    )
    assert ood_set_names("cifar10", root=str(root), ood=True) == [
        f"{c}-{s}" for c in CIFAR_C_CORRUPTIONS for s in range(1, 6)
    ]
    assert ood_set_names("cifar10", root=str(root)) == []  # OOD is opt-in for CIFAR


def test_synthetic_classes_are_separable(tmp_path: Path) -> None:
    """A smoke run on the synthetic root can learn something: nearest class mean on raw pixels
    is far above chance (1/10)."""
    b = load_dataset("cifar10", root=str(write_synthetic_cifar(tmp_path, corruptions=None)))
    (xtr, ytr), (xte, yte) = b.train.tensors, b.test.tensors
    means = torch.stack([xtr[ytr == k].mean(0) for k in range(10)]).flatten(1)
    pred = torch.cdist(xte.flatten(1), means).argmin(1)
    assert float((pred == yte).float().mean()) > 0.9
    assert not (tmp_path / "CIFAR-10-C").exists()


def test_npz_problems_are_one_line_errors_naming_the_file(root: Path) -> None:
    path = root / "cifar10.npz"
    with np.load(path) as z:
        good = {k: z[k] for k in z.files}
    cases = {
        "lacks array": {k: v for k, v in good.items() if k != "test_labels"},
        "uint8 of shape": {**good, "train_images": good["train_images"][..., :1]},
        r"must lie in \[0, 10\)": {**good, "train_labels": good["train_labels"] + 10},
        "integer labels": {**good, "test_labels": good["test_labels"][:-1]},
    }
    for message, arrays in cases.items():
        np.savez(path, **arrays)
        with pytest.raises(CifarDataError, match=message) as e:
            load_dataset("cifar10", root=str(root))
        assert str(path) in str(e.value) and "\n" not in str(e.value)


# -- CIFAR-C problems and the fallback ---------------------------------------------------------


def test_cifar_c_problems_name_the_file(root: Path) -> None:
    c_dir = root / "CIFAR-10-C"
    opts = dict(ood=True, ood_corruptions=FEW)
    (c_dir / "glass_blur.npy").unlink()
    with pytest.raises(FileNotFoundError, match="glass_blur.npy"):
        load_dataset("cifar10", root=str(root), **opts)
    np.save(c_dir / "glass_blur.npy", np.zeros((100, 32, 32, 3), np.float32))
    with pytest.raises(
        CifarDataError, match=r"glass_blur.npy: expected uint8 .*\(100, 32, 32, 3\)"
    ):
        load_dataset("cifar10", root=str(root), **opts)
    np.save(c_dir / "glass_blur.npy", np.zeros((99, 32, 32, 3), np.uint8))
    with pytest.raises(CifarDataError, match="glass_blur.npy"):
        load_dataset("cifar10", root=str(root), **opts)
    np.save(c_dir / "glass_blur.npy", np.zeros((100, 32, 32, 3), np.uint8))
    assert len(load_dataset("cifar10", root=str(root), **opts).ood) == 15
    labels = np.load(c_dir / "labels.npy")
    for bad, message in (
        (labels[:-1], "5 severity blocks"),
        (labels + 10, r"must lie in \[0, 10\)"),
        (labels.astype(np.float32), "integer labels"),
    ):
        np.save(c_dir / "labels.npy", bad)
        with pytest.raises(CifarDataError, match=message) as e:
            load_dataset("cifar10", root=str(root), **opts)
        assert str(c_dir / "labels.npy") in str(e.value)
    (c_dir / "labels.npy").unlink()
    with pytest.raises(FileNotFoundError, match="labels.npy"):
        load_dataset("cifar10", root=str(root), **opts)
    (c_dir / "not-a-npy.npy").write_bytes(b"hello")
    with pytest.raises(ValueError, match="unknown corruption"):
        load_dataset("cifar10", root=str(root), ood=True, ood_corruptions=["rotation"])


def test_without_cifar_c_the_generated_sets_are_used_loudly(root: Path, tmp_path: Path) -> None:
    c_dir = root / "CIFAR-10-C"
    c_dir.rename(tmp_path / "elsewhere")
    with pytest.warns(OODFallbackWarning) as rec:
        b = load_dataset("cifar10", root=str(root), ood=True, ood_severities=[3])
    msg = str(rec[0].message)
    assert str(c_dir) in msg and "zenodo.org/records/2535967" in msg and "Hendrycks" in msg
    assert b.info["ood_source"] == "generated" and list(b.ood)[0] == "gaussian_noise-3"
    assert b.ood["rotation-3"].tensors[0].shape == (20, 3, 32, 32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_dataset("cifar10", root=str(root))  # no OOD sets asked for: nothing to say
        gen = load_dataset("cifar10", root=str(root), ood=True, ood_source="generated")
        assert gen.info["ood_source"] == "generated"
        moved = load_dataset(
            "cifar10",
            root=str(root),
            ood=True,
            ood_corruptions=FEW,
            ood_path=tmp_path / "elsewhere",
        )
        assert moved.info["ood_source"] == "cifar-c" and len(moved.ood) == 15
    with pytest.raises(FileNotFoundError, match="2535967"):
        load_dataset("cifar10", root=str(root), ood=True, ood_source="cifar-c")
    with pytest.raises(ValueError, match="ood_source must be one of"):
        load_dataset("cifar10", root=str(root), ood=True, ood_source="zenodo")


def test_missing_cifar_says_what_and_where(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as e:
        load_dataset("cifar10", root=str(tmp_path))
    msg = str(e.value)
    for part in ("cifar10.npz", "cifar-10-batches-py/data_batch_1", "cifar-10-python.tar.gz"):
        assert part in msg
    assert "\n" not in msg
    (tmp_path / "cifar-10-batches-py").mkdir()
    with pytest.raises(FileNotFoundError, match="missing: cifar-10-batches-py/data_batch_1"):
        load_dataset("cifar10", root=str(tmp_path))
    files = find_cifar_files("cifar100", tmp_path)
    assert files.source is None and "cifar-100-python/train" in files.missing
    assert not files.c_found and files.c_missing[0] == "labels.npy"
    assert "zenodo.org/records/3555552" in files.where_to_get()


def test_cifar100_synthetic(tmp_path: Path) -> None:
    write_synthetic_cifar(tmp_path, "cifar100", n_train=200, n_test=100, corruptions=["fog"])
    b = load_dataset("cifar100", root=str(tmp_path), ood=True, ood_corruptions=["fog"])
    assert b.num_classes == 100 and sorted(set(b.train.tensors[1].tolist())) == list(range(100))
    assert list(b.ood) == [f"fog-{s}" for s in range(1, 6)] and b.info["ood_source"] == "cifar-c"


@pytest.mark.filterwarnings("ignore::vcreg.training.regime.RegimeWarning")
def test_an_exported_cifar_encoder_keeps_its_ood_source_not_its_paths(
    root: Path, tmp_path: Path
) -> None:
    from vcreg.export import export_run, load_exported
    from vcreg.training import train

    cfg = {
        "epochs": 1,
        "batch_size": 10,
        "device": "cpu",
        "data": {
            "name": "cifar10",
            "root": str(root),
            "options": {"ood": True, "ood_source": "cifar-c", "ood_corruptions": ["contrast"]},
        },
        "encoder": {"name": "smallcnn", "repr_dim": 4, "options": {"channels": [4, 4, 4, 4]}},
        "projector": {"spec": "8-8"},
        "monitor": {"every": 0},
    }
    (root / "CIFAR-10-C").rename(tmp_path / "C")
    write_synthetic_cifar(root, n_train=30, n_test=20, corruptions=["contrast"])  # a new one
    cfg["data"]["options"]["ood_path"] = str(tmp_path / "C")  # a location: never from the file
    train(cfg, out_dir=tmp_path / "run", progress=False)
    export_run(tmp_path / "run", tmp_path / "enc.safetensors")
    with pytest.warns(UserWarning, match="ignoring the file's .*ood_path"):
        _, ecfg, bundle, _ = load_exported(tmp_path / "enc.safetensors", "cpu", data_root=root)
    assert ecfg.data.options["ood_source"] == "cifar-c" and "ood_path" not in ecfg.data.options
    assert (
        bundle.info["ood_path"] == str(root / "CIFAR-10-C") and list(bundle.ood)[0] == "contrast-1"
    )
