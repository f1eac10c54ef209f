"""``vcreg export RUN --out encoder.safetensors [--projector] [--overwrite]``.

Writes the run's encoder weights (safetensors) and ``encoder.json`` (its config) beside them;
load back with ``vcreg.models.load_encoder("encoder.safetensors")``.
"""

from __future__ import annotations

import click

from vcreg.cli._errors import Choice


@click.command("export")
@click.argument("run_dir", type=click.Path(file_okay=False))
@click.option(
    "--format",
    "fmt",
    type=Choice(["safetensors"]),
    default="safetensors",
    show_default=True,
    help="Weights format.",
)
@click.option(
    "--out",
    "-o",
    default="encoder.safetensors",
    show_default=True,
    type=click.Path(dir_okay=False),
    help="Weights file; the config JSON goes beside it (same name, .json).",
)
@click.option("--projector", is_flag=True, help="Include the projector's weights too.")
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
@click.option(
    "--no-progress",
    is_flag=True,
    help="Accepted as by every vcreg command (export draws no progress bar).",
)
def export(run_dir, fmt, out, projector, overwrite, no_progress) -> None:
    """Export a trained run's encoder (optionally + projector) with its config.

    Reads RUN_DIR under its lock in shared mode: refused while `vcreg train` or `vcreg evaluate`
    writes there."""
    from vcreg._lock import FolderLockedError
    from vcreg.export import export_run

    try:
        res = export_run(run_dir, out, fmt=fmt, projector=projector, overwrite=overwrite)
    except (ValueError, FileNotFoundError, FileExistsError, FolderLockedError) as exc:
        raise click.ClickException(str(exc)) from None
    enc = res["encoder"]
    click.echo(
        f"wrote {res['files']['weights']} ({enc['name']}, input {tuple(enc['input_shape'])} -> "
        f"{enc['repr_dim']}, epoch {res['source']['epoch']}"
        f"{', with projector' if projector else ''}) and {res['files']['config']}"
    )
