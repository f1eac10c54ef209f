"""The data a reproduction reads from files: found, missing, and where it comes from.

MNIST-1D is generated and Fashion-MNIST is found by its loader (C4 skips it when absent, saying
so); CIFAR-10 and CIFAR-10-C (the ``paper`` preset) are read from ``--data-root``
(:mod:`vcreg.data.cifar`: layout, checks, where the files come from). Before any unit runs:

* :func:`resolve_ood_sources` fixes ``ood_source="auto"`` of every CIFAR setup to what the root
  holds — ``"cifar-c"``, or ``"generated"`` with a loud note — so the OOD source is part of each
  training unit's key: units measured on generated corruptions are never reused once CIFAR-10-C
  is in place;
* :func:`missing_for_units` lists what a process lacks to compute its units (each rank of a
  ``torchrun`` job checks its own machine, :mod:`vcreg.experiments.placement`);
* :func:`data_status` says, per dataset, what was found (``--estimate``, the report header).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from vcreg.data import find_cifar_files
from vcreg.data.cifar import CIFAR_SPECS
from vcreg.data.images import cifar_ood_set_names, data_root
from vcreg.experiments.report import Block, Paragraph

__all__ = [
    "data_blocks",
    "data_status",
    "describe_data",
    "missing_for_units",
    "resolve_ood_sources",
    "training_setups",
]


def _root(root: str | Path | None) -> Path:
    return Path(root).expanduser() if root is not None else data_root()


def training_setups(settings: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every training setup in resolved per-claim settings (C2's, the copies C3/C4 hold, the
    image domains)."""
    for claim in settings.values():
        for s in (claim, claim.get("train") or {}):
            for setup in (s, s.get("image") or {}):
                if "dataset" in setup:
                    yield setup


def _cifar_ood(setup: dict[str, Any], root: Path) -> tuple[list[str], str, Path] | None:
    """``(OOD set names, source, CIFAR-C folder)`` of a CIFAR setup with OOD sets (None
    otherwise); source "cifar-c" with no names when CIFAR-C is required but absent."""
    opts = setup.get("data_options") or {}
    if setup["dataset"] not in CIFAR_SPECS or not opts.get("ood"):
        return None
    try:
        return cifar_ood_set_names(setup["dataset"], root, opts)
    except FileNotFoundError:  # ood_source="cifar-c" and no CIFAR-C folder
        return [], "cifar-c", find_cifar_files(setup["dataset"], root, opts.get("ood_path")).c_path


def resolve_ood_sources(settings: dict[str, Any], root: str | Path | None) -> list[str]:
    """Replace ``ood_source="auto"`` of every CIFAR setup (in place) by the source ``root``
    gives; returns the loud notes (CIFAR-C absent: generated corruptions instead)."""
    notes: list[str] = []
    for setup in training_setups(settings):
        found = _cifar_ood(setup, _root(root))
        opts = setup.get("data_options") or {}
        if found is None or opts.get("ood_source", "auto") != "auto":
            continue
        _, source, c_dir = found
        opts["ood_source"] = source
        spec = CIFAR_SPECS[setup["dataset"]]
        note = (
            f"{spec.c_folder} not found at {c_dir}: out-of-domain accuracy is measured on "
            f"vcreg's generated corruptions, not the {spec.c_folder} benchmark (not comparable "
            f"with published {spec.c_folder} numbers). Get {spec.c_folder}.tar from {spec.c_url} "
            f"and extract it into {c_dir.parent}"
        )
        if source == "generated" and note not in notes:
            notes.append(note)
    return notes


def _cifar_status(name: str, root: Path, setup: dict[str, Any]) -> dict[str, Any]:
    files = find_cifar_files(name, root)
    spec = CIFAR_SPECS[name]
    out: dict[str, Any] = {
        "dataset": spec.title,
        "root": str(root),
        "found": files.source is not None and not files.missing,
        "path": str(files.path) if files.path is not None else None,
        "format": files.source,
        "missing": [str(root / f) for f in files.missing],
    }
    ood = _cifar_ood(setup, root)
    if ood is not None:
        names, source, c_dir = ood
        wanted = sorted({n.rsplit("-", 1)[0] for n in names}) if source == "cifar-c" else []
        c_missing = [
            str(c_dir / f)
            for f in files.c_missing
            if f == "labels.npy" or f.removesuffix(".npy") in wanted
        ]
        out["ood"] = {
            "source": source,
            "path": str(c_dir),
            "sets": len(names),
            "missing": c_missing if files.c_found else [str(c_dir / "labels.npy")],
        }
    out["where_to_get"] = files.where_to_get()
    return out


def data_status(settings: dict[str, Any], root: str | Path | None) -> list[dict[str, Any]]:
    """Per dataset the settings read: ``dataset``, ``found``, ``path``, ``missing`` (full paths)
    and, for CIFAR with OOD sets, ``ood`` (``source``, ``path``, ``sets``, ``missing``) and
    ``where_to_get``. Generated datasets: ``found`` True, ``format`` "generated"."""
    seen: dict[str, dict[str, Any]] = {}
    for setup in training_setups(settings):
        name = setup["dataset"]
        if name in seen:
            continue
        if name in CIFAR_SPECS:
            seen[name] = _cifar_status(name, _root(root), setup)
        elif name == "mnist1d":
            seen[name] = {"dataset": "MNIST-1D", "found": True, "format": "generated"}
        else:
            seen[name] = {"dataset": name, "found": None, "format": "read by its loader"}
    return list(seen.values())


def missing_for_units(units: list[Any], root: str | Path | None) -> list[str]:
    """What this process lacks to compute ``units`` (training units reading CIFAR files): one
    line per dataset, naming the missing files and where they come from; [] when complete."""
    problems: list[str] = []
    for unit in units:
        data = (unit.params.get("config") or {}).get("data") or {}
        name = data.get("name")
        if name not in CIFAR_SPECS:
            continue
        setup = {"dataset": name, "data_options": data.get("options") or {}}
        st = _cifar_status(name, _root(root), setup)
        gaps = [] if st["found"] else list(st["missing"])
        if st.get("ood", {}).get("source") == "cifar-c":
            gaps += st["ood"]["missing"]
        if gaps:
            line = (
                f"{CIFAR_SPECS[name].title} data incomplete under {st['root']}: missing "
                f"{', '.join(gaps[:6])}{f' and {len(gaps) - 6} more' if len(gaps) > 6 else ''}. "
                f"{st['where_to_get']}"
            )
            if line not in problems:
                problems.append(line)
    return problems


def describe_data(status: list[dict[str, Any]]) -> str:
    """One sentence on the datasets read from files (for the report header); "" for none."""
    parts = []
    for d in status:
        if d.get("format") not in ("npz", "batches") and "root" not in d:
            continue
        where = f"{d['path']} ({d['format']})" if d["found"] else f"missing under {d['root']}"
        text = f"{d['dataset']} from {where}"
        ood = d.get("ood")
        if ood:
            text += (
                f"; out-of-domain: {d['dataset']}-C from {ood['path']} ({ood['sets']} sets)"
                if ood["source"] == "cifar-c"
                else "; out-of-domain: vcreg's generated corruptions"
            )
        parts.append(text)
    return ("Data read from files: " + "; ".join(parts) + ".") if parts else ""


def data_blocks(data: dict[str, Any]) -> list[Block]:
    """Report paragraphs: where the file datasets came from, and (loudly) what stood in for a
    missing one (``results["data"]``)."""
    text = describe_data(data.get("datasets") or [])
    out: list[Block] = [Paragraph(text)] if text else []
    return out + [Paragraph(f"⚠️ **Data:** {note}.") for note in data.get("notes") or []]
