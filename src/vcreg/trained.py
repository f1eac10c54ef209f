"""A trained encoder and its data, from a run folder or a ``vcreg export`` file; measuring it.

``source`` is a training run folder (``vcreg train --out RUN``: the weights of its verified
``checkpoint.pt``) or an exported encoder (``vcreg export RUN --out encoder.safetensors``).
Either way the encoder comes with the dataset of its run (the run's config), so
``measure_trained(source)`` measures the features of the data the run was trained for: what
``vcreg measure RUN`` and ``vcreg measure encoder.safetensors`` write.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from vcreg._device import resolve_device
from vcreg._suggest import did_you_mean
from vcreg.data import DatasetBundle
from vcreg.export import load_exported
from vcreg.independence import measure_model
from vcreg.io import safetensors_metadata
from vcreg.models import EXPORT_FORMAT
from vcreg.training.config import TrainConfig
from vcreg.training.runfolder import load_run

__all__ = ["Trained", "dataset_split", "is_trained_source", "load_trained", "measure_trained"]


class Trained(NamedTuple):
    """An encoder (eval mode) with its run's config and dataset, and where it came from."""

    encoder: nn.Module
    config: TrainConfig
    bundle: DatasetBundle
    origin: dict[str, Any]


def is_trained_source(path: str | Path) -> bool:
    """True for a folder (a run folder) or a ``.safetensors`` file written by ``vcreg export``."""
    path = Path(path)
    if path.is_dir():
        return True
    return (
        path.suffix.lower() == ".safetensors"
        and path.is_file()
        and safetensors_metadata(path).get("format") == EXPORT_FORMAT
    )


def load_trained(
    source: str | Path,
    device: str | torch.device = "cpu",
    data_root: str | Path | None = None,
    num_samples: int | None = None,
) -> Trained:
    """The encoder of a run folder or an exported encoder file, on ``device``. An exported file
    never chooses where its data come from: ``data_root`` / ``num_samples`` (MNIST-1D) or the
    loader's defaults (:func:`vcreg.export.load_exported`); a run folder uses its own config."""
    source = Path(source)
    dev = resolve_device(device)
    if source.is_dir():
        if data_root is not None or num_samples is not None:
            raise ValueError(
                "data_root / num_samples apply to an exported encoder, not a run folder"
            )
        cfg, model, state, bundle = load_run(source, dev)
        origin = {"kind": "run", "path": str(source), "epoch": int(state["epoch"])}
        origin["checkpoint_sha256"] = state.get("sha256")
        return Trained(model.encoder, cfg, bundle, origin)
    encoder, cfg, bundle, config = load_exported(source, dev, data_root, num_samples)
    return Trained(
        encoder, cfg, bundle, {"kind": "export", "path": str(source), **config["source"]}
    )


def dataset_split(bundle: DatasetBundle, name: str) -> Dataset:
    """``"test"``, ``"train"`` (the run's training split, un-augmented) or an OOD set's name."""
    splits = {"test": bundle.test, "train": bundle.train, **bundle.ood}
    if name not in splits:
        raise ValueError(
            f"unknown dataset {name!r} for {bundle.name}{did_you_mean(name, splits)}; choose "
            f"one of {list(splits)}"
        )
    return splits[name]


def measure_trained(
    source: str | Path,
    dataset: str = "test",
    *,
    layer: str | None = None,
    max_samples: int | None = 2048,
    seed: int = 0,
    batch_size: int | None = None,
    labels: bool = True,
    device: str | torch.device | None = "auto",
    data_root: str | Path | None = None,
    num_samples: int | None = None,
    **measure_options: Any,
) -> dict[str, Any]:
    """:func:`vcreg.independence.measure_model` of ``source``'s encoder on ``dataset`` of its run.

    Rows: a uniform random subset of ``max_samples`` of the split (reservoir, ``seed``), with its
    class labels unless ``labels=False`` (the report's feature-label dependence). ``batch_size``
    defaults to the run's ``evaluation.batch_size``; ``layer`` names a submodule of the encoder;
    ``data_root`` / ``num_samples``: an exported encoder's data (:func:`load_trained`).
    """
    dev = resolve_device(device)
    trained = load_trained(source, dev, data_root, num_samples)
    data = dataset_split(trained.bundle, dataset)
    bs = batch_size or trained.config.evaluation.batch_size
    loader = DataLoader(data, batch_size=bs, shuffle=False)
    rep = measure_model(
        trained.encoder, loader, layer, max_samples=max_samples, sample="reservoir", seed=seed,
        labels=labels, device=dev, **measure_options,
    )  # fmt: skip
    rep["input"].update(dataset=trained.bundle.name, split=dataset, trained=trained.origin)
    return rep
