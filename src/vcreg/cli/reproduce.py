"""``vcreg reproduce``: re-run the paper's claims C1–C5 and write a report."""

from __future__ import annotations

import shlex
import sys
import time

import click

from vcreg.cli._errors import Choice


@click.command("reproduce")
@click.option(
    "--preset",
    type=Choice(["quick", "full", "tiny", "paper"]),
    default="quick",
    show_default=True,
    help="quick: ≤ 10 min on 2 CPU cores; full: statistically meaningful (≈ 1.5 h with --jobs 2, "
    "estimated from measured run costs); "
    "tiny: seconds; paper: the paper's scale on GPUs (CIFAR-10, ResNet-18, projectors up to "
    "8192; see --estimate).",
)
@click.option("--only", default=None, help="Comma-separated subset of claims, e.g. C1,C5.")
@click.option("--seeds", type=click.IntRange(min=1), default=None, help="Seeds per configuration.")
@click.option(
    "--out",
    type=click.Path(file_okay=False),
    default=None,
    help="Output folder  [default: reports/<preset>]",
)
@click.option(
    "--device",
    type=Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
)
@click.option("--force", is_flag=True, help="Recompute everything, ignoring the cache.")
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    default=None,
    help="Training units computed at once, in worker processes  [default: CPU count on cpu "
    "(at most 4), 1 on cuda]",
)
@click.option(
    "--data-root",
    type=click.Path(file_okay=False),
    default=None,
    help="Folder of the datasets read from files (paper: cifar10.npz or cifar-10-batches-py/, "
    "CIFAR-10-C/)  [default: $VCREG_DATA or ~/.cache/vcreg/data]",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="CLAIM.KEY=VALUE",
    help="Override a preset setting, e.g. --set C2.epochs=3 --set C2.widths=[16,32] "
    "(C3 and C4 train on C2's settings).",
)
@click.option(
    "--estimate",
    is_flag=True,
    help="Print the units, the data found or missing, and device-hours per unit and in total "
    "on this hardware (a timed step per model); train nothing.",
)
@click.option(
    "--no-progress",
    is_flag=True,
    help="No progress bar: one line per unit instead (also when not on a terminal).",
)
def reproduce(
    preset: str,
    only: str | None,
    seeds: int | None,
    out: str | None,
    device: str,
    force: bool,
    jobs: int | None,
    data_root: str | None,
    overrides: tuple[str, ...],
    estimate: bool,
    no_progress: bool,
) -> None:
    """Re-run the claims of the VCReg paper and write report.md, report.html, results.json.

    Work is cached per experiment unit under OUT/cache, so an interrupted run resumes. Under
    torchrun (`torchrun --nproc_per_node=N -m vcreg reproduce ...`) the units are placed on the
    job's ranks, one device each, and rank 0 writes the report.
    """
    from vcreg._lock import FolderLockedError
    from vcreg.experiments import default_jobs, parse_only, run_reproduction
    from vcreg.experiments.presets import parse_overrides

    try:
        parse_only(only)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--only") from None
    try:
        settings = parse_overrides(overrides, preset)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--set") from None
    out = out or f"reports/{preset}"
    if estimate:
        _estimate(preset, only, seeds, settings, device, data_root, out, no_progress)
        return
    if preset == "paper" and (device == "cpu" or not _cuda()):
        click.echo(
            "warning: no GPU here: the paper preset is meant for GPUs (see its cost with "
            "--estimate); running it on the CPU",
            err=True,
        )
    command = "vcreg " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    t0 = time.time()
    try:
        results = run_reproduction(
            preset=preset,
            only=only,
            seeds=seeds,
            out=out,
            device=device,
            force=force,
            progress="log" if no_progress else "auto",
            jobs=jobs if jobs is not None else default_jobs(device),
            command=command if sys.argv[1:2] == ["reproduce"] else None,
            overrides=settings or None,
            data_root=data_root,
        )
    except (ValueError, FileNotFoundError, FolderLockedError) as exc:
        raise click.ClickException(str(exc)) from None
    if "experiments" not in results:  # a torchrun rank other than 0
        click.echo(
            f"rank {results['rank']} ({results['device']}): {results['units']} units computed; "
            "rank 0 writes the report"
        )
        return
    click.echo(f"\nverdicts ({(time.time() - t0) / 60:.1f} min):")
    failed = []
    for claim, e in results["experiments"].items():
        if "error" in e:
            failed.append(claim)
            click.echo(f"  {claim}  ERROR  {e['error']}")
        else:
            stab = f" ({e['stability']})" if e.get("stability") else ""
            line = e["verdict"].get("values", {}).get("parts_line")
            parts = f" [{line}]" if line else ""
            click.echo(
                f"  {claim}  {e['verdict']['status']}{stab}{parts}: {e['verdict']['statistic']}"
            )
            for what in e.get("skipped") or []:
                click.echo(f"  {claim}  SKIPPED: {what}")
    click.echo(f"report: {out}/report.md  (and report.html, results.json)")
    if failed:
        raise click.ClickException(f"experiment(s) {', '.join(failed)} failed; see results.json")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _estimate(preset, only, seeds, overrides, device, data_root, out, no_progress) -> None:
    from vcreg.experiments.estimate import estimate_reproduction, format_estimate

    say = None if no_progress else (lambda msg: click.echo(msg, err=True))
    try:
        est = estimate_reproduction(
            preset,
            only=only,
            seeds=seeds,
            overrides=overrides or None,
            device=device,
            data_root=data_root,
            out=out,
            progress=say,
        )
    except (ValueError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(format_estimate(est))
