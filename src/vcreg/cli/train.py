"""``vcreg train`` and ``vcreg evaluate``.

``vcreg train --config configs/mnist1d_vicreg.yaml|mnist1d_vicreg [--set key=value ...]
[--out runs/NAME] [--resume]`` (``vcreg train --list-configs``: the shipped configs); under ``torchrun --nproc_per_node=N -m vcreg train ...`` it trains with DDP.
``vcreg evaluate RUN_DIR`` writes ``RUN_DIR/eval.json``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click


def _list_configs(ctx: click.Context, _param, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from vcreg.configs import builtin_configs, describe

    for name, path in builtin_configs().items():
        click.echo(f"{name:<22} {describe(path)}")
    ctx.exit()


@click.command("train")
@click.option(
    "--config",
    "-c",
    "config_path",
    type=click.Path(dir_okay=False),
    help="YAML config file, or the name of a shipped one (see --list-configs), e.g. "
    "mnist1d_vicreg. Optional with --resume (the run's own config).",
)
@click.option(
    "--list-configs",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=_list_configs,
    help="List the shipped configs (names for --config) and exit.",
)
@click.option(
    "--set",
    "-s",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config value, e.g. --set optimizer.lr=3e-3 --set epochs=10.",
)
@click.option(
    "--out",
    "-o",
    "out_dir",
    type=click.Path(file_okay=False),
    help="Run folder (default runs/<config name>).",
)
@click.option("--resume", is_flag=True, help="Continue the run in --out from its checkpoint.")
@click.option(
    "--use-previous",
    is_flag=True,
    help="With --resume: if checkpoint.pt is unreadable, resume from checkpoint.prev.pt.",
)
@click.option(
    "--no-progress",
    is_flag=True,
    help="No progress bar: one line per epoch instead (also when not on a terminal).",
)
def train(config_path, overrides, out_dir, resume, use_previous, no_progress) -> None:
    """Self-supervised training of an encoder + projector (VICReg/VCReg/Barlow/W-MSE)."""
    from vcreg._lock import FolderLockedError
    from vcreg.training import CheckpointError, TrainConfig, TrainingDivergedError
    from vcreg.training import train as run_train
    from vcreg.training.checkpoint import peek_for_resume

    if use_previous and not resume:
        raise click.UsageError("--use-previous only makes sense with --resume")
    try:
        if config_path is None:
            if not (resume and out_dir):
                raise click.UsageError("--config is required (or --resume with --out RUN_DIR)")
            state = peek_for_resume(Path(out_dir) / "checkpoint.pt", use_previous)
            cfg = TrainConfig.from_dict(dict(state["config"]))
            if overrides:
                cfg = cfg.replace(list(overrides))
        else:
            cfg = TrainConfig.from_yaml(config_path, list(overrides))
        if out_dir is None:
            name = cfg.name or (Path(config_path).stem if config_path else "run")
            out_dir = str(Path("runs") / name)
        resume = "previous" if use_previous else resume
        progress = "log" if no_progress else "auto"
        result = run_train(cfg, out_dir=out_dir, resume=resume, progress=progress)
    except (
        ValueError,
        FileNotFoundError,
        FileExistsError,
        CheckpointError,
        TrainingDivergedError,
        FolderLockedError,
    ) as exc:
        raise click.ClickException(str(exc)) from None
    if result.extra.get("world_size", 1) > 1 and int(os.environ.get("RANK", "0")) != 0:
        return
    final = result.final_metrics
    if result.status == "interrupted":
        click.echo(
            f"interrupted after {result.epochs_completed}/{cfg.epochs} epochs; resume "
            f"with: vcreg train --out {out_dir} --resume",
            err=True,
        )
        sys.exit(130)
    click.echo(
        f"done: {result.epochs_completed} epochs in {result.wall_time_s:.1f} s on "
        f"{result.device}; final loss {final.get('loss', float('nan')):.4f}; run folder "
        f"{out_dir} (evaluate with: vcreg evaluate {out_dir})"
    )


@click.command("evaluate")
@click.argument("run_dir", type=click.Path())
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N.")
@click.option("--no-ood", is_flag=True, help="Skip the out-of-domain test sets.")
@click.option("--overwrite", is_flag=True, help="Replace an existing eval.json.")
@click.option(
    "--data-root",
    type=click.Path(file_okay=False),
    help="Exported encoder only: the folder of its dataset (default: the dataset's usual place; "
    "never a folder named in the file).",
)
@click.option(
    "--data-samples",
    type=click.IntRange(min=20),
    help="Exported MNIST-1D encoder only: signals to generate (default 5000; never the file's).",
)
@click.option("--no-progress", is_flag=True, help="No progress messages.")
def evaluate(run_dir, device, no_ood, overwrite, data_root, data_samples, no_progress) -> None:
    """Linear probe (in-domain + out-of-domain accuracy) and independence of a trained run.

    RUN_DIR is a run folder (writes RUN_DIR/eval.json; refused while `vcreg train` or another
    command holds the folder's lock) or an encoder written by `vcreg export` (NAME.safetensors:
    evaluated on its run's dataset, read from --data-root or the dataset's usual place, writes
    NAME.eval.json).
    """
    from vcreg._lock import FolderLockedError
    from vcreg.export import evaluate_exported
    from vcreg.training import CheckpointError, evaluate_run

    exported = Path(run_dir).suffix == ".safetensors"
    extra = {"data_root": data_root, "num_samples": data_samples} if exported else {}
    if not exported and (data_root or data_samples):
        raise click.BadParameter(
            "applies to an exported encoder (.safetensors); a run folder uses its own config",
            param_hint="--data-root/--data-samples",
        )
    run = evaluate_exported if exported else evaluate_run
    try:
        res = run(
            run_dir,
            device=device,
            ood=False if no_ood else None,
            progress=not no_progress,
            overwrite=overwrite,
            **extra,
        )
    except (
        ValueError,
        FileNotFoundError,
        FileExistsError,
        CheckpointError,
        FolderLockedError,
    ) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"in-domain accuracy: {res['in_domain_acc']:.4f} (train {res['train_acc']:.4f})")
    for name, acc in res["ood_acc"].items():
        click.echo(f"  OOD {name:<24} {acc:.4f}")
    ind = res["independence"]
    click.echo(
        "independence: "
        + json.dumps({k: round(v, 6) if isinstance(v, float) else v for k, v in ind.items()})
    )
    if exported:
        src = res["source"]
        click.echo(f"wrote {res['file']} (exported from {src['run_dir']}, epoch {src['epoch']})")
        return
    ck = res["checkpoint"]
    click.echo(
        f"wrote {Path(run_dir) / 'eval.json'} (checkpoint at epoch {ck['epoch']}"
        + (f", step {ck['step']}" if ck["step"] else "")
        + f"{'' if ck['complete'] else ', run incomplete'}; sha256 {ck['sha256'][:12]}…)"
    )
