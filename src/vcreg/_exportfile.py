"""The ``vcreg export`` file: its header read, bounded and hashed before anything in it is used.

Exported encoders are shared files, so everything in one is untrusted. The layout is
safetensors': an 8-byte little-endian header length N, N bytes of JSON (the tensor index
``{name: {"dtype", "shape", "data_offsets"}}`` plus ``"__metadata__"``, strings to strings),
then the tensors' bytes. vcreg's metadata: ``format`` ("vcreg-encoder"), ``version``, ``config``
(a JSON object, checked by :func:`check_config` against fixed keys, types and bounds) and, from
export version 2, ``sha256``: the content hash of :func:`content_sha256`.

Content hash: SHA-256 of the canonical JSON of ``{"config": <the config string>, "tensors": <the
tensor index>}`` followed by every byte of the data section. It covers every weight, each
tensor's name, dtype and shape, and the stored config; only ``format``/``version``/``sha256``
are outside it. It detects damage (a flipped byte, a truncated copy), not tampering: whoever
edits a file on purpose can recompute it. Files of export version 1 (vcreg before the hash)
carry none; they load with a warning (:func:`check_hash`).
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ExportFileError",
    "ExportHeader",
    "MAX_INPUT_ELEMENTS",
    "MAX_WIDTH",
    "UnverifiedExportWarning",
    "check_config",
    "check_hash",
    "content_sha256",
    "payload_sha256",
    "read_header",
]

MAX_HEADER_BYTES = 16 * 2**20
MAX_TENSORS = 100_000
#: Largest input a file may declare (elements per sample: e.g. 4 x 2048 x 2048).
MAX_INPUT_ELEMENTS = 2**24
#: Largest size of one dimension / layer width / repr_dim a file may declare.
MAX_WIDTH = 2**20
_CHUNK = 2**22
CONFIG_KEYS = ("format", "version", "encoder", "projector", "data", "train_config", "source")
ENCODER_KEYS = ("name", "input_shape", "repr_dim", "options")


class ExportFileError(ValueError):
    """An exported encoder file that is damaged, malformed or out of bounds (one-line message)."""


class UnverifiedExportWarning(UserWarning):
    """An exported encoder without a content hash (written before export version 2)."""


@dataclass(frozen=True)
class ExportHeader:
    """The parsed safetensors header: tensor index, string metadata, where the data starts."""

    index: dict[str, dict[str, Any]]
    metadata: dict[str, str]
    data_start: int
    size: int


def read_header(path: str | Path) -> ExportHeader:
    """Parse ``path``'s safetensors header (bounded: at most 16 MiB of JSON, 100,000 tensors)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"exported encoder not found: {path}")
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        n = struct.unpack("<Q", head)[0] if len(head) == 8 else -1
        if not 0 < n <= min(MAX_HEADER_BYTES, size - 8):
            raise ExportFileError(f"cannot read {path}: not a readable safetensors file")
        raw = fh.read(n)
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ExportFileError(
            f"cannot read {path}: its safetensors header is not valid JSON (damaged file)"
        ) from None
    if not isinstance(header, dict):
        raise ExportFileError(f"cannot read {path}: not a readable safetensors file")
    meta = header.pop("__metadata__", None) or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise ExportFileError(f"{path}: malformed safetensors metadata (must map strings)")
    if len(header) > MAX_TENSORS or not all(_is_entry(v) for v in header.values()):
        raise ExportFileError(f"{path}: malformed safetensors tensor index")
    return ExportHeader(header, meta, 8 + n, size)


def _is_entry(v: Any) -> bool:
    return (
        isinstance(v, dict)
        and isinstance(v.get("dtype"), str)
        and isinstance(v.get("shape"), list)
        and all(_is_int(s, 0, 2**62) for s in v["shape"])
        and isinstance(v.get("data_offsets"), list)
        and len(v["data_offsets"]) == 2
    )


def _digest(config: str, index: dict[str, Any]) -> Any:
    canon = {"config": config, "tensors": index}
    return hashlib.sha256(json.dumps(canon, sort_keys=True, separators=(",", ":")).encode())


def content_sha256(path: str | Path, header: ExportHeader) -> str:
    """The content hash (module docstring) of an export file with this header."""
    h = _digest(header.metadata.get("config", ""), header.index)
    with open(path, "rb") as fh:
        fh.seek(header.data_start)
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def payload_sha256(payload: bytes) -> str:
    """The content hash of a serialized safetensors payload (what ``export`` is about to write)."""
    n = struct.unpack("<Q", payload[:8])[0]
    index = json.loads(payload[8 : 8 + n])
    meta = index.pop("__metadata__", None) or {}
    h = _digest(meta.get("config", ""), index)
    h.update(memoryview(payload)[8 + n :])
    return h.hexdigest()


def check_hash(path: str | Path, header: ExportHeader, version: int) -> None:
    """Verify the stored content hash; version 1 files (no hash) load with a warning."""
    stored = header.metadata.get("sha256")
    if stored is None:
        if version >= 2:
            raise ExportFileError(
                f"{path}: export version {version} file without its content hash (sha256); "
                "the file was altered after export and is refused"
            )
        warnings.warn(
            f"{path} has no content hash (written by vcreg before export version 2): damage to "
            "its weights cannot be detected; re-export it with `vcreg export RUN` to add one",
            UnverifiedExportWarning,
            stacklevel=3,
        )
        return
    if content_sha256(path, header) != stored:
        raise ExportFileError(
            f"{path} is damaged: its content does not match the SHA-256 stored at export "
            "(changed on disk or in transfer); it was not loaded"
        )


# ----------------------------------------------------------------------------- config schema


def _is_int(v: Any, lo: int, hi: int) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi


def _check_option(key: str, v: Any) -> str | None:
    ok = (
        isinstance(v, bool)
        or _is_int(v, -MAX_WIDTH, MAX_WIDTH)
        or (isinstance(v, float) and math.isfinite(v))
        or (isinstance(v, str) and len(v) <= 64)
        or (isinstance(v, list) and len(v) <= 64 and all(_is_int(s, 1, MAX_WIDTH) for s in v))
    )
    return None if ok else f"encoder.options.{key}: unsupported value {str(v)[:60]!r}"


def _encoder_problems(enc: Any) -> list[str]:
    if not isinstance(enc, dict):
        return [f"encoder: must be an object, got {type(enc).__name__}"]
    p = [f"encoder.{k}: unknown field" for k in enc if k not in ENCODER_KEYS]
    p += [f"encoder.{k}: missing" for k in ENCODER_KEYS[:3] if k not in enc]
    if "name" in enc and not (isinstance(enc["name"], str) and len(enc["name"]) <= 64):
        p.append(f"encoder.name: must be a short string, got {str(enc['name'])[:60]!r}")
    shape = enc.get("input_shape", [1])
    if not (
        isinstance(shape, list)
        and 1 <= len(shape) <= 4
        and all(_is_int(s, 1, MAX_WIDTH) for s in shape)
        and math.prod(shape) <= MAX_INPUT_ELEMENTS
    ):
        p.append(
            f"encoder.input_shape: must be 1 to 4 sizes in [1, {MAX_WIDTH}] with at most "
            f"{MAX_INPUT_ELEMENTS} elements, got {str(shape)[:60]}"
        )
    if not _is_int(enc.get("repr_dim", 1), 1, MAX_WIDTH):
        p.append(f"encoder.repr_dim: must be an int in [1, {MAX_WIDTH}], got {enc['repr_dim']!r}")
    opts = enc.get("options", {})
    if not isinstance(opts, dict) or len(opts) > 32:
        return [*p, "encoder.options: must be an object of at most 32 fields"]
    return p + [e for k, v in opts.items() if (e := _check_option(k, v))]


def _source_problems(src: Any) -> list[str]:
    if not isinstance(src, dict):
        return [f"source: must be an object, got {type(src).__name__}"]
    p = [f"source.{k}: unknown field" for k in src if k not in _SOURCE]
    for key, ok in _SOURCE.items():
        if key not in src or not ok(src[key]):
            p.append(f"source.{key}: missing or malformed ({str(src.get(key))[:60]!r})")
    return p


_SOURCE = {
    "run_dir": lambda v: isinstance(v, str) and len(v) <= 4096,
    "checkpoint_sha256": lambda v: v is None or (isinstance(v, str) and len(v) <= 128),
    "epoch": lambda v: _is_int(v, 0, 2**31),
    "step": lambda v: _is_int(v, 0, 2**62),
}


def check_config(config: Any, path: str | Path) -> dict[str, Any]:
    """``config`` if it has exactly the export's fields with valid types and bounds; one-line
    :class:`ExportFileError` listing every problem otherwise. ``train_config`` is checked by its
    own schema (``TrainConfig``) where it is used."""
    if not isinstance(config, dict):
        raise ExportFileError(f"{path}: invalid export metadata: config must be a JSON object")
    p = [f"{k}: unknown field" for k in config if k not in CONFIG_KEYS]
    p += _encoder_problems(config.get("encoder"))
    if "source" in config:
        p += _source_problems(config["source"])
    for key in ("data", "train_config"):
        if key in config and not isinstance(config[key], dict):
            p.append(f"{key}: must be an object, got {type(config[key]).__name__}")
    if config.get("projector") is not None and not isinstance(config["projector"], dict):
        p.append("projector: must be an object or null")
    if p:
        raise ExportFileError(f"{path}: invalid export metadata: {'; '.join(p)}")
    return config
