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
import math
import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from vcreg._device import resolve_device
from vcreg.independence._common import _progress
from vcreg.independence.measurement import (
    check_measure_options,
    is_int,
    measure_embeddings,
    plan_measure,
)

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
    copied into one buffer that grows (doubling) with the rows seen up to k, so memory follows
    the rows kept, never ``max_samples``, and no batch is kept alive by a row it contributed."""

    def __init__(self, k: int, seed: int) -> None:
        self.k, self.seen, self.rng = k, 0, np.random.default_rng(seed)
        self.idx = np.empty(0, dtype=np.int64)
        self.buf: Tensor | None = None
        self.lab: Tensor | None = None

    def _grow(self, rows: Tensor, labels: Tensor | None, need: int) -> None:
        have = 0 if self.buf is None else self.buf.shape[0]
        if need <= have:
            return
        cap = min(self.k, max(need, 2 * have))
        buf = rows.new_empty((cap, *rows.shape[1:]))
        lab = labels.new_empty(cap) if labels is not None else None
        if self.buf is not None:
            buf[:have] = self.buf
            if lab is not None and self.lab is not None:
                lab[:have] = self.lab
        self.buf, self.lab = buf, lab
        self.idx = np.concatenate([self.idx, np.full(cap - have, -1, dtype=np.int64)])

    def add(self, rows: Tensor, labels: Tensor | None) -> None:
        b = rows.shape[0]
        self._grow(rows, labels, min(self.k, self.seen + b))
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


def _check_args(
    encoder: Any, dataloader: Any, layer: Any, max_samples: Any, sample: Any, seed: Any,
    spatial: Any, labels: Any,
) -> None:  # fmt: skip
    """One-line errors naming the argument, before the model is touched."""
    if not isinstance(encoder, nn.Module):
        raise TypeError(f"encoder must be a torch.nn.Module, got {type(encoder).__name__}")
    if isinstance(dataloader, Tensor | np.ndarray) or not hasattr(dataloader, "__iter__"):
        raise TypeError(
            f"dataloader must be an iterable of batches (e.g. a torch DataLoader), got "
            f"{type(dataloader).__name__}"
        )
    if layer is not None and not isinstance(layer, str):
        raise TypeError(
            f"layer must be a submodule name such as 'layer4' or 'net.3' (a str) or None, got "
            f"{layer!r} ({type(layer).__name__})"
        )
    if max_samples is not None and not is_int(max_samples):
        raise TypeError(
            f"max_samples must be an int (or None for all rows), got {max_samples!r} "
            f"({type(max_samples).__name__})"
        )
    if max_samples is not None and max_samples < 4:
        raise ValueError(
            f"max_samples must be at least 4 (or None for all rows), got {max_samples}"
        )
    if sample not in SAMPLING_RULES:
        raise ValueError(f"unknown sample rule {sample!r}; choose one of {SAMPLING_RULES}")
    if spatial not in SPATIAL_RULES:
        raise ValueError(f"unknown spatial rule {spatial!r}; choose one of {SPATIAL_RULES}")
    if not is_int(seed) or seed < 0:
        raise (ValueError if is_int(seed) else TypeError)(f"seed must be an int >= 0, got {seed!r}")
    if not isinstance(labels, bool | np.bool_):
        raise TypeError(f"labels must be True or False, got {labels!r}")


def _same_bits(a: Tensor, b: Tensor) -> bool:
    try:
        return torch.equal(
            a.detach().reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8)
        )
    except (RuntimeError, TypeError, NotImplementedError):  # sparse / quantized: copy it back
        return False


@contextmanager
def _left_as_found(encoder: nn.Module, dev: torch.device, target: nn.Module | None, grab):
    """Run the pass in eval mode on ``dev`` (with the capture hook on ``target``), then put the
    model back exactly, also when the pass fails: every submodule's own train/eval flag
    (restoring the wrapper's flag over all submodules would put eval-mode BatchNorm layers into
    training mode), every parameter's and gradient's storage and device, every buffer's object
    and bits (BatchNorm running statistics), no hook left. The model is moved only when some
    tensor is not on ``dev``; then the pass runs on copies and the originals are put back. A
    forward that writes its own parameters in place cannot be undone: an error says so."""
    modules = list(encoder.modules())
    flags = [(m, m.training) for m in modules]
    params = [(m, k, p, p.data, p.grad, p._version) for m in modules
              for k, p in m._parameters.items() if p is not None]  # fmt: skip
    bufs = [(m, k, b, b.detach().clone()) for m in modules for k, b in m._buffers.items()
            if b is not None]  # fmt: skip
    moved = any(e[3].device != dev for e in params) or any(e[2].device != dev for e in bufs)
    hook = None
    try:
        if moved:
            encoder.to(dev)
        encoder.eval()
        if target is not None:
            hook = target.register_forward_hook(grab)
        yield
    finally:
        if hook is not None:
            hook.remove()
        with torch.no_grad():
            for m, k, p, data, grad, _v in params:
                m._parameters[k] = p  # the user's own objects, with their own storage
                if moved:
                    p.data, p.grad = data, grad
            for m, k, b, copy in bufs:
                m._buffers[k] = b
                if not _same_bits(b, copy):
                    b.copy_(copy)
        for m, flag in flags:
            m.training = flag
    written = [(m, k) for m, k, p, _d, _g, v in params if not moved and p._version != v]
    if written:
        names = {id(p): n for n, p in encoder.named_parameters(remove_duplicate=False)}
        shown = [names.get(id(m._parameters[k]), k) for m, k in written[:5]]
        raise RuntimeError(
            f"the forward pass of {type(encoder).__name__} wrote parameter(s) {shown} in place "
            "(eval mode, torch.inference_mode); measure_model cannot undo that"
        )


@torch.inference_mode()
def _stream(encoder, dataloader, held: list | None, dev, keep, labels: bool, spatial, where: str):
    """Yield ``(rows, labels)`` per batch: the encoder's output on the CPU, or the hooked
    layer's (``held`` is then the hook's list)."""
    for batch in dataloader:
        x, y = _inputs(batch, labels)
        if held is not None:
            held.clear()
        try:
            out = encoder(x.to(dev))
        except _Captured:
            out = held[0]
        if held is not None and not held:
            raise ValueError(f"{where} was not called in the encoder's forward pass")
        yield _as_rows(out, spatial, where), y
        if keep():
            return


def _length(obj: Any) -> int | None:
    try:
        return len(obj)
    except TypeError:  # an iterable without a length
        return None


def _rows_total(dataloader: Any) -> int | None:
    """Rows the loader will give, when it says (a map-style dataset behind a DataLoader)."""
    data = getattr(dataloader, "dataset", None)
    batch_sampler = getattr(dataloader, "batch_sampler", None)
    if data is None or getattr(batch_sampler, "drop_last", True):
        return None
    return _length(data)


class _Rows:
    """The rows kept while streaming: all / the first ``max_samples`` / a reservoir sample."""

    def __init__(self, max_samples: int | None, sample: str, seed: int, labels: bool) -> None:
        self.max_samples, self.chunks, self.count = max_samples, [], 0
        self.labs: list[Tensor] | None = [] if labels else None
        self.res = _Reservoir(max_samples, seed) if sample == "reservoir" and max_samples else None

    def enough(self) -> bool:
        return self.res is None and self.max_samples is not None and self.count >= self.max_samples

    def add(self, rows: Tensor, y: Tensor | None) -> None:
        if self.res is not None:
            self.res.add(rows, y)
            return
        self.chunks.append(rows)
        if self.labs is not None:
            self.labs.append(y.reshape(len(rows), -1)[:, 0])
        self.count += rows.shape[0]

    def result(self) -> dict[str, Any]:
        complete = not self.enough()
        chunks, labs = self.chunks, self.labs
        if self.res is not None:
            kept, kept_labels, idx = self.res.rows()
            chunks = [kept] if len(idx) else []
            labs = [kept_labels] if kept_labels is not None else labs
            seen = self.res.seen
        else:
            seen = self.count
            idx = np.arange(seen if self.max_samples is None else min(seen, self.max_samples))
        if not chunks:
            raise ValueError("the dataloader gave no batches")
        feats = torch.cat(chunks)[: len(idx)]
        lab = torch.cat(labs)[: len(idx)].cpu().numpy() if labs else None
        return {
            "features": feats.numpy(), "labels": lab, "rows_seen": seen, "row_indices": idx,
            "complete": complete,
        }  # fmt: skip


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
    progress: bool = False,
    on_first_batch: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """The rows :func:`measure_model` measures (module docstring for the rules):
    ``{"features": ndarray (n, d), "labels": ndarray (n,) or None, "rows_seen": int,
    "row_indices": ndarray (n,) positions in the loader's order, "complete": False when the
    loop stopped at max_samples ("first") before the loader was exhausted}``. The encoder is
    left exactly as it was found (modes, parameters, buffers, device, hooks), also on error.
    ``progress``: a bar over the batches; ``on_first_batch({"seconds", "rows", "features"})``
    is called once, when the first batch is encoded (measure_model's estimate of the rest)."""
    _check_args(encoder, dataloader, layer, max_samples, sample, seed, spatial, labels)
    dev = resolve_device(device)
    target = _find_layer(encoder, layer) if layer is not None else None
    where = f"layer {layer!r}" if layer is not None else type(encoder).__name__
    held: list[Any] = []

    def grab(_module, _inp, out):
        held.append(out)
        raise _Captured

    kept = _Rows(max_samples, sample, seed, labels)
    hooked = None if target is None else held
    bar = _progress(_length(dataloader), "encoding batches", progress)
    t0 = time.perf_counter()
    try:
        with _left_as_found(encoder, dev, target, grab):
            stream = _stream(encoder, dataloader, hooked, dev, kept.enough, labels, spatial, where)
            for i, (rows, y) in enumerate(stream):
                if i == 0 and on_first_batch is not None:
                    info = {"seconds": time.perf_counter() - t0, "rows": int(rows.shape[0])}
                    on_first_batch(info | {"features": int(rows[0].numel())})
                kept.add(rows, y)
                if bar is not None:
                    bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return kept.result()


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
    the model is left exactly as it was found, also when the call fails (every submodule's
    train/eval flag, parameters, buffers, device, hooks: :func:`collect_features`). Rows kept:
    ``max_samples`` by ``sample`` ("first" | "reservoir", seeded with ``seed``); memory grows
    with the rows kept, never with ``max_samples``. Arguments are checked before the loader is
    read. Other keyword arguments go to :func:`measure_embeddings` (``method``, ``kernel``,
    ``test``, ``progress``, ``on_plan``, ...); ``on_plan(plan)`` is called once the first batch
    is encoded, with the estimate of the rest of the encoding and of every measuring step.
    """
    check_measure_options(seed=seed, **measure_options)
    on_plan = measure_options.pop("on_plan", None)
    plan: dict[str, Any] = {}

    def first(info: dict[str, Any]) -> None:  # the estimate: the rest of the encoding + measuring
        total = _rows_total(dataloader)
        if on_plan is None or (total is None and max_samples is None):
            return
        n = max_samples if total is None else min(total, max_samples or total)
        read = total if sample == "reservoir" and total is not None else n
        plan.update(plan_measure(n, info["features"], labels, seed=seed, **measure_options))
        rest = info["seconds"] * max(0, math.ceil(read / info["rows"]) - 1)
        plan["steps"] = {"encode": rest, **plan["steps"]}
        plan["seconds"] += rest
        on_plan(plan | {"n_total": total, "n_features": info["features"]})

    t0 = time.perf_counter()
    got = collect_features(
        encoder, dataloader, layer, max_samples=max_samples, sample=sample, seed=seed,
        spatial=spatial, labels=labels, device=device,
        progress=bool(measure_options.get("progress", False)), on_first_batch=first,
    )  # fmt: skip
    encode_s = time.perf_counter() - t0
    dev = resolve_device(device)
    late = None if plan else on_plan  # no estimate could be made before encoding: make it now
    rep = measure_embeddings(
        got["features"], got["labels"], max_samples=None, seed=seed, device=dev, on_plan=late,
        **measure_options,
    )  # fmt: skip
    cost = rep["cost"]
    cost["steps_seconds"] = {"encode": encode_s, **cost["steps_seconds"]}
    cost["seconds"] += encode_s
    if plan:
        cost["estimate"] = plan
    _state_rows(rep, got, encoder, layer, spatial, sample, seed, max_samples)
    return rep


def _state_rows(rep, got, encoder, layer, spatial, sample, seed, max_samples) -> None:
    """The report's input section and notes say which of the loader's rows were measured (the
    array measure_embeddings saw was already the subsample)."""
    n, seen = len(got["features"]), got["rows_seen"]
    rep["input"].update(
        source="model", model=type(encoder).__name__, layer=layer, spatial=spatial,
        rows_seen=seen, sampling=sample, complete=got["complete"],
    )  # fmt: skip
    rep["settings"]["max_samples"] = max_samples
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
