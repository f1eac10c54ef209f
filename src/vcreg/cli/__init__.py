"""The ``vcreg`` command line.

Subcommands live in their own modules under ``vcreg/cli/`` and are loaded lazily.

Threads: every command runs with OpenMP's passive (sleeping) wait policy unless the user set
``OMP_WAIT_POLICY``: the ``vcreg`` package sets it when imported before torch (see
``vcreg/__init__.py``, the one owner of that rule), and this module is imported through it.
"""

from __future__ import annotations

import importlib
import importlib.util

import click

from vcreg import __version__
from vcreg._suggest import did_you_mean
from vcreg.cli._errors import as_click_error, one_line_warnings

# command name -> "module:attribute" of a click.Command
_COMMANDS: dict[str, str] = {
    "measure": "vcreg.cli.measure:measure",
    "ica": "vcreg.cli.ica:ica",
    "train": "vcreg.cli.train:train",
    "evaluate": "vcreg.cli.train:evaluate",
    "reproduce": "vcreg.cli.reproduce:reproduce",
    "export": "vcreg.cli.export:export",
}


def _available(name: str) -> bool:
    return importlib.util.find_spec(_COMMANDS[name].split(":")[0]) is not None


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(n for n in _COMMANDS if _available(n))

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name = args[0] if args else ""
        if name in _COMMANDS or name.startswith("-") or not args:
            return super().resolve_command(ctx, args)
        ctx.fail(f"no such command {name!r}{did_you_mean(name, self.list_commands(ctx))}")

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in _COMMANDS or not _available(cmd_name):
            return None
        module_name, attr = _COMMANDS[cmd_name].split(":")
        return getattr(importlib.import_module(module_name), attr)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:  # one line with the cause; the traceback with --debug
            if ctx.params.get("debug"):
                raise
            raise as_click_error(exc) from None


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="vcreg")
@click.option("--debug", is_flag=True, help="Show the full traceback when a command fails.")
@click.pass_context
def main(ctx: click.Context, debug: bool) -> None:
    """vcreg: Variance-Covariance Regularization for self-supervised learning."""
    one_line_warnings(ctx)
