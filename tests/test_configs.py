"""Shipped configs (vcreg.configs): found by name from anywhere; a real file always wins."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from vcreg.cli import main
from vcreg.configs import builtin_configs, resolve
from vcreg.training import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = ROOT / "src" / "vcreg" / "configs"


def test_builtin_configs_are_the_package_files_and_the_repo_link_shows_them():
    names = {p.stem for p in PACKAGE_DIR.glob("*.yaml")}
    assert set(builtin_configs()) == names and "mnist1d_vicreg" in names
    assert {p.name for p in (ROOT / "configs").glob("*.yaml")} == {f"{n}.yaml" for n in names}


@pytest.mark.parametrize("spec", ["mnist1d_wmse", "mnist1d_wmse.yaml", "configs/mnist1d_wmse.yaml"])
def test_names_resolve_outside_the_repository(tmp_path, monkeypatch, spec):
    monkeypatch.chdir(tmp_path)
    assert resolve(spec) == builtin_configs()["mnist1d_wmse"]
    assert TrainConfig.from_yaml(spec, ["epochs=3"]).epochs == 3


def test_a_file_of_that_name_wins_and_other_missing_paths_are_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    data = yaml.safe_load(builtin_configs()["mnist1d_vicreg"].read_text())
    data["epochs"] = 7
    Path("mnist1d_vicreg").write_text(yaml.safe_dump(data))
    assert TrainConfig.from_yaml("mnist1d_vicreg").epochs == 7
    for spec in ("nope", "other/mnist1d_vicreg.yaml"):
        with pytest.raises(FileNotFoundError, match="built-in: cifar10_vicreg"):
            resolve(spec)


def test_cli_lists_configs_and_trains_by_name_errors(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["train", "--list-configs"])
    assert res.exit_code == 0
    listed = [line.split()[0] for line in res.output.splitlines()]
    assert listed == list(builtin_configs())
    res = CliRunner().invoke(main, ["train", "--config", "no_such_config"])
    assert res.exit_code != 0 and "--list-configs" in res.output and "Traceback" not in res.output
