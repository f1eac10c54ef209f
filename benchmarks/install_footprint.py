"""What `pip install -e .` costs on this machine: install time and venv size, CUDA vs CPU torch.

1. A fresh clone's set-up command, timed: ``python3 -m venv .venv && .venv/bin/pip install
   --no-cache-dir -e .`` in a temporary clone of this repository (pip's index as configured on
   the machine; torch from PyPI is the CUDA build, which pulls the ``nvidia-*`` libraries and
   triton). The venv's size, and the part of it that only a CUDA build needs (``nvidia/``,
   ``triton/``, ``cuda/``, and torch's own CUDA libraries: the torch folder's size above that of
   the CPU build).
2. The CPU build of torch, alone in a fresh venv: ``--cpu-wheel`` (a local wheel file) or
   ``--cpu-index`` (an index such as PyTorch's CPU index); its torch folder and venv size.

Writes ``benchmarks/results/install_footprint.json`` with the sizes (bytes), times (s), the
wheels used and the load average before and after (the machine may be shared).

    python benchmarks/install_footprint.py --cpu-wheel /opt/wheels/torch-2.13.0+cpu-....whl
    python benchmarks/install_footprint.py --cpu-index https://download.pytorch.org/whl/cpu
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SITE = Path("lib/python3.11/site-packages")
CUDA_ONLY = ("nvidia", "triton", "cuda")  # folders that only the CUDA build of torch brings


def size(path: Path) -> int:
    """Bytes of the files under ``path`` (as ``du -sb``; 0 when missing)."""
    if not path.exists():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _timed(cmd: str, cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(["bash", "-c", cmd], cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def _torch_version(venv: Path) -> str:
    out = subprocess.run(
        [str(venv / "bin/python"), "-c", "import torch; print(torch.__version__)"],
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def cuda_install(tmp: Path) -> dict:
    clone = tmp / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    cmd = "python3 -m venv .venv && .venv/bin/pip install -q --no-cache-dir -e ."
    seconds = _timed(cmd, clone)
    venv = clone / ".venv"
    site = venv / SITE
    return {
        "command": cmd,
        "install_s": seconds,
        "torch": _torch_version(venv),
        "venv_bytes": size(venv),
        "torch_bytes": size(site / "torch"),
        **{f"{name}_bytes": size(site / name) for name in CUDA_ONLY},
    }


def cpu_install(tmp: Path, wheel: str | None, index: str | None) -> dict:
    venv = tmp / "cpu"
    what = wheel if wheel else f"torch --index-url {index}"
    cmd = f"python3 -m venv {venv} && {venv}/bin/pip install -q --no-cache-dir {what}"
    seconds = _timed(cmd, tmp)
    return {
        "command": cmd,
        "install_s": seconds,
        "torch": _torch_version(venv),
        "venv_bytes": size(venv),
        "torch_bytes": size(venv / SITE / "torch"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--cpu-wheel", help="a CPU torch wheel file")
    src.add_argument("--cpu-index", help="an index serving CPU torch wheels")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/install_footprint.json")
    a = ap.parse_args()
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        cuda = cuda_install(Path(tmp))
        cpu = cpu_install(Path(tmp), a.cpu_wheel, a.cpu_index)
    cuda_only = (
        sum(cuda[f"{n}_bytes"] for n in CUDA_ONLY) + cuda["torch_bytes"] - cpu["torch_bytes"]
    )
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    result = {
        "commit": commit.stdout.strip() or None,
        "load_average_before": load,
        "load_average_after": os.getloadavg(),
        "cuda_build": cuda,
        "cpu_build": cpu,
        "cuda_only_bytes": cuda_only,
        "cpu_venv_bytes_estimate": cuda["venv_bytes"] - cuda_only,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    gb = 1e9
    print(
        f"pip install -e . ({cuda['torch']}): {cuda['install_s'] / 60:.1f} min, venv "
        f"{cuda['venv_bytes'] / gb:.2f} GB, of which CUDA-only {cuda_only / gb:.2f} GB; torch "
        f"{cpu['torch']} alone: {cpu['torch_bytes'] / gb:.2f} GB (CUDA build "
        f"{cuda['torch_bytes'] / gb:.2f} GB); CPU venv about "
        f"{result['cpu_venv_bytes_estimate'] / gb:.2f} GB (load {load[0]:.1f}); wrote {a.out}"
    )


if __name__ == "__main__":
    main()
