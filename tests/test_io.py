"""vcreg.io: one loader (and one error) for every format and every command."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.numpy import save_file as save_np_safetensors
from safetensors.torch import save_file as save_safetensors

from vcreg.cli import main
from vcreg.io import LoadError, load_array, load_matrix

Z = np.random.default_rng(0).normal(size=(20, 3))


def _write(kind: str, path: Path, z: np.ndarray) -> Path:
    if kind == "npy":
        np.save(path.with_suffix(".npy"), z)
    elif kind == "npz":
        np.savez(path.with_suffix(".npz"), z=z)
    elif kind == "csv":
        np.savetxt(path.with_suffix(".csv"), z, delimiter=",", fmt="%.17g")
    elif kind == "pt":
        torch.save(torch.from_numpy(z), path.with_suffix(".pt"))
    else:
        save_np_safetensors({"z": z}, str(path.with_suffix(".safetensors")))
    return path.with_suffix("." + kind)


@pytest.mark.parametrize("kind", ["npy", "npz", "csv", "pt", "safetensors"])
def test_every_format_reads_back_the_same_numbers(tmp_path: Path, kind):
    got = load_matrix(_write(kind, tmp_path / "z", Z))
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, Z)


def test_csv_header_names_and_npz_side_arrays(tmp_path: Path):
    (tmp_path / "h.csv").write_text("a,b\n1,2\n3,4\n")
    got = load_array(tmp_path / "h.csv")
    assert got.columns == ["a", "b"] and got.array.tolist() == [[1, 2], [3, 4]]
    np.savez(tmp_path / "two.npz", feats=Z, labels=np.arange(20))
    got = load_array(tmp_path / "two.npz", "feats")
    assert set(got.arrays) == {"feats", "labels"}
    with pytest.raises(LoadError, match=r"two\.npz: holds several arrays"):
        load_array(tmp_path / "two.npz")


def test_half_precision_tensors_become_float32(tmp_path: Path):
    torch.save({"z": torch.ones(4, 2, dtype=torch.bfloat16)}, tmp_path / "h.pt")
    assert load_array(tmp_path / "h.pt").array.dtype == np.float32


@pytest.mark.parametrize("kind", ["npy", "npz", "pt", "safetensors"])
def test_complex_input_is_refused_in_every_format(tmp_path: Path, kind):
    zc = Z + 1j * Z
    if kind == "pt":  # torch.save keeps complex; casting it used to drop the imaginary part
        path = tmp_path / "c.pt"
        torch.save(torch.from_numpy(zc), path)
    elif kind == "safetensors":
        path = tmp_path / "c.safetensors"
        try:
            save_safetensors({"z": torch.from_numpy(zc).to(torch.complex64)}, str(path))
        except (TypeError, ValueError, RuntimeError) as exc:  # a safetensors without complex
            pytest.skip(f"this safetensors cannot store complex tensors: {exc}")
    else:
        path = _write(kind, tmp_path / "c", zc)
    with pytest.raises(LoadError, match="complex"):
        load_array(path)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("r.npy", os.urandom(256), "not a NumPy .npy file"),
        ("r.npz", os.urandom(256), "not a NumPy .npz file"),
        ("r.pt", os.urandom(256), "not a file written by torch.save"),
        ("r.safetensors", os.urandom(256), "not a readable safetensors file"),
        ("r.csv", os.urandom(256), "CSV"),
        ("e.npy", b"", r"empty \(0 bytes\)"),
        ("p.pt", pickle.dumps({"a": object()}, protocol=2), "pickled|torch.save"),
        ("s.npy", None, "not numbers"),
        ("o.npy", "object", "Python objects"),
        ("x.bin", b"1234", "unsupported file type"),
    ],
)
def test_bad_files_are_one_error_naming_the_file(tmp_path: Path, name, content, message):
    path = tmp_path / name
    if content is None:
        np.save(path, np.array(["a", "b"]))
    elif content == "object":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    else:
        path.write_bytes(content)
    with pytest.raises(LoadError, match=message) as err:
        load_array(path)
    assert str(err.value).startswith(name)


def test_torch_pickled_objects_are_refused(tmp_path: Path):
    torch.save({"z": torch.zeros(3, 2), "path": Path("x")}, tmp_path / "t.pt")
    with pytest.raises(LoadError, match="weights-only"):
        load_array(tmp_path / "t.pt")


def test_exported_encoder_is_not_an_array(tmp_path: Path):
    save_safetensors(
        {"encoder.w": torch.zeros(2, 2)},
        str(tmp_path / "e.safetensors"),
        {"format": "vcreg-encoder"},
    )
    with pytest.raises(LoadError, match="vcreg export"):
        load_array(tmp_path / "e.safetensors")


def test_matrix_shape_rules(tmp_path: Path):
    np.save(tmp_path / "v.npy", np.arange(5.0))
    with pytest.raises(LoadError, match="2-D"):
        load_matrix(tmp_path / "v.npy")
    with pytest.raises(LoadError, match="file not found"):
        load_matrix(tmp_path / "missing.npy")


@pytest.mark.parametrize(
    ("name", "content"),
    [("r.npy", os.urandom(512)), ("c.pt", "complex"), ("o.npy", "object")],
)
def test_measure_and_ica_give_the_same_loader_error(tmp_path: Path, name, content):
    path = tmp_path / name
    if content == "complex":
        torch.save(torch.randn(40, 3, dtype=torch.complex64), path)
    elif content == "object":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    else:
        path.write_bytes(content)
    with pytest.raises(LoadError) as err:
        load_array(path)
    runner = CliRunner()
    outputs = [
        runner.invoke(main, ["measure", str(path), "--out", str(tmp_path / "m")]),
        runner.invoke(main, ["ica", str(path), "--out", str(tmp_path / "i")]),
    ]
    for res in outputs:
        assert res.exit_code != 0 and "Traceback" not in res.output
        assert str(err.value) in " ".join(res.output.split()), res.output


def _values_as(dtype: torch.dtype) -> torch.Tensor:
    """Small exact values (0, 0.5, 1, 2, 4; integers rounded) as a tensor of ``dtype``."""
    base = torch.tensor([[0.0, 1.0], [2.0, 4.0], [0.5, 1.0]])
    if _quantized(dtype):
        return torch.quantize_per_tensor(base, 0.5, 0, dtype)
    if dtype.itemsize == 1 and ("_x" in str(dtype) or "bits" in str(dtype)):
        return torch.zeros(3, 2, dtype=torch.uint8).view(dtype)  # packed sub-byte types
    if dtype.is_floating_point or dtype.is_complex or dtype == torch.bool:
        return base.to(dtype)
    return base.round().to(dtype)


def _quantized(dtype: torch.dtype) -> bool:
    return str(dtype).startswith(("torch.qint", "torch.quint"))


def _written(dtype: torch.dtype, fmt: str) -> bytes | None:
    """The file torch / safetensors write for a tensor of ``dtype`` (None: they cannot)."""
    import io
    import warnings

    from safetensors.torch import save as save_bytes

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "ComplexHalf support is experimental"
            t = _values_as(dtype)
            if fmt == "safetensors":
                return save_bytes({"z": t})
            buf = io.BytesIO()
            torch.save({"z": t}, buf)
            torch.load(io.BytesIO(buf.getvalue()), weights_only=True)
            return buf.getvalue()
    except Exception:  # noqa: BLE001 - this torch / safetensors cannot write or read it
        return None


WRITTEN = [
    pytest.param(fmt, dtype, id=f"{fmt}-{dtype}")
    for dtype in sorted({v for v in vars(torch).values() if isinstance(v, torch.dtype)}, key=str)
    for fmt in ("safetensors", "pt")
    if _written(dtype, fmt) is not None
]


@pytest.mark.parametrize(("fmt", "dtype"), WRITTEN)
def test_every_dtype_torch_writes_is_read_exactly_or_refused_by_name(tmp_path: Path, fmt, dtype):
    """Every dtype this torch writes (float8 variants, bfloat16, ints, bool, quantized, ...)
    comes back as the same numbers in a NumPy dtype the measures use, or is one LoadError
    naming the dtype -- never a raw TypeError."""
    path = tmp_path / f"t.{fmt}"
    path.write_bytes(_written(dtype, fmt))
    try:
        got = load_array(path).array
    except LoadError as exc:
        assert str(exc).startswith(f"t.{fmt}: ") and "\n" not in str(exc)
        assert str(dtype) in str(exc)
        assert dtype.is_complex or "float4" in str(dtype) or "bits" in str(dtype), str(exc)
        return
    assert got.dtype.kind in "biuf" and got.shape == (3, 2)
    if dtype.is_floating_point or _quantized(dtype):
        assert got.dtype in (np.float32, np.float64)
    ref = _values_as(dtype)
    ref = (ref.dequantize() if ref.is_quantized else ref).to(torch.float64).numpy()
    np.testing.assert_array_equal(got.astype(np.float64), ref)
    np.testing.assert_array_equal(load_matrix(path), ref)


def test_the_dtypes_of_the_issue_are_covered():
    names = {p.id for p in WRITTEN}
    for dtype in ("float8_e4m3fn", "float8_e5m2", "float8_e8m0fnu", "float4_e2m1fn_x2",
                  "bfloat16", "float16", "int8", "uint16", "bool"):  # fmt: skip
        assert f"safetensors-torch.{dtype}" in names


def test_float8_safetensors_measured_from_the_command_line(tmp_path: Path):
    z = torch.from_numpy(np.random.default_rng(1).normal(size=(60, 4))).to(torch.float8_e4m3fn)
    save_safetensors({"z": z}, str(tmp_path / "f8.safetensors"))
    res = CliRunner().invoke(
        main,
        ["measure", str(tmp_path / "f8.safetensors"), "--out", str(tmp_path / "o"),
         "--no-dhsic", "--method", "exact"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_csv_with_a_byte_order_mark(tmp_path: Path, newline: str):
    """Excel's "CSV UTF-8" export starts with a byte-order mark (EF BB BF)."""
    rows = ["a,b,c", "1,2,3", "4,5,6.5"]
    (tmp_path / "h.csv").write_bytes(b"\xef\xbb\xbf" + newline.join(rows).encode() + b"\r\n")
    got = load_array(tmp_path / "h.csv")
    assert got.columns == ["a", "b", "c"]
    np.testing.assert_array_equal(got.array, [[1, 2, 3], [4, 5, 6.5]])
    (tmp_path / "n.csv").write_bytes(b"\xef\xbb\xbf" + newline.join(rows[1:]).encode())
    got = load_array(tmp_path / "n.csv")
    assert got.columns is None
    np.testing.assert_array_equal(got.array, [[1, 2, 3], [4, 5, 6.5]])
