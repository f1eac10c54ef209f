"""Image datasets read from local files: Fashion-MNIST (IDX), CIFAR-10/100 (``vcreg.data.cifar``:
checksummed batches or ``.npz``, CIFAR-C) and ImageFolder (torchvision), ``download=False`` by
default, plus corrupted out-of-domain test sets.

Images are standardized per channel with ``NORMALIZATION`` constants (``vcreg.data.augment``)
after scaling pixels to [0, 1]. Fashion-MNIST splits are ``TensorDataset``s (float32, (N, 1, 28,
28)); CIFAR splits and corrupted OOD sets store uint8 pixels and standardize per item
(``ArrayImageDataset``; ``.tensors`` materializes float32 tensors on demand). Corrupted OOD sets
are named ``"<corruption>-<severity>"`` (see ``vcreg.data.corruptions``) and are computed lazily on
first access, deterministically from ``ood_seed``. CIFAR's OOD sets are CIFAR-10-C / CIFAR-100-C
when the data root holds it (``ood_source="auto"``), else the generated corruptions with an
:class:`OODFallbackWarning`.
"""

from __future__ import annotations

import gzip
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, TensorDataset

from vcreg.data.augment import NORMALIZATION
from vcreg.data.cifar import (
    CIFAR_C_CORRUPTIONS,
    CIFAR_C_EXTRA_CORRUPTIONS,
    CIFAR_SPECS,
    cifar_c_labels,
    find_cifar_files,
    open_cifar_c,
    read_cifar,
)
from vcreg.data.corruptions import CORRUPTIONS, SEVERITIES, corrupt

FASHION_MNIST_SYSTEM_PATH = "/usr/share/datasets/fashion-mnist"
_FASHION_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def data_root() -> Path:
    """Default data directory: ``$VCREG_DATA`` or ``~/.cache/vcreg/data``."""
    return Path(os.environ.get("VCREG_DATA", "~/.cache/vcreg/data")).expanduser()


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (MNIST format, optionally gzip-compressed) into a numpy array.

    Layout: 2 zero bytes, a dtype code, the number of dimensions n, n big-endian uint32 sizes,
    then the data in C order (big-endian for multi-byte types).
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise ValueError(f"cannot read IDX file {path}: {exc}") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {raw[:4]!r})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: truncated IDX header")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: IDX header says shape {dims} ({expected} bytes) but the file holds "
            f"{len(raw) - header} bytes of data (truncated or corrupted?)"
        )
    return np.frombuffer(raw, dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))


def _find_idx(folder: Path, stem: str) -> Path | None:
    for sub in ("", "raw", "FashionMNIST/raw"):
        for suffix in (".gz", ""):
            p = folder / sub / f"{stem}{suffix}"
            if p.is_file():
                return p
    return None


def _fashion_candidates(root: str | os.PathLike | None) -> list[Path]:
    if root is not None:
        return [Path(root).expanduser()]
    return [data_root() / "fashion-mnist", Path(FASHION_MNIST_SYSTEM_PATH)]


def _missing_fashion(cands: list[Path]) -> FileNotFoundError:
    where = ", ".join(str(c) for c in cands)
    return FileNotFoundError(
        f"Fashion-MNIST not found (looked in {where} for train-images-idx3-ubyte[.gz], "
        "train-labels-idx1-ubyte[.gz], t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]). "
        "Get it with `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu; installs to "
        f"{FASHION_MNIST_SYSTEM_PATH}), or pass root=PATH to a folder holding these files, or "
        "pass download=True (CLI: --set data.download=true) to let torchvision download it "
        "into root (needs internet)."
    )


class OODFallbackWarning(UserWarning):
    """CIFAR-C was looked for (``ood_source="auto"``) and is absent: the out-of-domain sets are
    vcreg's generated corruptions, not the CIFAR-C benchmark."""


class ArrayImageDataset(Dataset):
    """uint8 images (N, C, H, W) (``channels_last``: (N, H, W, C), e.g. a CIFAR-C memory map) +
    labels, yielding standardized float32 ``(x, y)`` per item, (C, H, W)."""

    def __init__(
        self,
        images: np.ndarray | None,
        labels: np.ndarray,
        mean: Sequence[float],
        std: Sequence[float],
        channels_last: bool = False,
    ):
        self._images = images
        self.channels_last = channels_last
        self.labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        self._mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)

    @property
    def images(self) -> np.ndarray:
        assert self._images is not None
        return self._images

    def _standardize(self, u8: np.ndarray) -> Tensor:
        x = torch.from_numpy(np.asarray(u8, dtype=np.float32)).div_(255.0)  # a copy (memmaps)
        if self.channels_last:
            x = x.movedim(-1, -3)
        return (x - self._mean) / self._std

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        return self._standardize(self.images[index]), self.labels[index]

    @property
    def tensors(self) -> tuple[Tensor, Tensor]:
        """All items as (x float32 (N, C, H, W), y int64) — a new tensor on each access."""
        return self._standardize(self.images), self.labels


class CorruptedDataset(ArrayImageDataset):
    """Corrupted copy of uint8 test images, computed on first access (deterministic)."""

    def __init__(
        self,
        clean: np.ndarray,
        labels: np.ndarray,
        corruption: str,
        severity: int,
        seed: int,
        mean: Sequence[float],
        std: Sequence[float],
    ):
        super().__init__(None, labels, mean, std)
        self._clean = clean
        self.corruption, self.severity, self.seed = corruption, severity, seed

    @property
    def images(self) -> np.ndarray:
        if self._images is None:
            self._images = corrupt(self._clean, self.corruption, self.severity, self.seed)
        return self._images


def corruption_set_names(
    ood: bool | Sequence[str] = True,
    corruptions: Sequence[str] | None = None,
    severities: Sequence[int] | None = None,
    available: Sequence[str] | None = None,
    default: Sequence[str] | None = None,
) -> list[str]:
    """OOD set names ``"<corruption>-<severity>"`` selected by the loader options, from the
    ``available`` corruptions (default: vcreg's generated ones; ``default``: those taken when
    ``corruptions`` is None, default all available)."""
    available = list(CORRUPTIONS) if available is None else list(available)
    if ood is False or ood is None:
        return []
    if ood is not True:
        names = [ood] if isinstance(ood, str) else list(ood)
        valid = [f"{c}-{s}" for c in available for s in SEVERITIES]
        bad = [n for n in names if n not in valid]
        if bad:
            raise ValueError(f"unknown OOD set(s) {bad}; available: {valid}")
        return names
    if corruptions is None:
        corrs = list(available) if default is None else list(default)
    else:
        corrs = [corruptions] if isinstance(corruptions, str) else list(corruptions)
    sevs = list(SEVERITIES) if severities is None else list(severities)
    bad_c = [c for c in corrs if c not in available]
    if bad_c:
        raise ValueError(f"unknown corruption(s) {bad_c}; available: {available}")
    bad_s = [s for s in sevs if s not in SEVERITIES]
    if bad_s:
        raise ValueError(f"severities must be in {list(SEVERITIES)}, got {bad_s}")
    return [f"{c}-{s}" for c in corrs for s in sevs]


def _corrupted_sets(
    images: np.ndarray,
    labels: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    options: dict[str, Any],
    default_ood: bool,
) -> tuple[dict[str, Dataset], dict[str, Any]]:
    """The corrupted OOD sets the loader options ask for (``ood``, ``ood_corruptions``,
    ``ood_severities``, ``ood_samples``, ``ood_seed``) and their parameters."""
    names = corruption_set_names(
        options.get("ood", default_ood),
        options.get("ood_corruptions"),
        options.get("ood_severities"),
    )
    samples, seed = options.get("ood_samples"), int(options.get("ood_seed", 0))
    _check_samples(samples)
    if samples is not None:
        images, labels = images[:samples], labels[:samples]
    sets: dict[str, Dataset] = {}
    params: dict[str, Any] = {}
    for name in names:
        corr, sev = name.rsplit("-", 1)
        sets[name] = CorruptedDataset(images, labels, corr, int(sev), seed, mean, std)
        params[name] = {
            "corruption": corr,
            "severity": int(sev),
            "parameter": CORRUPTIONS[corr][int(sev) - 1],
            "seed": seed,
        }
    return sets, params


def _check_samples(samples: Any) -> None:
    if samples is not None and (
        not isinstance(samples, int) or isinstance(samples, bool) or samples < 1
    ):
        raise ValueError(f"ood_samples must be a positive int or None, got {samples!r}")


def _check_options(dataset: str, options: dict[str, Any], valid: set[str]) -> None:
    bad = sorted(set(options) - valid)
    if bad:
        raise ValueError(f"unknown option(s) {bad} for dataset {dataset!r}; valid: {sorted(valid)}")


_OOD_OPTS = {"ood", "ood_corruptions", "ood_severities", "ood_samples", "ood_seed"}


def load_fashion_mnist(
    root: str | None = None, download: bool = False, **options: Any
) -> dict[str, Any]:
    """Fashion-MNIST from local IDX files (see ``_fashion_candidates``) -> bundle fields."""
    _check_options("fashion-mnist", options, _OOD_OPTS)
    cands = _fashion_candidates(root)
    folder = next((c for c in cands if _find_idx(c, _FASHION_FILES["train_images"])), None)
    if folder is None and download:
        from torchvision.datasets import FashionMNIST

        target = cands[0]
        FashionMNIST(str(target), train=True, download=True)
        FashionMNIST(str(target), train=False, download=True)
        folder = target
    if folder is None:
        raise _missing_fashion(cands)
    arrays = {}
    for key, stem in _FASHION_FILES.items():
        path = _find_idx(folder, stem)
        if path is None:
            raise _missing_fashion([folder])
        arrays[key] = read_idx(path)
    for split in ("train", "test"):
        imgs, labs = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        if imgs.ndim != 3 or imgs.shape[1:] != (28, 28) or len(imgs) != len(labs):
            raise ValueError(
                f"Fashion-MNIST files in {folder} have unexpected shapes: images {imgs.shape}, "
                f"labels {labs.shape} (expected (N, 28, 28) and (N,))"
            )
    mean, std = NORMALIZATION["fashion-mnist"]

    def tensors(imgs: np.ndarray, labs: np.ndarray) -> TensorDataset:
        x = torch.from_numpy(imgs.copy()).float().div_(255.0).sub_(mean[0]).div_(std[0])
        return TensorDataset(x.unsqueeze(1), torch.from_numpy(labs.astype(np.int64)))

    test_u8 = arrays["test_images"][:, None]
    ood, params = _corrupted_sets(
        test_u8,
        arrays["test_labels"],
        mean,
        std,
        options,
        default_ood=True,
    )
    return {
        "train": tensors(arrays["train_images"], arrays["train_labels"]),
        "test": tensors(arrays["test_images"], arrays["test_labels"]),
        "ood": ood,
        "input_shape": (1, 28, 28),
        "num_classes": 10,
        "kind": "image",
        "default_augmentation": "fashion-mnist",
        "mean": mean,
        "std": std,
        "info": {"path": str(folder), "ood_params": params},
    }


_CIFAR_OPTS = _OOD_OPTS | {"ood_source", "ood_path"}
OOD_SOURCES = ("auto", "cifar-c", "generated")


def load_cifar(
    name: str, root: str | None = None, download: bool = False, **options: Any
) -> dict[str, Any]:
    """CIFAR-10/100 from ``root`` (default ``data_root()``; layout and checks:
    :mod:`vcreg.data.cifar`) and its OOD sets (:func:`cifar_ood_source`)."""
    _check_options(name, options, _CIFAR_OPTS)
    folder = Path(root).expanduser() if root is not None else data_root()
    if download and find_cifar_files(name, folder).source is None:
        _download_cifar(name, folder)
    train_u8, train_y, test_u8, test_y, files = read_cifar(name, folder)
    mean, std = NORMALIZATION[name]
    to_nchw = lambda a: np.ascontiguousarray(a.transpose(0, 3, 1, 2))  # noqa: E731
    train_u8, test_u8 = to_nchw(train_u8), to_nchw(test_u8)
    ood, params, ood_info = _cifar_ood(name, folder, test_u8, test_y, mean, std, options)
    return {
        "train": ArrayImageDataset(train_u8, train_y, mean, std),
        "test": ArrayImageDataset(test_u8, test_y, mean, std),
        "ood": ood,
        "input_shape": (3, 32, 32),
        "num_classes": CIFAR_SPECS[name].num_classes,
        "kind": "image",
        "default_augmentation": name,
        "mean": mean,
        "std": std,
        "info": {"path": str(files.path), "format": files.source, "ood_params": params, **ood_info},
    }


def _download_cifar(name: str, folder: Path) -> None:
    """The official archive (checked against its MD5 by torchvision), extracted into ``folder``."""
    from torchvision.datasets.utils import download_and_extract_archive

    s = CIFAR_SPECS[name]
    download_and_extract_archive(s.archive_url, str(folder), filename=s.archive, md5=s.archive_md5)


def cifar_ood_source(
    name: str, root: str | os.PathLike | None, options: dict[str, Any]
) -> tuple[str, Path]:
    """``(source, CIFAR-C folder)`` the options give: ``"cifar-c"`` or ``"generated"``.

    ``ood_source="auto"`` (default) takes CIFAR-C when its folder exists (``ood_path``, default
    ``root/CIFAR-10-C``), else the generated corruptions; ``"cifar-c"`` requires the folder
    (``FileNotFoundError`` naming it and where it comes from); ``"generated"`` never reads it.
    """
    source = options.get("ood_source", "auto")
    if source not in OOD_SOURCES:
        raise ValueError(f"ood_source must be one of {list(OOD_SOURCES)}, got {source!r}")
    folder = Path(root).expanduser() if root is not None else data_root()
    c_path = options.get("ood_path")
    files = find_cifar_files(name, folder, c_path)
    if source == "generated":
        return source, files.c_path
    if files.c_path.is_dir():
        return "cifar-c", files.c_path
    if source == "cifar-c":
        raise FileNotFoundError(
            f"{CIFAR_SPECS[name].c_folder} not found: {files.c_path} does not exist. "
            f"{files.where_to_get()}"
        )
    return "generated", files.c_path


def cifar_ood_set_names(
    name: str, root: str | os.PathLike | None, options: dict[str, Any]
) -> tuple[list[str], str, Path]:
    """``(OOD set names, source, CIFAR-C folder)`` of CIFAR options (no image read)."""
    source, c_dir = cifar_ood_source(name, root, options)
    ood = options.get("ood", False)
    corrs, sevs = options.get("ood_corruptions"), options.get("ood_severities")
    if source == "generated":
        return corruption_set_names(ood, corrs, sevs), source, c_dir
    available = (*CIFAR_C_CORRUPTIONS, *CIFAR_C_EXTRA_CORRUPTIONS)
    names = corruption_set_names(ood, corrs, sevs, available, default=CIFAR_C_CORRUPTIONS)
    return names, source, c_dir


def _cifar_ood(
    name: str,
    folder: Path,
    test_u8: np.ndarray,
    test_y: np.ndarray,
    mean: Sequence[float],
    std: Sequence[float],
    options: dict[str, Any],
) -> tuple[dict[str, Dataset], dict[str, Any], dict[str, Any]]:
    """CIFAR's OOD sets: CIFAR-C, or the generated corruptions (said loudly when CIFAR-C was
    looked for and is absent)."""
    names, source, c_dir = cifar_ood_set_names(name, folder, options)
    info = {"ood_source": source, "ood_path": str(c_dir)}
    if source == "generated":
        if names and options.get("ood_source", "auto") == "auto":
            s = CIFAR_SPECS[name]
            warnings.warn(
                f"{s.c_folder} not found at {c_dir}: the out-of-domain sets are vcreg's generated "
                f"corruptions ({', '.join(CORRUPTIONS)}), not the {s.c_folder} benchmark, so "
                f"OOD accuracies are not comparable with published {s.c_folder} numbers. Get "
                f"{s.c_folder}.tar (Hendrycks & Dietterich 2019) from {s.c_url} and extract it "
                f"into {c_dir.parent} (or pass ood_path=DIR); ood_source='generated' asks for "
                "the generated sets without this warning",
                OODFallbackWarning,
                stacklevel=4,
            )
        sets, params = _corrupted_sets(test_u8, test_y, mean, std, options, default_ood=False)
        return sets, params, info
    sets, params = _cifar_c_sets(name, c_dir, names, mean, std, options.get("ood_samples"))
    return sets, params, info


def _cifar_c_sets(
    name: str,
    c_dir: Path,
    names: list[str],
    mean: Sequence[float],
    std: Sequence[float],
    samples: int | None,
) -> tuple[dict[str, Dataset], dict[str, Any]]:
    """One dataset per ``"<corruption>-<severity>"``: the severity's block of the memory-mapped
    ``<corruption>.npy`` (its first ``samples`` images), every file validated before use."""
    _check_samples(samples)
    if not names:
        return {}, {}
    labels = cifar_c_labels(c_dir, name)
    block = len(labels) // len(SEVERITIES)
    k = block if samples is None else min(samples, block)
    arrays: dict[str, np.ndarray] = {}
    sets: dict[str, Dataset] = {}
    params: dict[str, Any] = {}
    for set_name in names:
        corr, sev = set_name.rsplit("-", 1)
        if corr not in arrays:
            arrays[corr] = open_cifar_c(c_dir, corr, len(labels))
        lo = (int(sev) - 1) * block
        images, labs = arrays[corr][lo : lo + k], labels[lo : lo + k]
        sets[set_name] = ArrayImageDataset(images, labs, mean, std, channels_last=True)
        params[set_name] = {
            "corruption": corr,
            "severity": int(sev),
            "source": CIFAR_SPECS[name].c_folder,
            "file": str(c_dir / f"{corr}.npy"),
            "rows": [lo, lo + k],
        }
    return sets, params


def _imagefolder_splits(root: str | None) -> tuple[Path, Path, Path]:
    """``(root, root/train, root/val or root/test)``; ``FileNotFoundError`` naming what is missing."""
    if root is None:
        raise FileNotFoundError(
            "imagefolder needs root=PATH to a folder with train/<class>/ and val/<class>/ "
            "(or test/<class>/) image folders"
        )
    folder = Path(root).expanduser()
    train_dir = folder / "train"
    test_dir = next((folder / s for s in ("val", "test") if (folder / s).is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        raise FileNotFoundError(
            f"imagefolder root {folder} must contain train/<class>/ and val/<class>/ (or "
            f"test/<class>/) sub-folders of images; found: "
            f"{sorted(p.name for p in folder.iterdir()) if folder.is_dir() else 'no such folder'}"
        )
    return folder, train_dir, test_dir


def load_imagefolder(
    root: str | None = None,
    image_size: int = 224,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """ImageNet-style folders ``root/train/<class>/*`` and ``root/val/<class>/*`` (or ``test``).

    Images are resized (shorter side ``image_size * 8/7``), centre-cropped to ``image_size`` and
    standardized (default ImageNet mean/std); augmentations then crop from that fixed-size image.
    OOD sets: every other split folder present next to train/val (e.g. ``root/ood_sketch``).
    """
    _check_options("imagefolder", options, set())
    folder, train_dir, test_dir = _imagefolder_splits(root)
    from torchvision import transforms as T
    from torchvision.datasets import ImageFolder

    if not isinstance(image_size, int) or image_size < 8:
        raise ValueError(f"image_size must be an int >= 8, got {image_size!r}")
    m = tuple(mean) if mean is not None else NORMALIZATION["imagenet"][0]
    s = tuple(std) if std is not None else NORMALIZATION["imagenet"][1]
    if len(m) != 3 or len(s) != 3:
        raise ValueError(f"imagefolder mean/std need 3 values (RGB), got {m}/{s}")
    tf = T.Compose(
        [
            T.Resize(int(round(image_size * 8 / 7))),
            T.CenterCrop(image_size),
            T.ToTensor(),
            T.Normalize(m, s),
        ]
    )
    train = ImageFolder(str(train_dir), transform=tf)
    test = ImageFolder(str(test_dir), transform=tf)
    if test.classes != train.classes:
        raise ValueError(f"class folders differ between {train_dir} and {test_dir}")
    ood = {}
    for sub in sorted(folder.iterdir()):
        if sub.is_dir() and sub not in (train_dir, test_dir) and sub.name != "test":
            ds = ImageFolder(str(sub), transform=tf)
            if ds.classes == train.classes:
                ood[sub.name] = ds
    return {
        "train": train,
        "test": test,
        "ood": ood,
        "input_shape": (3, image_size, image_size),
        "num_classes": len(train.classes),
        "kind": "image",
        "default_augmentation": "imagenet",
        "mean": m,
        "std": s,
        "info": {"path": str(folder), "classes": train.classes},
    }
