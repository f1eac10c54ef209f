"""The example training configs shipped with vcreg (``<name>.yaml`` in this package) and the one
rule for finding a config: :func:`resolve`.

The YAML files are package data, so an installed vcreg (a wheel, outside the repository) has them;
in a clone, the top-level ``configs/`` folder is a link to this one.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["builtin_configs", "describe", "resolve"]

SUFFIX = ".yaml"


def builtin_configs() -> dict[str, Path]:
    """``{name: path}`` of the shipped configs, sorted by name."""
    folder = resources.files(__name__)
    found = {
        entry.name[: -len(SUFFIX)]: Path(str(entry))
        for entry in folder.iterdir()
        if entry.name.endswith(SUFFIX)
    }
    return dict(sorted(found.items()))


def describe(path: Path) -> str:
    """The first comment line of a config file (its one-line description)."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
        if line.strip():
            break
    return ""


def resolve(spec: str | Path) -> Path:
    """The config file ``spec`` names: an existing file wins; otherwise a built-in config of
    that name (``mnist1d_vicreg``, ``mnist1d_vicreg.yaml`` or ``configs/mnist1d_vicreg.yaml``);
    else ``FileNotFoundError`` listing the built-in names."""
    path = Path(spec)
    if path.is_file():
        return path
    builtin = builtin_configs()
    name = path.name[: -len(SUFFIX)] if path.name.endswith(SUFFIX) else path.name
    # a bare name, or the docs' `configs/<name>.yaml` (the repository's link to this folder), falls
    # back to the shipped config; any other path to a missing file is an error
    if path.parts[:-1] in ((), ("configs",)) and name in builtin:
        return builtin[name]
    raise FileNotFoundError(
        f"config file not found: {spec} (and no built-in config of that name; built-in: "
        f"{', '.join(builtin)}; list them with `vcreg train --list-configs`)"
    )
