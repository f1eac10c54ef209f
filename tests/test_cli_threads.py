"""The OpenMP wait policy is set once, by the CLI entry point, for every command."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

CODE = "import os, sys; import vcreg.cli; import torch; print(os.environ.get('OMP_WAIT_POLICY'))"


def _policy_seen(env_value: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if env_value is not None:
        env["OMP_WAIT_POLICY"] = env_value
    res = subprocess.run(
        [sys.executable, "-c", CODE], env=env, capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def test_entry_point_sets_passive_waits_before_torch():
    assert _policy_seen(None) == "PASSIVE"


@pytest.mark.parametrize("user", ["ACTIVE"])
def test_user_choice_is_kept(user):
    assert _policy_seen(user) == user


def test_commands_do_not_set_it_themselves():
    # one owner: the rule lives in vcreg/cli/__init__.py only
    from pathlib import Path

    cli = Path(__file__).resolve().parents[1] / "src" / "vcreg" / "cli"
    owners = [p.name for p in sorted(cli.glob("*.py")) if "OMP_WAIT_POLICY" in p.read_text()]
    assert owners == ["__init__.py"]
