"""Independence of a model's features: stream a DataLoader through any ``nn.Module``, measure.

:func:`measure_model` runs the batches through ``encoder`` (or captures the output of the
submodule named ``layer`` with a forward hook, stopping the forward pass there) under
``torch.inference_mode`` in eval mode, keeps at most ``max_samples`` rows and hands them to
:func:`measure_embeddings` unchanged — so its report is exactly the report of measuring the
array of kept rows (the same rows saved with ``np.save`` and read back give the same numbers).

Which rows are kept:

- ``sample="first"`` (default): the first ``max_samples`` rows in the loader's order; the loop
  stops as soon as it has them, so the cost is bounded. Shuffle the loader (seeded generator)
  for a random subset.
- ``sample="reservoir"``: a uniform random subset of all rows the loader gives (reservoir
  sampling, Algorithm R, NumPy generator seeded with ``seed``), kept in loader order; every batch
  is encoded.

Outputs with more than 2 dimensions (conv feature maps ``(B, C, *spatial)``) are reduced by
``spatial``: ``"mean"`` (global average pooling: one feature per channel, the usual reading of a
CNN's features) or ``"flatten"`` (every unit a feature).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vcreg._device import resolve_device
from vcreg.independence.measurement import measure_embeddings

__all__ = ["SAMPLING_RULES", "SPATIAL_RULES", "collect_features", "measure_model"]

SAMPLING_RULES = ("first", "reservoir")
SPATIAL_RULES = ("mean", "flatten")


class _Captured(Exception):
    """Raised by the hook once the layer's output is held: the rest of the forward is skipped."""


def _inputs(batch: Any, with_labels: bool) -> tuple[Tensor, Tensor | None]:
    if isinstance(batch, Tensor):
        if with_labels:
            raise ValueError("labels=True needs batches of (inputs, labels); got bare tensors")
        return batch, None
    if isinstance(batch, list | tuple) and batch and isinstance(batch[0], Tensor):
        if with_labels and (len(batch) < 2 or not isinstance(batch[1], Tensor | list | tuple)):
            raise ValueError("labels=True needs batches of (inputs, labels, ...)")
        return batch[0], (torch.as_tensor(batch[1]) if with_labels else None)
    raise TypeError(
        f"a batch must be a tensor or a tuple/list starting with the input tensor, got "
        f"{type(batch).__name__}"
    )


def _find_layer(encoder: nn.Module, layer: str) -> nn.Module:
    modules = dict(encoder.named_modules())
    if layer not in modules or layer == "":
        close = difflib.get_close_matches(layer, [n for n in modules if n], n=5)
        hint = f"; did you mean {close}?" if close else ""
        names = [n for n in modules if n and "." not in n]
        raise ValueError(
            f"{type(encoder).__name__} has no submodule named {layer!r}{hint} (top-level "
            f"submodules: {names[:20]}; nested names use dots, e.g. 'layer4.1.conv2')"
        )
    return modules[layer]


def _as_rows(out: Any, spatial: str, where: str) -> Tensor:
    if isinstance(out, list | tuple) and out and isinstance(out[0], Tensor):
        out = out[0]
    if not isinstance(out, Tensor):
        raise TypeError(f"{where} returned {type(out).__name__}, not a tensor")
    if out.is_complex():
        raise TypeError(f"{where} returned complex values ({out.dtype}); vcreg measures real data")
    if out.ndim < 2:
        raise ValueError(f"{where} returned shape {tuple(out.shape)}; need (batch, features, ...)")
    if out.ndim > 2:
        out = out.flatten(2).mean(2) if spatial == "mean" else out.flatten(1)
    if out.dtype in (torch.float16, torch.bfloat16):
        out = out.float()
    return out.detach().cpu()


class _Reservoir:
    """Algorithm R over rows: after t rows, each is held with probability k / t. The rows are
    copied into one (k, d) buffer, so no batch is kept alive by a row it contributed."""

    def __init__(self, k: int, seed: int) -> None:
        self.k, self.seen, self.rng = k, 0, np.random.default_rng(seed)
        self.idx = np.full(k, -1, dtype=np.int64)
        self.buf: Tensor | None = None
        self.lab: Tensor | None = None

    def add(self, rows: Tensor, labels: Tensor | None) -> None:
        b = rows.shape[0]
        if self.buf is None:
            self.buf = rows.new_empty((self.k, *rows.shape[1:]))
            self.lab = labels.new_empty(self.k) if labels is not None else None
        t = self.seen + np.arange(b)
        # row t fills slot t while t < k, then replaces slot j ~ U{0..t} when j < k
        slot = np.where(t < self.k, t, self.rng.integers(0, t + 1))
        for r in np.nonzero(slot < self.k)[0]:  # in order: a later row wins a shared slot
            self.buf[slot[r]] = rows[r]
            self.idx[slot[r]] = t[r]
            if self.lab is not None:
                self.lab[slot[r]] = labels.reshape(b, -1)[r, 0]
        self.seen += b

    def rows(self) -> tuple[Tensor, Tensor | None, np.ndarray]:
        n = min(self.k, self.seen)
        order = np.argsort(self.idx[:n], kind="stable")
        if self.buf is None:
            return torch.empty(0), None, self.idx[:0]
        keep = torch.from_numpy(order)
        lab = self.lab[:n][keep] if self.lab is not None else None
        return self.buf[:n][keep], lab, self.idx[:n][order]


def _check_args(max_samples: int | None, sample: str, spatial: str) -> None:
    if sample not in SAMPLING_RULES:
        raise ValueError(f"unknown sample rule {sample!r}; choose one of {SAMPLING_RULES}")
    if spatial not in SPATIAL_RULES:
        raise ValueError(f"unknown spatial rule {spatial!r}; choose one of {SPATIAL_RULES}")
    if max_samples is not None and max_samples < 4:
        raise ValueError(
            f"max_samples must be at least 4 (or None for all rows), got {max_samples}"
        )


@torch.inference_mode()
def _stream(encoder, dataloader, target, dev, keep, labels: bool, spatial: str, where: str):
    """Yield ``(rows, labels)`` per batch: the encoder's (or ``target``'s) output on the CPU."""
    held: list[Any] = []
    hook = None
    if target is not None:

        def grab(_module, _inp, out):
            held.append(out)
            raise _Captured

        hook = target.register_forward_hook(grab)
    try:
        for batch in dataloader:
            x, y = _inputs(batch, labels)
            held.clear()
            try:
                out = encoder(x.to(dev))
            except _Captured:
                out = held[0]
            if target is not None and not held:
                raise ValueError(f"{where} was not called in the encoder's forward pass")
            yield _as_rows(out, spatial, where), y
            if keep is not None and keep():
                return
    finally:
        if hook is not None:
            hook.remove()


def collect_features(
    encoder: nn.Module,
    dataloader: Iterable[Any],
    layer: str | None = None,
    *,
    max_samples: int | None = 2048,
    sample: str = "first",
    seed: int = 0,
    spatial: str = "mean",
    labels: bool = False,
    device: str | torch.device | None = "auto",
) -> dict[str, Any]:
    """The rows :func:`measure_model` measures (module docstring for the rules):
    ``{"features": ndarray (n, d), "labels": ndarray (n,) or None, "rows_seen": int,
    "row_indices": ndarray (n,) positions in the loader's order, "complete": False when the
    loop stopped at max_samples ("first") before the loader was exhausted}``."""
    _check_args(max_samples, sample, spatial)
    dev = resolve_device(device)
    target = _find_layer(encoder, layer) if layer is not None else None
    where = f"layer {layer!r}" if layer is not None else type(encoder).__name__
    first_param = next(encoder.parameters(), None)
    home = first_param.device if first_param is not None else None
    was_training = encoder.training
    encoder.to(dev).eval()
    chunks: list[Tensor] = []
    labs: list[Tensor] | None = [] if labels else None
    res = _Reservoir(max_samples, seed) if sample == "reservoir" and max_samples else None
    count = [0]

    def enough() -> bool:
        return res is None and max_samples is not None and count[0] >= max_samples

    try:
        for rows, y in _stream(encoder, dataloader, target, dev, enough, labels, spatial, where):
            if res is not None:
                res.add(rows, y)
                continue
            chunks.append(rows)
            if labs is not None:
                labs.append(y.reshape(len(rows), -1)[:, 0])
            count[0] += rows.shape[0]
    finally:
        encoder.train(was_training)
        if home is not None:
            encoder.to(home)
    complete = not enough()
    if res is not None:
        held, held_labels, idx = res.rows()
        chunks = [held] if len(idx) else []
        labs = [held_labels] if held_labels is not None else labs
        seen = res.seen
    else:
        seen = count[0]
        n = seen if max_samples is None else min(seen, max_samples)
        idx = np.arange(n)
    if not chunks:
        raise ValueError("the dataloader gave no batches")
    feats = torch.cat(chunks)[: len(idx)]
    lab = torch.cat(labs)[: len(idx)].cpu().numpy() if labs else None
    return {
        "features": feats.numpy(), "labels": lab, "rows_seen": seen, "row_indices": idx,
        "complete": complete,
    }  # fmt: skip


def measure_model(
    encoder: nn.Module,
    dataloader: Iterable[Any],
    layer: str | None = None,
    *,
    max_samples: int | None = 2048,
    sample: str = "first",
    seed: int = 0,
    spatial: str = "mean",
    labels: bool = False,
    device: str | torch.device | None = "auto",
    **measure_options: Any,
) -> dict[str, Any]:
    """Independence report of ``encoder``'s features (or its submodule ``layer``'s) on the
    batches of ``dataloader`` — :func:`measure_embeddings` of the kept rows.

    Batches are tensors or tuples ``(inputs, labels, ...)``; ``labels=True`` adds the
    feature-label dependence. ``device`` follows vcreg's device rule ("auto": CUDA when present);
    the encoder is moved there for the pass and back, its train/eval mode restored. Rows kept:
    ``max_samples`` by ``sample`` ("first" | "reservoir", seeded with ``seed``). Other keyword
    arguments go to :func:`measure_embeddings` (``method``, ``kernel``, ``test``, ...).
    """
    got = collect_features(
        encoder, dataloader, layer, max_samples=max_samples, sample=sample, seed=seed,
        spatial=spatial, labels=labels, device=device,
    )  # fmt: skip
    dev = resolve_device(device)
    rep = measure_embeddings(
        got["features"], got["labels"], max_samples=None, seed=seed, device=dev, **measure_options
    )
    n, seen = len(got["features"]), got["rows_seen"]
    rep["input"].update(
        source="model", model=type(encoder).__name__, layer=layer, spatial=spatial,
        rows_seen=seen, sampling=sample, complete=got["complete"],
    )  # fmt: skip
    rep["settings"]["max_samples"] = max_samples
    # the array measure_embeddings saw was already the subsample: state the loader's rows
    rep["input"].update(n_samples_total=seen, subsampled=n < seen or not got["complete"])
    if sample == "reservoir" and n < seen:
        rep["notes"].insert(
            0, f"SUBSAMPLED: a uniform random {n} of the {seen} rows the loader gave (seed {seed})"
        )
    elif not got["complete"]:
        rep["notes"].insert(
            0,
            f"SUBSAMPLED: the first {n} rows of the loader (max_samples); it was not read further",
        )
    return rep
