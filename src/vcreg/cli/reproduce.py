"""``vcreg reproduce``: re-run the paper's claims C1–C5 and write a report."""

from __future__ import annotations

import shlex
import sys
import time

import click


@click.command("reproduce")
@click.option(
    "--preset",
    type=click.Choice(["quick", "full", "tiny"]),
    default="quick",
    show_default=True,
    help="quick: ≤ 10 min on 2 CPU cores; full: statistically meaningful (≈ 1 h 45 min); tiny: seconds.",
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
    type=click.Choice(["auto", "cpu", "cuda"]),
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
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
def reproduce(
    preset: str,
    only: str | None,
    seeds: int | None,
    out: str | None,
    device: str,
    force: bool,
    jobs: int | None,
    no_progress: bool,
) -> None:
    """Re-run the claims of the VCReg paper and write report.md, report.html, results.json.

    Work is cached per experiment unit under OUT/cache, so an interrupted run resumes.
    """
    from vcreg._lock import FolderLockedError
    from vcreg.experiments import default_jobs, parse_only, run_reproduction

    try:
        parse_only(only)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--only") from None
    out = out or f"reports/{preset}"
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
            progress=not no_progress,
            jobs=jobs if jobs is not None else default_jobs(device),
            command=command if sys.argv[1:2] == ["reproduce"] else None,
        )
    except (ValueError, FolderLockedError) as exc:
        raise click.ClickException(str(exc)) from None
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
