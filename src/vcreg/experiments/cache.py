"""On-disk cache of experiment work units, so an interrupted ``vcreg reproduce`` resumes.

Layout: ``<out>/cache/<namespace>/<key>.json`` where ``key`` is a SHA-256 of the unit's
parameters (canonical JSON) and the cache format version. Each file holds
``{"namespace", "params", "value", "seconds", "created"}``. Writes are atomic (temporary file,
then ``os.replace``), so a crash never leaves a truncated entry; an unreadable entry is treated
as missing and recomputed.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from vcreg._io import atomic_write_text, json_digest

__all__ = ["UnitCache", "cache_key", "atomic_write_text", "to_jsonable"]

CACHE_FORMAT = 1


def to_jsonable(obj: Any) -> Any:
    """Convert numpy / torch scalars and arrays, tuples and paths to plain JSON types."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy arrays/scalars, torch tensors
        return to_jsonable(obj.tolist())
    if isinstance(obj, float) and obj != obj:
        return None  # NaN -> null (strict JSON)
    return obj


def cache_key(namespace: str, params: dict[str, Any]) -> str:
    """Stable key of a unit: SHA-256 of the canonical JSON of its namespace and parameters."""
    unit = {"format": CACHE_FORMAT, "namespace": namespace, "params": to_jsonable(params)}
    return json_digest(unit, 24, separators=(",", ":"))


class UnitCache:
    """Cache of JSON-serialisable unit results under ``root``; ``force`` ignores existing entries."""

    def __init__(self, root: str | Path, force: bool = False) -> None:
        self.root = Path(root)
        self.force = bool(force)
        self._fresh: set[Path] = set()  # written in this session: valid even with ``force``

    def path(self, namespace: str, params: dict[str, Any]) -> Path:
        if not namespace or "/" in namespace or namespace.startswith("."):
            raise ValueError(f"invalid cache namespace {namespace!r}")
        return self.root / namespace / f"{cache_key(namespace, params)}.json"

    def contains(self, namespace: str, params: dict[str, Any]) -> bool:
        return self.get(namespace, params) is not None

    def get(self, namespace: str, params: dict[str, Any]) -> dict[str, Any] | None:
        """The stored record (``value``, ``seconds``, ...) or ``None``.

        With ``force``, only entries written by this cache object (this run) count.
        """
        path = self.path(namespace, params)
        if self.force and path not in self._fresh:
            return None
        return self._read(path)

    def put(
        self, namespace: str, params: dict[str, Any], value: Any, seconds: float
    ) -> dict[str, Any]:
        record = {
            "namespace": namespace,
            "params": to_jsonable(params),
            "value": to_jsonable(value),
            "seconds": float(seconds),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        path = self.path(namespace, params)
        atomic_write_text(path, json.dumps(record, indent=1))
        self._fresh.add(path)
        return record

    @staticmethod
    def _read(path: Path) -> dict[str, Any] | None:
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) and "value" in record else None
