"""Reading arrays from files: the one loader every command and Python user shares.

Formats (by suffix): ``.npy``; ``.npz`` (a named array, ``key``); ``.csv``/``.txt`` (comma
separated numbers, an optional header row of column names); ``.pt``/``.pth`` (``torch.save`` of
a tensor or a dict of tensors, ``key``); ``.safetensors`` (a file of named tensors, ``key``).

Safety: nothing is unpickled (NumPy ``allow_pickle=False``, torch ``weights_only=True``), and a
file that is not what its suffix says is refused from its first bytes, before a parser sees it.

Values: every array comes back as a NumPy array on the CPU (torch tensors are detached). Every
torch floating dtype NumPy lacks or that loses digits in arithmetic (float16, bfloat16, the
float8 variants) becomes float32, which holds each of their values exactly; integers and bools
stay as they are. A dtype no exact float conversion exists for (packed float4) is refused by
name. Real numbers only: complex data (any format) is refused — casting it to real would
silently drop the imaginary part — as are strings and Python objects. CSV/text files are read
as UTF-8 with or without a byte-order mark (spreadsheets' "CSV UTF-8" export writes one).

Every problem is a :class:`LoadError` (a ``ValueError``) whose message starts with the file name
and names the problem; the CLI prints it unchanged, whichever command read the file.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

__all__ = [
    "SUFFIXES",
    "LoadError",
    "LoadedArray",
    "load_array",
    "as_real",
    "load_matrix",
    "safetensors_metadata",
    "check_finite",
]

SUFFIXES = (".npy", ".npz", ".csv", ".txt", ".pt", ".pth", ".safetensors")
NPY_MAGIC = b"\x93NUMPY"


class LoadError(ValueError):
    """A file that cannot be read as a real-valued array (the message names file and cause)."""


class LoadedArray(NamedTuple):
    """``array``: the chosen array; ``columns``: CSV header names (else None); ``arrays``: every
    named array of the file as read (npz/pt/safetensors, for lookups such as labels; pass one
    through :func:`as_real` before use; else None)."""

    array: np.ndarray
    columns: list[str] | None
    arrays: dict[str, Any] | None


def _fail(path: Path, problem: str) -> LoadError:
    return LoadError(f"{path.name}: {problem}")


def _tensor_numpy(t: torch.Tensor, path: Path, what: str) -> np.ndarray:
    """A tensor of any dtype torch writes as a NumPy array: floats NumPy lacks (or that lose
    digits) as float32, exactly; a dtype without an exact conversion refused by name."""
    if t.is_complex():
        raise _fail(path, f"{what} holds complex numbers ({t.dtype}); {_REAL}")
    t = t.detach().cpu()
    if t.is_quantized:
        t = t.dequantize()  # the float32 values the quantized tensor stands for
    if t.is_floating_point() and t.dtype not in (torch.float32, torch.float64):
        try:
            t = t.float()  # float16 / bfloat16 / float8_*: every value is a float32 exactly
        except (RuntimeError, NotImplementedError, TypeError):
            raise _fail(path, f"{what} holds {t.dtype} values, {_UNSUPPORTED}") from None
    try:
        return t.numpy()
    except (TypeError, RuntimeError):
        raise _fail(path, f"{what} holds {t.dtype} values, {_UNSUPPORTED}") from None


def _as_real(value: Any, path: Path, name: str = "") -> np.ndarray:
    """A real numeric NumPy array, or LoadError naming the dtype."""
    what = f"array {name!r}" if name else "the array"
    if isinstance(value, torch.Tensor):
        value = _tensor_numpy(value, path, what)
    a = np.asarray(value)
    if a.dtype.kind == "c":
        raise _fail(path, f"{what} holds complex numbers ({a.dtype}); {_REAL}")
    if a.dtype.kind not in "biuf":
        raise _fail(path, f"{what} holds {a.dtype} values, not numbers")
    return a


_REAL = "vcreg measures real-valued data: save the real part, the magnitude or both as columns"
_UNSUPPORTED = (
    "which vcreg cannot convert to numbers exactly (supported: float64/32/16, bfloat16, "
    "float8 variants, integers, bool, quantized); save it as float32"
)


def _pick(arrays: dict[str, Any], key: str | None, path: Path) -> tuple[str, Any]:
    keys = list(arrays)
    if not keys:
        raise _fail(path, "holds no arrays")
    if key is not None:
        if key not in arrays:
            raise _fail(path, f"key {key!r} not in the file; it holds {keys} (--key)")
        return key, arrays[key]
    if len(keys) == 1:
        return keys[0], arrays[keys[0]]
    raise _fail(path, f"holds several arrays {keys}; choose one by its key (--key)")


def _read_npy(path: Path) -> np.ndarray:
    with open(path, "rb") as fh:
        magic = fh.read(len(NPY_MAGIC))
    if magic != NPY_MAGIC:
        raise _fail(path, "not a NumPy .npy file (no NumPy header)")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickled" in str(exc) or "Object arrays" in str(exc):
            raise _fail(
                path,
                "holds Python objects (dtype=object), not a numeric array; vcreg never unpickles "
                "data: save a numeric array",
            ) from None
        raise _fail(path, f"not a readable .npy file ({exc})") from None


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not zipfile.is_zipfile(path):
        raise _fail(path, "not a NumPy .npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except ValueError as exc:
        if "pickled" in str(exc) or "Object arrays" in str(exc):
            raise _fail(
                path, "holds Python objects (dtype=object); vcreg never unpickles data"
            ) from None
        raise _fail(path, f"not a readable .npz file ({exc})") from None
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        raise _fail(path, f"not a readable .npz file ({exc})") from None


def _read_csv(path: Path) -> tuple[np.ndarray, list[str] | None]:
    try:
        with open(path, encoding="utf-8-sig") as fh:  # -sig: drop a byte-order mark
            first = fh.readline()
    except UnicodeDecodeError:
        raise _fail(path, "not a text (CSV) file") from None
    header = _csv_header(first)
    try:
        arr = np.loadtxt(
            path, delimiter=",", skiprows=1 if header else 0, ndmin=2, encoding="utf-8-sig"
        )
    except (ValueError, UnicodeDecodeError) as exc:
        raise _fail(path, f"cannot parse as numeric CSV ({exc})") from None
    return arr, header


def _read_pt(path: Path) -> Any:
    with open(path, "rb") as fh:
        head = fh.read(2)
    # torch.save writes a zip archive (or, legacy, a pickle stream starting with PROTO 0x80)
    if not (zipfile.is_zipfile(path) or head[:1] == b"\x80"):
        raise _fail(path, "not a file written by torch.save")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights_only" in str(exc) or "Weights only" in str(exc):
            raise _fail(
                path,
                "holds pickled Python objects, which vcreg refuses to load (weights-only "
                "loading); save a tensor or a dict of tensors with torch.save",
            ) from None
        raise _fail(path, "not a file written by torch.save") from None
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise _fail(path, f"not a file written by torch.save ({type(exc).__name__})") from None


def _pt_arrays(obj: Any, path: Path) -> dict[str, Any]:
    if isinstance(obj, torch.Tensor | np.ndarray):
        return {"": obj}
    if isinstance(obj, dict):
        tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor | np.ndarray)}
        if not tensors:
            raise _fail(path, "holds a dict without tensors")
        return tensors
    raise _fail(path, f"holds a {type(obj).__name__}, not a tensor or a dict of tensors")


def safetensors_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a ``.safetensors`` file (``{}`` when it has none)."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    _check_file(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            return dict(fh.metadata() or {})
    except (SafetensorError, OSError) as exc:
        raise _fail(path, f"not a readable safetensors file ({exc})") from None


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if safetensors_metadata(path).get("format") == "vcreg-encoder":
        raise _fail(
            path,
            "is an encoder written by `vcreg export`, not an array; measure it with "
            "`vcreg measure FILE` or vcreg.trained.measure_trained",
        )
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise _fail(path, f"not a readable safetensors file ({exc})") from None


def _check_file(path: Path) -> None:
    if not path.exists():
        raise LoadError(f"{path}: file not found")
    if not path.is_file():
        raise LoadError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise _fail(path, "is empty (0 bytes)")


def load_array(path: str | Path, key: str | None = None) -> LoadedArray:
    """Read one real numeric array from ``path`` (module docstring for the formats).

    ``key`` names the array in an .npz/.pt/.safetensors file holding several; a file holding
    one needs none. Raises :class:`LoadError` for anything else.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if path.is_dir():
        raise LoadError(f"{path}: a folder, not an array file (use one of {', '.join(SUFFIXES)})")
    if suffix not in SUFFIXES:
        raise _fail(
            path, f"unsupported file type {path.suffix!r}; use one of {', '.join(SUFFIXES)}"
        )
    _check_file(path)
    if suffix == ".npy":
        return LoadedArray(_as_real(_read_npy(path), path), None, None)
    if suffix in (".csv", ".txt"):
        arr, header = _read_csv(path)
        return LoadedArray(_as_real(arr, path), header, None)
    if suffix == ".npz":
        arrays: dict[str, Any] = _read_npz(path)
    elif suffix == ".safetensors":
        arrays = _read_safetensors(path)
    else:
        arrays = _pt_arrays(_read_pt(path), path)
    name, chosen = _pick(arrays, key, path)
    # the other arrays stay as read: their users check them (as_real) only when they use one,
    # so a complex side array does not block measuring the chosen one
    return LoadedArray(_as_real(chosen, path, name), None, None if name == "" else arrays)


def load_matrix(path: str | Path, key: str | None = None) -> np.ndarray:
    """:func:`load_array`, checked to be a non-empty 2-D (n_samples, n_features) matrix;
    returned as float64."""
    path = Path(path)
    arr = load_array(path, key).array
    if arr.ndim != 2:
        raise _fail(path, f"must hold a 2-D (n_samples, n_features) matrix, got shape {arr.shape}")
    if arr.size == 0:
        raise _fail(path, f"holds an empty matrix (shape {arr.shape})")
    return arr.astype(np.float64, copy=False)


def check_finite(array: np.ndarray, path: str | Path) -> None:
    """:class:`LoadError` naming where ``array`` (read from ``path``) holds NaN/Inf: the file's
    own line numbers for a CSV/text file, 0-based rows otherwise."""
    path = Path(path)
    bad = ~np.isfinite(array)
    if not bad.any():
        return
    rows = np.unique(np.nonzero(bad.reshape(len(array), -1))[0])
    n = f"{int(bad.sum())} NaN/Inf value(s) in {rows.size} row(s)"
    if path.suffix.lower() in (".csv", ".txt"):
        lines = _csv_data_lines(path)
        if len(lines) == len(array):
            where = ", ".join(str(lines[r]) for r in rows[:5]) + (" …" if rows.size > 5 else "")
            raise _fail(path, f"{n}: on line(s) {where} of the file; remove or fill them first")
    where = ", ".join(str(r) for r in rows[:5]) + (" …" if rows.size > 5 else "")
    raise _fail(path, f"{n}: 0-based data row(s) {where}; remove or fill them first")


def _csv_data_lines(path: Path) -> list[int]:
    """1-based line numbers of the data rows of a CSV as :func:`_read_csv` reads them (after
    the header, skipping blank and ``#`` comment lines, as ``np.loadtxt`` does)."""
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        lines = fh.readlines()
    start = 2 if lines and _csv_header(lines[0]) is not None else 1
    numbered = enumerate((ln.split("#", 1)[0].strip() for ln in lines), start=1)
    return [i for i, text in numbered if i >= start and text]


def _csv_header(first_line: str) -> list[str] | None:
    """The column names when the first line of a CSV is a header row (not all numbers)."""
    fields = [f.strip() for f in first_line.strip().split(",")]
    try:
        [float(f) for f in fields]
    except ValueError:
        return fields
    return None


def as_real(value: Any, path: str | Path, name: str = "") -> np.ndarray:
    """A side array of a :class:`LoadedArray` (e.g. labels) as a real NumPy array."""
    return _as_real(value, Path(path), name)
