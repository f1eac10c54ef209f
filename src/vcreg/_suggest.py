""" "Did you mean ...?" for a name that is not one of the valid choices (config keys, CLI choices,
dataset splits): the one rule, so that every message suggests the same way."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["did_you_mean"]


def did_you_mean(word: object, choices: Iterable[object], prefix: str = "") -> str:
    """``" (did you mean `epochs`?)"`` for the choice closest to ``word`` (difflib ratio ≥ 0.6,
    case-insensitive), ``""`` when none is close. ``prefix`` is prepended to the suggestion
    (``"optimizer."`` for a nested config key)."""
    names = {str(c).lower(): str(c) for c in choices}
    close = difflib.get_close_matches(str(word).lower(), list(names), n=1, cutoff=0.6)
    return f" (did you mean `{prefix}{names[close[0]]}`?)" if close else ""
