"""Export a trained run's encoder (and optionally its projector) as safetensors + JSON config.

``export_run(RUN, "encoder.safetensors")`` writes

- ``encoder.safetensors``: the weights under :class:`vcreg.models.SSLModel`'s key names
  (``encoder.<name>``; with ``projector=True`` also ``projector.<name>``, so the file is a whole
  ``SSLModel.state_dict()``), tensors bit-identical to ``checkpoint.pt``'s, and the metadata
  ``{"format": "vcreg-encoder", "version": "1", "config": <JSON>}``;
- ``encoder.json`` beside it: the same config, readable: the encoder's architecture
  (``name``, ``input_shape``, ``repr_dim``, ``options``), the training config, the dataset and
  the source run (checkpoint SHA-256, epoch, step).

:func:`vcreg.models.load_encoder` rebuilds the encoder from the file alone. ``checkpoint.pt``
keeps its role (resuming: optimizer, RNG and schedule state). Nothing is overwritten unless
``overwrite=True``; both files are written atomically.

An exported encoder is evaluated (:func:`evaluate_exported`, ``vcreg evaluate encoder.safetensors``
-> ``encoder.eval.json``) and measured (:func:`vcreg.trained.measure_trained`, ``vcreg measure
encoder.safetensors``) on the dataset of the run it came from; :func:`encode_exported` returns
its representations of that dataset's test split as an array.

Exported files are shared, so their content is untrusted (docs/sections/monitoring.md):

- integrity: the metadata carries a content hash (``sha256``, export version 2;
  ``vcreg._exportfile``), verified on every load; a damaged file is a one-line error, a version-1
  file (no hash) loads with a warning;
- bounds: the metadata is checked against a schema (fields, types, sizes) before anything is
  allocated, and the encoder is built on the meta device and checked against the file's tensors
  before it is materialized;
- the file chooses the dataset (its name and the options that shape its distribution,
  :data:`FILE_DATA_OPTIONS`, bounded), never where data is read or cached (``data.root``),
  whether anything is downloaded (never) or how many samples are generated: those come from the
  caller (``data_root``, ``num_samples``; CLI ``--data-root``, ``--data-samples``) or the loader's
  defaults. The file's own values of these are ignored with a warning naming them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save as safetensors_bytes

from vcreg._device import resolve_device
from vcreg._exportfile import ExportFileError, payload_sha256
from vcreg._io import atomic_write, atomic_write_text
from vcreg._lock import FolderLock
from vcreg.data import OOD_SOURCES, DatasetBundle, canonical_dataset_name
from vcreg.evaluation import dataset_tensors, encode
from vcreg.models import EXPORT_FORMAT, EXPORT_VERSION, Encoder, load_encoder, read_export_config
from vcreg.training.config import TrainConfig, saved_config
from vcreg.training.evaluate import evaluate_encoder
from vcreg.training.feeding import load_bundle
from vcreg.training.runfolder import load_run, require_run_folder

__all__ = [
    "FILE_DATA_OPTIONS",
    "FORMATS",
    "encode_exported",
    "evaluate_exported",
    "export_paths",
    "export_run",
    "exported_train_config",
    "load_exported",
]

FORMATS = ("safetensors",)


def export_paths(out: str | Path) -> tuple[Path, Path]:
    """``(weights, config_json)`` for an output path (``.safetensors`` added if missing)."""
    out = Path(out)
    if out.suffix != ".safetensors":
        out = out.with_name(out.name + ".safetensors")
    return out, out.with_suffix(".json")


def _tensors(module: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    # clone: safetensors refuses tensors that share storage; values are unchanged (bit-exact)
    return {
        f"{prefix}.{k}": v.detach().cpu().contiguous().clone()
        for k, v in module.state_dict().items()
    }


def export_run(
    run_dir: str | Path,
    out: str | Path,
    *,
    fmt: str = "safetensors",
    projector: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write ``run_dir``'s encoder (+ projector) to ``out`` and its config JSON beside it
    (module docstring); returns the config, with the written paths under ``"files"``."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; available: {list(FORMATS)}")
    weights, meta_path = export_paths(out)
    existing = [str(p) for p in (weights, meta_path) if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"refusing to overwrite {', '.join(existing)}; pass --overwrite (overwrite=True) "
            f"or choose another --out"
        )
    require_run_folder(run_dir)  # before the lock file is made there
    with FolderLock(run_dir, purpose="vcreg export", shared=True):  # no train/evaluate now
        cfg, model, state, bundle = load_run(run_dir, "cpu")
    tensors = _tensors(model.encoder, "encoder")
    if projector:
        tensors.update(_tensors(model.projector, "projector"))
    config = {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "encoder": {
            "name": cfg.encoder.name,
            "input_shape": list(bundle.input_shape),
            "repr_dim": int(cfg.encoder.repr_dim),
            "options": dict(cfg.encoder.options),
        },
        "projector": dataclasses.asdict(cfg.projector) if projector else None,
        "data": dataclasses.asdict(cfg.data),
        "train_config": cfg.to_dict(),
        "source": {
            "run_dir": str(Path(run_dir).resolve()),
            "checkpoint_sha256": state.get("sha256"),
            "epoch": int(state["epoch"]),
            "step": int(state["step"]),
        },
    }
    meta = {"format": EXPORT_FORMAT, "version": str(EXPORT_VERSION), "config": json.dumps(config)}
    # the hash covers the config and the tensor index + bytes, unchanged by adding it
    meta["sha256"] = payload_sha256(safetensors_bytes(tensors, metadata=meta))
    weights.parent.mkdir(parents=True, exist_ok=True)
    payload = safetensors_bytes(tensors, metadata=meta)
    atomic_write(weights, lambda fh: fh.write(payload))
    atomic_write_text(meta_path, json.dumps(config, indent=1))
    return {**config, "files": {"weights": str(weights), "config": str(meta_path)}}


def _num(lo: float, hi: float, kind: type = float) -> Callable[[Any], bool]:
    def ok(v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, int if kind is int else int | float):
            return False
        return math.isfinite(v) and lo <= v <= hi

    return ok


def _list_of(check: Callable[[Any], bool], most: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and len(v) <= most and all(check(x) for x in v)


_NAME = lambda v: isinstance(v, str) and len(v) <= 64  # noqa: E731
_OOD = lambda v: isinstance(v, bool) or _NAME(v) or _list_of(_NAME, 64)(v)  # noqa: E731
_IMAGE_OOD = {
    "ood": _OOD,
    "ood_corruptions": _list_of(_NAME, 64),
    "ood_severities": _list_of(_num(1, 5, int), 5),
    "ood_seed": _num(0, 2**32 - 1, int),
}
_CIFAR_OOD = {**_IMAGE_OOD, "ood_source": lambda v: v in OOD_SOURCES}
#: The ``data.options`` an exported file may set, with their bounds: they shape the data's
#: distribution. Where the data is read, cached or downloaded and how many samples are made
#: are never taken from a file (:data:`CALLER_DATA_OPTIONS`).
FILE_DATA_OPTIONS: dict[str, dict[str, Callable[[Any], bool]]] = {
    "mnist1d": {
        "train_split": _num(0, 1),
        "seed": _num(0, 2**32 - 1, int),
        "template_len": _num(1, 4096, int),
        "padding": _list_of(_num(0, 4096, int), 2),
        "final_seq_length": _num(1, 4096, int),
        "max_translation": _num(1, 8192, int),
        "scale_coeff": _num(0, 100),
        "corr_noise_scale": _num(0, 100),
        "iid_noise_scale": _num(0, 100),
        "shear_scale": _num(0, 100),
        "shuffle_seq": lambda v: isinstance(v, bool),
        "ood": _OOD,
    },
    "fashion-mnist": _IMAGE_OOD,
    "cifar10": _CIFAR_OOD,
    "cifar100": _CIFAR_OOD,
    "imagefolder": {
        "image_size": _num(8, 1024, int),
        "mean": _list_of(_num(-1e3, 1e3), 4),
        "std": _list_of(_num(1e-6, 1e3), 4),
    },
}
#: Options a file's values are ignored for: the caller's or the loader's defaults apply.
CALLER_DATA_OPTIONS = ("num_samples", "ood_samples", "cache", "download", "ood_path")
#: Evaluation settings a file may set, with bounds (runtime and memory of `vcreg evaluate`).
_EVAL_BOUNDS = {
    "C": _num(1e-8, 1e8),
    "max_iter": _num(1, 10_000, int),
    "independence_samples": _num(10, 100_000, int),
    "batch_size": _num(1, 65_536, int),
}
_MAX_BATCH_ELEMENTS = 2**28  # one encoding batch: 1 GiB of float32 input


def _file_train_config(config: dict[str, Any], path: Path) -> TrainConfig:
    """The file's training config, validated; a one-line ExportFileError otherwise."""
    data = config.get("train_config")
    if data is None:
        raise ExportFileError(f"{path}: no train_config in its metadata (its dataset is unknown)")
    try:
        return TrainConfig.from_dict(saved_config(dict(data), str(path)))
    except (TypeError, ValueError) as exc:
        lines = [ln.strip(" -") for ln in str(exc).splitlines() if ln.strip()]
        raise ExportFileError(f"{path}: its train_config is invalid: {'; '.join(lines)}") from None


def _data_options(cfg: TrainConfig, path: Path, num_samples: int | None) -> dict[str, Any]:
    """The file's distribution options (checked against :data:`FILE_DATA_OPTIONS`) plus the
    caller's sample count; the file's location/download/count settings are dropped (warned)."""
    name = canonical_dataset_name(cfg.data.name)
    allowed = FILE_DATA_OPTIONS[name]
    opts, bad, ignored = {}, [], []
    used = {"download": False, "cache": True, "num_samples": num_samples}
    for key, value in cfg.data.options.items():
        if key in CALLER_DATA_OPTIONS:
            if value != used.get(key):
                ignored.append(f"data.options.{key}={json.dumps(value)[:40]}")
        elif key not in allowed:
            bad.append(f"data.options.{key}: unknown field for dataset {name!r}")
        elif not allowed[key](value):
            bad.append(f"data.options.{key}: out of range or wrong type ({str(value)[:40]!r})")
        else:
            opts[key] = value
    if bad:
        raise ExportFileError(f"{path}: invalid data settings in its metadata: {'; '.join(bad)}")
    if num_samples is not None:
        if name != "mnist1d":
            raise ValueError(f"num_samples (--data-samples) applies to mnist1d, not {name!r}")
        opts["num_samples"] = int(num_samples)
    ignored += [f"data.{k}={json.dumps(getattr(cfg.data, k))[:200]}" for k in _run_only(cfg)]
    if ignored:
        warnings.warn(
            f"{path.name}: ignoring the file's {', '.join(ignored)}: a file never chooses where "
            "data is read or cached, downloads, or sample counts (give --data-root / "
            "--data-samples, or data_root= / num_samples=)",
            stacklevel=3,
        )
    return opts


def _run_only(cfg: TrainConfig) -> list[str]:
    d = cfg.data
    return [k for k, v in (("root", d.root), ("train_samples", d.train_samples)) if v is not None]


def _check_evaluation(cfg: TrainConfig, input_shape: list[int], path: Path) -> None:
    ev = cfg.evaluation
    bad = [
        f"evaluation.{k}={getattr(ev, k)!r}"
        for k, ok in _EVAL_BOUNDS.items()
        if not ok(getattr(ev, k))
    ]
    if not bad and ev.batch_size * math.prod(input_shape) > _MAX_BATCH_ELEMENTS:
        bad.append(f"evaluation.batch_size={ev.batch_size} x input {input_shape} (> 2^28 values)")
    if bad:
        raise ExportFileError(f"{path}: out-of-range settings in its metadata: {', '.join(bad)}")


def exported_train_config(
    path: str | Path,
    config: dict[str, Any],
    data_root: str | Path | None = None,
    num_samples: int | None = None,
) -> TrainConfig:
    """The training config to evaluate/measure an exported encoder with: the file's dataset and
    settings, validated and bounded, with the data location and sample count of the caller
    (module docstring). ``config`` is :func:`vcreg.models.read_export_config`'s result."""
    path = Path(path)
    cfg = _file_train_config(config, path)
    _check_evaluation(cfg, config["encoder"]["input_shape"], path)
    options = _data_options(cfg, path, num_samples)
    if data_root is None and canonical_dataset_name(cfg.data.name) == "imagefolder":
        raise ValueError(
            f"{path.name} was trained on an imagefolder dataset: give its folder with --data-root "
            "(data_root=)"
        )
    root = None if data_root is None else str(data_root)
    return cfg.replace(
        {"data.root": root, "data.options": options, "data.train_samples": None,
         "data.num_workers": 0}
    )  # fmt: skip


def load_exported(
    path: str | Path,
    device: str | torch.device = "cpu",
    data_root: str | Path | None = None,
    num_samples: int | None = None,
) -> tuple[Encoder, TrainConfig, DatasetBundle, dict[str, Any]]:
    """``(encoder, training config, dataset bundle, export config)`` of an exported encoder:
    the file is verified and bounded before anything is allocated; the data come from
    ``data_root`` (default: the loader's usual place) with ``num_samples`` (MNIST-1D; default:
    the generator's), never from the file's own location or counts."""
    config = read_export_config(path)
    cfg = exported_train_config(path, config, data_root, num_samples)
    encoder = load_encoder(path, device)
    bundle = load_bundle(cfg)
    if tuple(bundle.input_shape) != tuple(encoder.input_shape):
        raise ValueError(
            f"{path}: the encoder takes input {tuple(encoder.input_shape)} but its dataset "
            f"{cfg.data.name!r} gives {tuple(bundle.input_shape)}"
        )
    return encoder, cfg, bundle, config


def evaluate_exported(
    path: str | Path,
    device: str = "auto",
    ood: bool | None = None,
    progress: bool = False,
    overwrite: bool = False,
    data_root: str | Path | None = None,
    num_samples: int | None = None,
) -> dict[str, Any]:
    """``vcreg evaluate``'s measurements for an exported encoder (its run's dataset and
    ``evaluation`` settings; data from ``data_root``/``num_samples``, :func:`load_exported`);
    writes ``<name>.eval.json`` beside it (``overwrite`` to replace)."""
    target = Path(path).with_suffix(".eval.json")
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass --overwrite (overwrite=True) to replace it")
    dev = resolve_device(device)
    encoder, cfg, bundle, config = load_exported(path, dev, data_root, num_samples)
    result = {
        "encoder": str(path),
        "dataset": cfg.data.name,
        "data": {"root": cfg.data.root, "options": cfg.data.options},
        "source": config["source"],
        **evaluate_encoder(encoder, cfg, bundle, dev, ood=ood, progress=progress),
        "file": str(target),
    }
    atomic_write_text(target, json.dumps(result, indent=1))
    return result


def encode_exported(
    path: str | Path,
    limit: int | None = None,
    device: str = "auto",
    data_root: str | Path | None = None,
    num_samples: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(representations, labels)`` of the first ``limit`` test samples of the exported
    encoder's dataset (float64 array (n, repr_dim), int labels (n,); data from
    ``data_root``/``num_samples``, :func:`load_exported`)."""
    dev = resolve_device(device)
    encoder, cfg, bundle, _ = load_exported(path, dev, data_root, num_samples)
    x, y = dataset_tensors(bundle.test, limit)
    feats = encode(encoder, x, cfg.evaluation.batch_size, dev)
    return feats.double().cpu().numpy(), y.cpu().numpy()
