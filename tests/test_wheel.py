"""vcreg installed from its wheel works outside the repository (configs ship as package data).

The wheel is built from a copy of the sources (no stale ``build/`` of the checkout can leak into
it; ``pip wheel --no-deps --no-build-isolation`` when this environment has the build backend,
so nothing is downloaded), installed with ``--no-deps``
into a fresh venv whose only other packages are those of the test's environment (a ``.pth``
line, like ``--system-site-packages``: torch is not downloaded again), and run from an empty
folder with no PYTHONPATH, so nothing of the checkout is importable.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow  # building, installing and two short runs: ~2-3 min on 2 cores


def _sh(cmd: list[str], cwd: Path, env: dict | None = None, timeout: int = 600) -> str:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{cmd}\n{out.stdout[-2000:]}\n{out.stderr[-4000:]}"
    return out.stdout


def _can_build_here() -> bool:
    """This environment has the build backend pyproject.toml asks for (else pip fetches it)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        major, minor = (int(p) for p in version("setuptools").split(".")[:2])
    except (PackageNotFoundError, ValueError):
        return False
    has_wheel = importlib.util.find_spec("wheel") is not None
    return major >= 68 and ((major, minor) >= (70, 1) or has_wheel)  # bdist_wheel built in


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict, Path]:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src_copy"
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    shutil.copytree(ROOT / "src", src / "src", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "-q", "-w", str(tmp)]
    _sh(pip + (["--no-build-isolation"] if _can_build_here() else []), src)
    wheel = next(tmp.glob("vcreg-*.whl"))
    venv = tmp / "venv"
    _sh([sys.executable, "-m", "venv", str(venv)], tmp)
    py = venv / "bin" / "python"
    _sh([str(py), "-m", "pip", "install", "--no-deps", "--no-index", "-q", str(wheel)], tmp)
    purelib = _sh([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp)
    # the test environment's packages (torch, ...) after the venv's own: its vcreg stays hidden
    # (an editable install is a .pth of that folder, which a .pth line does not process)
    (Path(purelib.strip()) / "_test_env.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    empty = tmp / "empty"
    empty.mkdir()
    return venv, env, empty


def test_installed_package_is_the_wheel(installed):
    venv, env, empty = installed
    where = _sh(
        [str(venv / "bin" / "python"), "-c", "import vcreg; print(vcreg.__file__)"], empty, env
    )
    assert where.strip().startswith(str(venv))
    names = _sh([str(venv / "bin" / "vcreg"), "train", "--list-configs"], empty, env)
    assert "mnist1d_vicreg" in names and "fashionmnist_vicreg" in names


def test_train_measure_and_reproduce_from_an_empty_folder(installed):
    venv, env, empty = installed
    vcreg = str(venv / "bin" / "vcreg")
    # the command as written (mnist1d_vicreg's 2 warm-up epochs are clamped to 1)
    _sh([vcreg, "train", "--config", "mnist1d_vicreg", "--set", "epochs=1", "--out", "run",
         "--no-progress"], empty, env)  # fmt: skip
    assert (empty / "run" / "checkpoint.pt").is_file()
    _sh([vcreg, "measure", "run", "--no-dhsic", "--max-samples", "200", "--out", "m"], empty, env)
    rep = json.loads((empty / "m" / "independence.json").read_text())
    assert rep["input"]["n_features"] == 128 and rep["input"]["n_samples_used"] == 200
    _sh([vcreg, "reproduce", "--preset", "tiny", "--out", "rep"], empty, env, timeout=900)
    assert (empty / "rep" / "report.md").is_file() and (empty / "rep" / "results.json").is_file()
