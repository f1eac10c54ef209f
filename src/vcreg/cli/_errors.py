"""How every ``vcreg`` command reports a failure: one line with the cause, exit status 1.

Errors the commands anticipate are ``click.ClickException``-s already; anything else that
escapes a command (a full disk, a file-size limit, an unexpected library error) is turned into
``Error: <cause>`` plus a hint to rerun with ``vcreg --debug`` — which re-raises it with its
traceback instead.

Warnings: each is printed once, as one ``warning: <message>`` line on stderr (the only channel:
library code never prints a warning itself). Warnings that are internals of the libraries vcreg
uses — NumPy's floating-point ``RuntimeWarning`` ("invalid value encountered in divide"),
tqdm's, NumPy's and SciPy's own warning classes, deprecation notices from outside vcreg — say
nothing a user can act on, so they are not shown; ``vcreg --debug`` shows every warning with its
category and origin.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import click

from vcreg._suggest import did_you_mean

__all__ = ["Choice", "one_line", "as_click_error", "one_line_warnings", "is_internal_warning"]

# NumPy's floating-point error messages ("divide by zero encountered in log", ...) and its
# reductions of empty or too-short slices
_NUMPY_FLOAT = re.compile(
    r"encountered in|^Mean of empty slice|^Degrees of freedom <= 0|^invalid value|"
    r"^divide by zero|^overflow|^underflow"
)
# packages whose own warning classes are about their internals
_INTERNAL_PACKAGES = ("numpy", "scipy", "tqdm")
_VCREG = str(Path(__file__).resolve().parents[1])


class Choice(click.Choice):
    """``click.Choice`` whose error suggests the closest choice ("did you mean `quick`?")."""

    def convert(self, value, param, ctx):
        try:
            return super().convert(value, param, ctx)
        except click.BadParameter as exc:
            hint = did_you_mean(value, self.choices)
            if hint:
                exc.message = f"{exc.message.rstrip('.')}{hint}"
            raise


def one_line(exc: BaseException) -> str:
    """``exc`` as a single line naming the cause."""
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
        if exc.filename and str(exc.filename) not in text:
            text = f"{exc.filename}: {text}"
    else:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def as_click_error(exc: Exception) -> click.ClickException:
    return click.ClickException(f"{one_line(exc)} (run `vcreg --debug ...` for the traceback)")


def is_internal_warning(category: type[Warning], message: str, filename: str = "") -> bool:
    """Whether a warning is an internal of a library vcreg uses (module docstring)."""
    if category.__module__.split(".")[0] in _INTERNAL_PACKAGES:
        return True
    if category is RuntimeWarning and _NUMPY_FLOAT.search(message):
        return True
    deprecation = (DeprecationWarning, PendingDeprecationWarning, FutureWarning)
    return issubclass(category, deprecation) and not str(filename).startswith(_VCREG)


def one_line_warnings(ctx: click.Context) -> None:
    """Show each warning once as ``warning: <message>`` for the rest of this command, internal
    ones only with ``--debug`` (restored after)."""
    previous = warnings.showwarning
    debug = bool(ctx.params.get("debug"))
    shown: set[tuple[type, str]] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = str(message)
        if (category, text) in shown:
            return
        shown.add((category, text))
        if debug:
            click.echo(f"warning: {category.__name__}: {text} ({filename}:{lineno})", err=True)
        elif not is_internal_warning(category, text, filename):
            click.echo(f"warning: {text}", err=True)

    warnings.showwarning = show
    ctx.call_on_close(lambda: setattr(warnings, "showwarning", previous))
