"""The OpenMP wait policy: set once, by ``import vcreg`` (before torch), for the library and
every command alike; a user's value is kept."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
SEEN = "import os; print(os.environ.get('OMP_WAIT_POLICY'))"


def _policy_seen(code: str, env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if env_value is not None:
        env["OMP_WAIT_POLICY"] = env_value
    res = subprocess.run(
        [sys.executable, "-c", f"{code}; {SEEN}"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


@pytest.mark.parametrize(
    "code",
    [
        "import vcreg; import torch",  # the library (README's snippets import vcreg first)
        "from vcreg.training import TrainConfig",  # a submodule (imports torch itself)
        "import vcreg.cli",  # the command line
    ],
)
def test_importing_vcreg_first_sets_passive_waits(code):
    assert _policy_seen(code, None) == "PASSIVE"


@pytest.mark.parametrize("user", ["ACTIVE"])
def test_user_choice_is_kept(user):
    assert _policy_seen("import vcreg; import vcreg.cli; import torch", user) == user


def test_left_alone_after_torch_is_imported():
    # too late for the OpenMP runtime: setting it then would only make the variable lie
    assert _policy_seen("import torch; import vcreg", None) == "None"


def test_one_owner_of_the_rule():
    owners = [
        str(p.relative_to(SRC))
        for p in sorted(SRC.rglob("*.py"))
        if "OMP_WAIT_POLICY" in p.read_text() and "setdefault" in p.read_text()
    ]
    assert owners == ["vcreg/__init__.py"]
