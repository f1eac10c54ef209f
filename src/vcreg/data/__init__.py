"""Datasets, out-of-domain test sets and augmentations for SSL training and evaluation.

API (docs/sections/data.md):

- ``load_dataset(name, root=None, **options) -> DatasetBundle`` with names
  ``"mnist1d"``, ``"fashion-mnist"``, ``"cifar10"``, ``"cifar100"``, ``"imagefolder"``
  (case-insensitive, ``_`` = ``-``, and the aliases of ``DATASET_ALIASES``;
  :func:`canonical_dataset_name` is the one rule, used by the config validator too).
  Datasets yield ``(x, y)``: un-augmented standardized float32 tensors and int labels.
  ``bundle.ood`` maps OOD-set names to datasets (MNIST-1D: shifted generator parameters,
  ``MNIST1D_OOD_SETS``; image datasets: MNIST-C-style corruptions ``"<corruption>-<severity>"``,
  ``CORRUPTIONS``). For mnist1d / fashion-mnist, ``bundle.train`` / ``bundle.test`` / OOD sets are
  ``TensorDataset``s (``.tensors == (x, y)``).
- ``make_augmentation(name, input_shape, **params)``: one random view of a sample or of a batch
  (see ``vcreg.data.augment``); ``TwoViewDataset(base, augmentation, seed=None)`` yields
  ``(view1, view2, y)``.

Nothing is downloaded unless ``download=True`` is passed for a torchvision dataset. No data file
can run code: CIFAR's pickled batches are checked against the official MD5s before unpickling
(``vcreg.data.cifar``); ``.npy``/``.npz`` files are read with ``allow_pickle=False``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch.utils.data import Dataset

from vcreg.data.augment import (
    AUGMENTATIONS,
    NORMALIZATION,
    ImageAugmentation,
    SignalAugmentation,
    TwoViewDataset,
    make_augmentation,
)
from vcreg.data.cifar import (
    CIFAR_C_CORRUPTIONS,
    CifarDataError,
    find_cifar_files,
    write_synthetic_cifar,
)
from vcreg.data.corruptions import CORRUPTIONS, SEVERITIES, corrupt
from vcreg.data.images import (
    OOD_SOURCES,
    OODFallbackWarning,
    cifar_ood_set_names,
    corruption_set_names,
    load_cifar,
    load_fashion_mnist,
    load_imagefolder,
)
from vcreg.data.mnist1d import OOD_SETS as MNIST1D_OOD_SETS
from vcreg.data.mnist1d import load_mnist1d

DATASETS = ("mnist1d", "fashion-mnist", "cifar10", "cifar100", "imagefolder")
# other spellings users type (after lower-casing and "_" -> "-")
DATASET_ALIASES = {
    "fashionmnist": "fashion-mnist",
    "mnist-1d": "mnist1d",
    "cifar-10": "cifar10",
    "cifar-100": "cifar100",
    "image-folder": "imagefolder",
}

__all__ = [
    "AUGMENTATIONS",
    "CIFAR_C_CORRUPTIONS",
    "CORRUPTIONS",
    "DATASETS",
    "DATASET_ALIASES",
    "MNIST1D_OOD_SETS",
    "NORMALIZATION",
    "OOD_SOURCES",
    "SEVERITIES",
    "CifarDataError",
    "DatasetBundle",
    "ImageAugmentation",
    "OODFallbackWarning",
    "SignalAugmentation",
    "TwoViewDataset",
    "canonical_dataset_name",
    "corrupt",
    "find_cifar_files",
    "load_dataset",
    "make_augmentation",
    "ood_set_names",
    "write_synthetic_cifar",
]


@dataclass
class DatasetBundle:
    """A dataset's splits and metadata.

    ``input_shape`` excludes the batch dimension ((1, 40) for MNIST-1D, (C, H, W) for images);
    ``kind`` is "signal1d" or "image"; ``default_augmentation`` is a name for
    ``make_augmentation``; ``mean``/``std`` are the per-channel standardization constants in
    [0, 1] pixel units (images; empty for signals); ``info`` holds generator args / OOD params.
    """

    train: Dataset
    test: Dataset
    ood: dict[str, Dataset]
    input_shape: tuple[int, ...]
    num_classes: int
    kind: str
    default_augmentation: str
    name: str = ""
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)


def ood_set_names(name: str, root: str | None = None, **options: Any) -> list[str]:
    """Names of the OOD sets ``load_dataset(name, root, **options)`` would return (no data
    loaded; CIFAR: CIFAR-C's names when ``root`` holds it, see ``ood_source``)."""
    key = canonical_dataset_name(name)
    if key == "mnist1d":
        ood = options.get("ood", True)
        if ood is True:
            return list(MNIST1D_OOD_SETS)
        return [] if not ood else ([ood] if isinstance(ood, str) else list(ood))
    if key == "imagefolder":
        raise ValueError("imagefolder OOD sets are the extra folders under root: load the dataset")
    if key in ("cifar10", "cifar100"):  # opt-in (ood=False by default)
        return cifar_ood_set_names(key, root, options)[0]
    return corruption_set_names(
        options.get("ood", True),
        options.get("ood_corruptions"),
        options.get("ood_severities"),
    )


def canonical_dataset_name(name: str) -> str:
    """The canonical name (one of ``DATASETS``) of a dataset name or alias; ``ValueError``
    listing the names otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a string, got {type(name).__name__}")
    key = name.lower().replace("_", "-")
    key = DATASET_ALIASES.get(key, key)
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; available: {list(DATASETS)}")
    return key


def load_dataset(name: str, root: str | None = None, **options: Any) -> DatasetBundle:
    """Load a dataset by name; see the module docstring and docs/sections/data.md.

    Options per dataset:
      mnist1d: any ``mnist1d`` generator argument (num_samples=5000, train_split=0.8, seed=42,
        corr_noise_scale, ...), ood=True|False|[names], ood_samples=1000, cache=True;
        ``root`` = cache directory (default ``$VCREG_CACHE`` or ``~/.cache/vcreg``).
      fashion-mnist: root (default ``$VCREG_DATA/fashion-mnist`` then
        ``/usr/share/datasets/fashion-mnist``), download=False, ood, ood_corruptions,
        ood_severities, ood_samples=None (all 10000), ood_seed=0.
      cifar10 / cifar100: root (folder holding ``cifar10.npz`` or ``cifar-10-batches-py``, and
        ``CIFAR-10-C``; ``vcreg.data.cifar``), download=False, the ood options above (default
        ood=False) and ood_source="auto"|"cifar-c"|"generated", ood_path (CIFAR-C folder).
      imagefolder: root with ``train/`` and ``val/`` (or ``test/``) class folders,
        image_size=224, mean/std (default ImageNet).
    """
    key = canonical_dataset_name(name)
    if key == "mnist1d":
        fields_ = load_mnist1d(root, **options)
    elif key == "fashion-mnist":
        fields_ = load_fashion_mnist(root, **options)
    elif key in ("cifar10", "cifar100"):
        fields_ = load_cifar(key, root, **options)
    else:
        fields_ = load_imagefolder(root, **options)
    return DatasetBundle(name=key, **fields_)
