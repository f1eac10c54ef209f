"""The one device rule of vcreg: what ``"auto"`` means and which explicit choices are valid.

``"auto"`` (or ``None``) picks CUDA when ``torch.cuda.is_available()``, else the CPU; under
``torchrun`` a bare ``"cuda"`` becomes ``cuda:LOCAL_RANK``. An explicit CUDA device on a machine
without CUDA, or an unknown device string, is a ``ValueError`` naming the choice — never a silent
fall-back. Every module that accepts a ``device`` argument calls :func:`resolve_device`.
"""

from __future__ import annotations

import os

import torch

__all__ = ["check_device_name", "resolve_device"]

_KINDS = ("cpu", "cuda", "mps")


def check_device_name(device: str) -> None:
    """``ValueError`` unless ``device`` is a device name this rule knows ("auto", "cpu",
    "cuda", "cuda:N", "mps") — the syntax only, whatever this machine has (config validation)."""
    kind, _, index = device.partition(":")
    if device != "auto" and (kind not in _KINDS or (index and not index.isdigit())):
        raise ValueError(f"unknown device {device!r}; choose auto, cpu, cuda or cuda:N")


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Resolve ``device`` ("auto", None, "cpu", "cuda", "cuda:1", a ``torch.device``)."""
    if isinstance(device, torch.device):
        device = str(device)
    if device is None or device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if not isinstance(device, str):
        raise TypeError(f"device must be a string or torch.device, got {type(device).__name__}")
    check_device_name(device)
    kind, _, index = device.partition(":")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available here")
        if not index:
            index = os.environ.get("LOCAL_RANK", "0")
        if int(index) >= torch.cuda.device_count():
            raise ValueError(
                f"device cuda:{index} requested but only {torch.cuda.device_count()} "
                "CUDA device(s) are visible"
            )
        return torch.device(f"cuda:{index}")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} requested but MPS is not available here")
    return torch.device(device)
