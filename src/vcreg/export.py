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
-> ``encoder.eval.json``) and measured (:func:`encode_exported`, ``vcreg measure
encoder.safetensors``) on the dataset of the run it came from, with that run's settings.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import save as safetensors_bytes

from vcreg._device import resolve_device
from vcreg._io import atomic_write, atomic_write_text
from vcreg._lock import FolderLock
from vcreg.data import DatasetBundle
from vcreg.evaluation import dataset_tensors, encode
from vcreg.models import EXPORT_FORMAT, EXPORT_VERSION, Encoder, load_encoder, read_export_config
from vcreg.training.config import TrainConfig
from vcreg.training.evaluate import evaluate_encoder
from vcreg.training.feeding import load_bundle
from vcreg.training.runfolder import load_run

__all__ = [
    "FORMATS",
    "encode_exported",
    "evaluate_exported",
    "export_paths",
    "export_run",
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
    weights.parent.mkdir(parents=True, exist_ok=True)
    payload = safetensors_bytes(tensors, metadata=meta)
    atomic_write(weights, lambda fh: fh.write(payload))
    atomic_write_text(meta_path, json.dumps(config, indent=1))
    return {**config, "files": {"weights": str(weights), "config": str(meta_path)}}


def load_exported(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[Encoder, TrainConfig, DatasetBundle, dict[str, Any]]:
    """``(encoder, training config, dataset bundle, export config)`` of an exported encoder."""
    config = read_export_config(path)
    cfg = TrainConfig.from_dict(config["train_config"])
    return load_encoder(path, device), cfg, load_bundle(cfg), config


def evaluate_exported(
    path: str | Path,
    device: str = "auto",
    ood: bool | None = None,
    progress: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """``vcreg evaluate``'s measurements for an exported encoder (its run's dataset and
    ``evaluation`` settings); writes ``<name>.eval.json`` beside it (``overwrite`` to replace)."""
    target = Path(path).with_suffix(".eval.json")
    if target.exists() and not overwrite:
        raise FileExistsError(f"{target} exists; pass --overwrite (overwrite=True) to replace it")
    dev = resolve_device(device)
    encoder, cfg, bundle, config = load_exported(path, dev)
    result = {
        "encoder": str(path),
        "dataset": cfg.data.name,
        "source": config["source"],
        **evaluate_encoder(encoder, cfg, bundle, dev, ood=ood, progress=progress),
        "file": str(target),
    }
    atomic_write_text(target, json.dumps(result, indent=1))
    return result


def encode_exported(
    path: str | Path, limit: int | None = None, device: str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """``(representations, labels)`` of the first ``limit`` test samples of the exported
    encoder's dataset (float64 array (n, repr_dim), int labels (n,))."""
    dev = resolve_device(device)
    encoder, cfg, bundle, _ = load_exported(path, dev)
    x, y = dataset_tensors(bundle.test, limit)
    feats = encode(encoder, x, cfg.evaluation.batch_size, dev)
    return feats.double().cpu().numpy(), y.cpu().numpy()
