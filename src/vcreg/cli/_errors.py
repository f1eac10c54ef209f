"""How every ``vcreg`` command reports a failure: one line with the cause, exit status 1.

Errors the commands anticipate are ``click.ClickException``-s already; anything else that
escapes a command (a full disk, a file-size limit, an unexpected library error) is turned into
``Error: <cause>`` plus a hint to rerun with ``vcreg --debug`` — which re-raises it with its
traceback instead. Warnings are printed as one ``warning: <message>`` line on stderr.
"""

from __future__ import annotations

import warnings

import click

__all__ = ["one_line", "as_click_error", "one_line_warnings"]


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


def one_line_warnings(ctx: click.Context) -> None:
    """Show warnings as ``warning: <message>`` for the rest of this command (restored after)."""
    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        click.echo(f"warning: {message}", err=True)

    warnings.showwarning = show
    ctx.call_on_close(lambda: setattr(warnings, "showwarning", previous))
