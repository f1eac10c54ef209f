"""CIFAR-10/100 and CIFAR-10/100-C read from local files, without ever running code from a file.

Data root layout (``root``; default ``$VCREG_DATA`` or ``~/.cache/vcreg/data``)::

    root/cifar10.npz            train_images (N, 32, 32, 3) uint8, train_labels (N,) int,
                                test_images, test_labels  (read with allow_pickle=False)
    root/cifar-10-batches-py/   or the official python batches (data_batch_1..5, test_batch)
    root/CIFAR-10-C/            <corruption>.npy (5 N, 32, 32, 3) uint8, labels.npy (5 N,)

(CIFAR-100: ``cifar100.npz``, ``cifar-100-python/{train,test}``, ``CIFAR-100-C/``.)

**Security.** The official batches are Python pickles, and unpickling a crafted file runs code.
Every batch file is therefore compared with its published MD5 (torchvision's list, re-stated in
``CIFAR_SPECS`` and tested against it) *before* any of them is unpickled, and then unpickled by
an unpickler that can only rebuild numpy arrays and plain containers (any other global, e.g.
``os.system``, is refused). A file with another MD5 is refused with a one-line error; a matching
MD5 would need an MD5 second preimage of the official file. ``.npz`` / ``.npy`` files are read
with ``allow_pickle=False``, which cannot run code, so any content works there (e.g. a synthetic
data root, :func:`write_synthetic_cifar`).

CIFAR-C (Hendrycks & Dietterich, ICLR 2019): each ``<corruption>.npy`` holds the test images
corrupted at severity 1..5 in consecutive blocks of ``N = len(labels) / 5`` images (N = 10,000
in the official release); ``labels.npy`` holds their labels. Arrays are memory-mapped (a
block is read when used) and validated (shape, dtype, label range) on opening.
"""

from __future__ import annotations

import codecs
import hashlib
import os
import pickle
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vcreg._io import atomic_open
from vcreg.data._cache import save_npz_atomic
from vcreg.data.corruptions import corrupt

__all__ = [
    "CIFAR_C_CORRUPTIONS",
    "CIFAR_C_EXTRA_CORRUPTIONS",
    "CIFAR_SPECS",
    "CifarDataError",
    "CifarFiles",
    "CifarSpec",
    "cifar_c_labels",
    "find_cifar_files",
    "open_cifar_c",
    "read_cifar",
    "write_synthetic_cifar",
]

#: The 15 benchmark corruptions of CIFAR-10-C / CIFAR-100-C (Hendrycks & Dietterich 2019).
CIFAR_C_CORRUPTIONS = (
    "gaussian_noise",
    "shot_noise",
    "impulse_noise",
    "defocus_blur",
    "glass_blur",
    "motion_blur",
    "zoom_blur",
    "snow",
    "frost",
    "fog",
    "brightness",
    "contrast",
    "elastic_transform",
    "pixelate",
    "jpeg_compression",
)
#: The 4 extra corruptions shipped in the same archives (not part of the benchmark average).
CIFAR_C_EXTRA_CORRUPTIONS = ("speckle_noise", "gaussian_blur", "spatter", "saturate")
_C_SEVERITIES = 5
_IMAGE_SHAPE = (32, 32, 3)


class CifarDataError(ValueError):
    """A CIFAR / CIFAR-C file that is not what it must be (wrong checksum, shape, dtype, labels,
    or content a safe reader refuses); the message names the file."""


@dataclass(frozen=True)
class CifarSpec:
    """Where one CIFAR variant lives and what its official files are."""

    name: str
    title: str
    num_classes: int
    npz: str
    batches_folder: str
    train_files: tuple[tuple[str, str], ...]  # (file name, official MD5)
    test_files: tuple[tuple[str, str], ...]
    label_key: str
    archive: str
    archive_url: str
    archive_md5: str
    c_folder: str
    c_url: str


CIFAR_SPECS: dict[str, CifarSpec] = {
    "cifar10": CifarSpec(
        name="cifar10",
        title="CIFAR-10",
        num_classes=10,
        npz="cifar10.npz",
        batches_folder="cifar-10-batches-py",
        train_files=(
            ("data_batch_1", "c99cafc152244af753f735de768cd75f"),
            ("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
            ("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
            ("data_batch_4", "634d18415352ddfa80567beed471001a"),
            ("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
        ),
        test_files=(("test_batch", "40351d587109b95175f43aff81a1287e"),),
        label_key="labels",
        archive="cifar-10-python.tar.gz",
        archive_url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        archive_md5="c58f30108f718f92721af3b95e74349a",
        c_folder="CIFAR-10-C",
        c_url="https://zenodo.org/records/2535967",
    ),
    "cifar100": CifarSpec(
        name="cifar100",
        title="CIFAR-100",
        num_classes=100,
        npz="cifar100.npz",
        batches_folder="cifar-100-python",
        train_files=(("train", "16019d7e3df5f24257cddd939b257f8d"),),
        test_files=(("test", "f0ef6b0ae62326f3e7ffdfab6717acfc"),),
        label_key="fine_labels",
        archive="cifar-100-python.tar.gz",
        archive_url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        archive_md5="eb9058c3a382ffc7106e4002c42a8d85",
        c_folder="CIFAR-100-C",
        c_url="https://zenodo.org/records/3555552",
    ),
}
_NPZ_KEYS = ("train_images", "train_labels", "test_images", "test_labels")


def _spec(name: str) -> CifarSpec:
    if name not in CIFAR_SPECS:
        raise ValueError(f"unknown CIFAR variant {name!r}; available: {list(CIFAR_SPECS)}")
    return CIFAR_SPECS[name]


# -- where the files are -------------------------------------------------------------------------


@dataclass
class CifarFiles:
    """What a data root holds for one CIFAR variant (nothing read or unpickled).

    ``source``: ``"npz"``, ``"batches"`` or ``None`` (train/test not found); ``path``: the file
    or folder that will be read; ``missing``: the files that are absent (for the layout that
    is partly there, else every file of both layouts); ``c_path``: the CIFAR-C folder looked at;
    ``c_found``: whether it holds ``labels.npy``; ``c_missing``: absent benchmark files there.
    """

    name: str
    root: Path
    source: str | None
    path: Path | None
    missing: list[str]
    c_path: Path
    c_found: bool
    c_missing: list[str]

    def where_to_get(self) -> str:
        """One sentence per missing part: where it comes from and where to put it."""
        s, out = _spec(self.name), []
        if self.source is None:
            out.append(
                f"{s.title}: extract {s.archive} ({s.archive_url}) into {self.root} (gives "
                f"{s.batches_folder}/, checked against the official MD5s), or write "
                f"{self.root / s.npz} (arrays {', '.join(_NPZ_KEYS)}; see docs/sections/data.md)"
            )
        if not self.c_found:
            out.append(
                f"{s.c_folder} (Hendrycks & Dietterich 2019): download {s.c_folder}.tar from "
                f"{s.c_url} and extract it so that {self.c_path / 'labels.npy'} exists"
            )
        return "; ".join(out)


def find_cifar_files(
    name: str, root: str | os.PathLike, c_path: str | os.PathLike | None = None
) -> CifarFiles:
    """Which CIFAR / CIFAR-C files ``root`` holds (``c_path``: the CIFAR-C folder, default
    ``root/CIFAR-10-C``). ``cifar10.npz`` is preferred over the python batches when both exist."""
    s, folder = _spec(name), Path(root).expanduser()
    c_dir = Path(c_path).expanduser() if c_path is not None else folder / s.c_folder
    c_found = (c_dir / "labels.npy").is_file()
    c_missing = [f"{c}.npy" for c in CIFAR_C_CORRUPTIONS if not (c_dir / f"{c}.npy").is_file()]
    if not c_found:
        c_missing = ["labels.npy", *c_missing]
    npz, batches = folder / s.npz, folder / s.batches_folder
    names = [f for f, _ in (*s.train_files, *s.test_files)]
    if npz.is_file():
        return CifarFiles(name, folder, "npz", npz, [], c_dir, c_found, c_missing)
    if batches.is_dir():
        missing = [f"{s.batches_folder}/{f}" for f in names if not (batches / f).is_file()]
        return CifarFiles(name, folder, "batches", batches, missing, c_dir, c_found, c_missing)
    every = [s.npz, *(f"{s.batches_folder}/{f}" for f in names)]
    return CifarFiles(name, folder, None, None, every, c_dir, c_found, c_missing)


# -- CIFAR train / test --------------------------------------------------------------------------


def read_cifar(
    name: str, root: str | os.PathLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, CifarFiles]:
    """``(train_images, train_labels, test_images, test_labels, files)`` from ``root``: images
    uint8 (N, 32, 32, 3), labels int64; ``FileNotFoundError`` / :class:`CifarDataError` (one
    line, naming the file) otherwise. See the module docstring for the layout and checks."""
    files = find_cifar_files(name, root)
    s = _spec(name)
    if files.source is None or files.missing:
        what = "missing: " + ", ".join(files.missing)
        raise FileNotFoundError(
            f"{s.title} not found under {files.root} ({what}). {files.where_to_get()}; or pass "
            f"download=True (CLI: --set data.download=true) to download the official archive "
            "there (needs internet)."
        )
    assert files.path is not None
    if files.source == "npz":
        arrays = _read_npz(files.path, s)
    else:
        arrays = _read_batches(files.path, s)
    return (*arrays, files)


def _read_npz(path: Path, s: CifarSpec) -> tuple[np.ndarray, ...]:
    try:
        with np.load(path, allow_pickle=False) as z:
            absent = [k for k in _NPZ_KEYS if k not in z.files]
            if absent:
                raise CifarDataError(
                    f"{path} lacks array(s) {absent} (needs {list(_NPZ_KEYS)}; has {z.files})"
                )
            arrays = {k: z[k] for k in _NPZ_KEYS}
    except CifarDataError:
        raise
    except Exception as exc:  # not a zip, a pickled (object) array, truncated ...
        raise CifarDataError(f"{path} is not a readable .npz of plain arrays: {exc}") from exc
    out = []
    for split in ("train", "test"):
        images, labels = arrays[f"{split}_images"], arrays[f"{split}_labels"]
        _check_images(images, path, f"{split}_images")
        out += [images, _check_labels(labels, len(images), s.num_classes, path, f"{split}_labels")]
    return tuple(out)


def _read_batches(folder: Path, s: CifarSpec) -> tuple[np.ndarray, ...]:
    files = [*s.train_files, *s.test_files]
    for fname, md5 in files:  # every checksum before any unpickling
        got = _md5(folder / fname)
        if got != md5:
            raise CifarDataError(
                f"{folder / fname} is not the official {s.title} file (MD5 {got}, expected "
                f"{md5}): refusing to unpickle it, since a pickle can run code. Re-extract "
                f"{s.archive} ({s.archive_url}), or give {folder.parent / s.npz} instead"
            )
    out = []
    for part in (s.train_files, s.test_files):
        images, labels = [], []
        for fname, _ in part:
            batch = _safe_unpickle(folder / fname)
            try:
                data, lab = np.asarray(batch["data"]), batch[s.label_key]  # latin1: str keys
                images.append(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
                labels.append(np.asarray(lab))
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise CifarDataError(f"{folder / fname}: unexpected batch content ({exc})") from exc
        x = np.ascontiguousarray(np.concatenate(images))
        _check_images(x, folder, part[0][0])
        out += [x, _check_labels(np.concatenate(labels), len(x), s.num_classes, folder, "labels")]
    return tuple(out)


def _md5(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays and builtin containers only; any other global is refused.
    (``_codecs.encode``: how protocol-2 pickles written by Python 3 store bytes; pure.)"""

    _ALLOWED: dict[tuple[str, str], Any] = {
        ("_codecs", "encode"): codecs.encode,
        ("numpy.core.multiarray", "_reconstruct"): np.ndarray(0).__reduce__()[0],
        ("numpy._core.multiarray", "_reconstruct"): np.ndarray(0).__reduce__()[0],
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self._ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed") from None


def _safe_unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            obj = _ArraysOnlyUnpickler(fh, encoding="latin1").load()
    except Exception as exc:
        raise CifarDataError(f"{path}: refused or unreadable pickle ({exc})") from exc
    if not isinstance(obj, dict):
        raise CifarDataError(f"{path}: expected a dict batch, got {type(obj).__name__}")
    return obj


def _check_images(images: np.ndarray, path: Path, what: str) -> None:
    if images.dtype != np.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != _IMAGE_SHAPE:
        raise CifarDataError(
            f"{path}: {what} must be uint8 of shape (N, 32, 32, 3), got {images.dtype} "
            f"{tuple(images.shape)}"
        )


def _check_labels(labels: np.ndarray, n: int, classes: int, path: Path, what: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer):
        raise CifarDataError(
            f"{path}: {what} must be {n} integer labels (one per image), got {labels.dtype} "
            f"{labels.shape}"
        )
    if n and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise CifarDataError(
            f"{path}: {what} must lie in [0, {classes}), got [{labels.min()}, {labels.max()}]"
        )
    return labels.astype(np.int64)


# -- CIFAR-C -------------------------------------------------------------------------------------


def _load_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(
            f"CIFAR-C file {path} is missing (extract the whole archive, or select the "
            "corruptions present with the ood_corruptions option)"
        )
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:  # not .npy, object dtype (pickled), truncated header ...
        raise CifarDataError(f"{path} is not a readable .npy of plain numbers: {exc}") from exc


def cifar_c_labels(folder: str | os.PathLike, name: str = "cifar10") -> np.ndarray:
    """``labels.npy`` of a CIFAR-C folder, validated: (5 N,) integers in [0, classes)."""
    path = Path(folder) / "labels.npy"
    labels = _load_npy(path)
    n = labels.shape[0] if labels.ndim == 1 else -1
    if n <= 0 or n % _C_SEVERITIES:
        raise CifarDataError(
            f"{path}: expected one label per image, 5 severity blocks of N (shape (5 N,)), got "
            f"{labels.dtype} {labels.shape}"
        )
    return _check_labels(np.asarray(labels), n, _spec(name).num_classes, path, "labels")


def open_cifar_c(folder: str | os.PathLike, corruption: str, n_images: int) -> np.ndarray:
    """``<corruption>.npy`` of a CIFAR-C folder, memory-mapped and validated: uint8
    ``(n_images, 32, 32, 3)`` (``n_images = len(labels.npy)``)."""
    valid = (*CIFAR_C_CORRUPTIONS, *CIFAR_C_EXTRA_CORRUPTIONS)
    if corruption not in valid:
        raise ValueError(f"unknown CIFAR-C corruption {corruption!r}; available: {list(valid)}")
    path = Path(folder) / f"{corruption}.npy"
    arr = _load_npy(path)
    if arr.dtype != np.uint8 or tuple(arr.shape) != (n_images, *_IMAGE_SHAPE):
        raise CifarDataError(
            f"{path}: expected uint8 images of shape ({n_images}, 32, 32, 3) (5 severities x "
            f"{n_images // _C_SEVERITIES}, as labels.npy), got {arr.dtype} {tuple(arr.shape)}"
        )
    return arr


# -- a synthetic data root in the real formats -----------------------------------------------------

# stand-ins for the CIFAR-C corruptions of a synthetic root (vcreg's own corruptions, NOT the
# CIFAR-C algorithms): enough for a smoke test to see accuracy fall with severity
_SYNTHETIC_C = {"blur": "gaussian_blur", "contrast": "contrast", "elastic": "elastic"}


def write_synthetic_cifar(
    root: str | os.PathLike,
    name: str = "cifar10",
    n_train: int = 512,
    n_test: int = 256,
    corruptions: Iterable[str] | None = CIFAR_C_CORRUPTIONS,
    seed: int = 0,
) -> Path:
    """Write a small synthetic CIFAR data root in the real file formats; returns ``root``.

    ``root/cifar10.npz`` (``n_train`` / ``n_test`` images) and, unless ``corruptions`` is
    None, ``root/CIFAR-10-C/<corruption>.npy`` + ``labels.npy`` (5 severity blocks of the
    ``n_test`` test images). Images are class prototypes (smooth random colour patterns) plus
    noise, so a trained encoder can separate the classes; corrupted images use vcreg's own
    corruptions as stand-ins (noise for noise-like names, blur, contrast, elastic), graded by
    severity. For tests and smoke runs (``--data-root``): not CIFAR.
    """
    s, out = _spec(name), Path(root).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0.15, 0.85, (s.num_classes, 3, 4, 4))
    protos = coarse.repeat(8, axis=2).repeat(8, axis=3).transpose(0, 2, 3, 1).astype(np.float32)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.arange(n) % s.num_classes
        rng.shuffle(y)
        x = np.empty((n, *_IMAGE_SHAPE), np.uint8)
        for lo in range(0, n, 4096):  # bounded memory for a full-size synthetic set
            part = protos[y[lo : lo + 4096]]
            part = part + 0.12 * rng.standard_normal(part.shape, dtype=np.float32)
            x[lo : lo + 4096] = np.clip(np.rint(part * 255), 0, 255)
        return x, y.astype(np.int64)

    xtr, ytr = draw(n_train)
    xte, yte = draw(n_test)
    save_npz_atomic(
        out / s.npz,
        {"train_images": xtr, "train_labels": ytr, "test_images": xte, "test_labels": yte},
    )
    if corruptions is not None:
        _write_synthetic_c(out / s.c_folder, xte, yte, list(corruptions), seed)
    return out


def _write_synthetic_c(
    folder: Path, images: np.ndarray, labels: np.ndarray, names: Sequence[str], seed: int
) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    nchw = images.transpose(0, 3, 1, 2)
    for k, cname in enumerate(names):
        kind = next((v for key, v in _SYNTHETIC_C.items() if key in cname), "gaussian_noise")
        blocks = [corrupt(nchw, kind, sev, seed + k) for sev in range(1, _C_SEVERITIES + 1)]
        _save_npy(folder / f"{cname}.npy", np.concatenate(blocks).transpose(0, 2, 3, 1))
    _save_npy(folder / "labels.npy", np.tile(labels.astype(np.uint8), _C_SEVERITIES))


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with atomic_open(path, "wb") as fh:
        np.save(fh, np.ascontiguousarray(arr), allow_pickle=False)
