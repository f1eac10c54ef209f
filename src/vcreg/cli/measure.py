"""``vcreg measure``: pairwise (HSIC) and mutual (dHSIC) independence of saved embeddings.

``vcreg measure embeddings.(npy|npz|pt|csv|safetensors) [--key K] [--labels L] [--out DIR]
[--overwrite]``: loads the matrix (:mod:`vcreg.io`), calls
:func:`vcreg.independence.measure_embeddings`. ``vcreg measure RUN_DIR`` (a training run folder)
or ``vcreg measure encoder.safetensors`` (from ``vcreg export``) ``[--dataset test|train|OOD]
[--layer NAME]``: the split of the run's dataset, encoded (:func:`vcreg.trained.measure_trained`).
Either way it writes its report as ``DIR/independence.json``, the heatmap ``DIR/pairwise_hsic.png`` and
the matrices (``pairwise_hsic.npy``, ``pairwise_nhsic.npy``, ``pairwise_pvalues.npy``). The
result set is published together (``vcreg._results``): an earlier result folder is replaced
only with ``--overwrite``, atomically and without leaving stale files.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import click

from vcreg._progress import bars_enabled
from vcreg._results import check_results_folder, write_results_folder
from vcreg.cli._errors import Choice

RESULT_FILES = (
    "independence.json",
    "pairwise_hsic.png",
    "pairwise_hsic.npy",
    "pairwise_nhsic.npy",
    "pairwise_pvalues.npy",
)


def _load(path: Path, key: str | None, labels: str | None):
    """(embeddings, column names, labels or None) of an array file (vcreg.io)."""
    from vcreg.io import LoadError, as_real, check_finite, load_array

    try:
        got = load_array(path, key)
        check_finite(got.array, path)  # located by the file's own line numbers
    except LoadError as exc:
        raise click.BadParameter(str(exc), param_hint="EMBEDDINGS") from None
    if not labels:
        return got.array, got.columns, None
    try:
        if Path(labels).is_file():
            y = load_array(labels).array
        elif got.arrays is not None and labels in got.arrays:
            y = as_real(got.arrays[labels], path, labels)
        else:
            raise click.BadParameter(
                f"{labels!r} is neither a file nor a key of the embeddings file",
                param_hint="--labels",
            )
    except LoadError as exc:
        raise click.BadParameter(str(exc), param_hint="--labels") from None
    return got.array, got.columns, y


def _bandwidth(value: str) -> str | float:
    if value in ("median", "dhsic"):
        return value
    try:
        v = float(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r}: use 'median', 'dhsic' or a positive number", param_hint="--bandwidth"
        ) from None
    if not v > 0:
        raise click.BadParameter(f"must be positive, got {value}", param_hint="--bandwidth")
    return v


@click.command("measure")
@click.argument("embeddings", type=click.Path(exists=True, path_type=Path))
@click.option("--key", help="Array/tensor name inside an .npz, .pt or .safetensors file.")
@click.option(
    "--labels",
    help="Per-sample class labels (a file, or a key of the .npz/.pt): adds each feature's "
    "normalized HSIC with the labels (delta kernel). For a run folder or an exported encoder: "
    "'labels' (its dataset's classes).",
)
@click.option(
    "--dataset",
    default="test",
    show_default=True,
    help="Run folder / exported encoder only: the split encoded ('test', 'train' or an OOD set).",
)
@click.option(
    "--layer",
    help="Run folder / exported encoder only: measure this submodule's output (e.g. 'net.3').",
)
@click.option(
    "--max-samples",
    type=click.IntRange(min=4),
    default=2048,
    show_default=True,
    help="Use at most this many rows (random subset, --seed); exact cost grows as n^2.",
)
@click.option(
    "--out",
    "out_dir",
    type=click.Path(path_type=Path),
    help="Output folder (default: <embeddings stem>_independence next to the file).",
)
@click.option("--overwrite", is_flag=True, help="Replace the results of an earlier run in OUT.")
@click.option(
    "--data-root",
    type=click.Path(file_okay=False, path_type=Path),
    help="For an exported encoder (.safetensors): the folder of its dataset (MNIST-1D: the cache "
    "folder). Default: the dataset's usual place; never a folder named in the file.",
)
@click.option(
    "--data-samples",
    type=click.IntRange(min=20),
    help="For an exported MNIST-1D encoder: how many signals to generate (default: the "
    "generator's 5000); never a count from the file.",
)
@click.option(
    "--method",
    type=Choice(["auto", "exact", "lowrank"]),
    default="auto",
    show_default=True,
    help="Pairwise HSIC: exact, pivoted-Cholesky low-rank, or auto (lowrank when exact would "
    "take more than ~1 minute).",
)
@click.option(
    "--estimator", type=Choice(["biased", "unbiased"]), default="biased", show_default=True
)
@click.option(
    "--kernel", type=Choice(["gaussian", "laplacian"]), default="gaussian", show_default=True
)
@click.option(
    "--bandwidth",
    default="median",
    show_default=True,
    help="'median' (median distance), 'dhsic' (R dHSIC convention) or a number.",
)
@click.option(
    "--test",
    "test_method",
    type=Choice(["auto", "permutation", "gamma", "none"]),
    default="auto",
    show_default=True,
    help="dHSIC test (auto = permutation, calibrated at any d).",
)
@click.option("--permutations", type=click.IntRange(min=1), default=199, show_default=True)
@click.option(
    "--pair-permutations",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Permutation p-values for the --top-k pairs too (0: none).",
)
@click.option(
    "--correction",
    type=Choice(["holm", "bonferroni", "fdr_bh", "none"]),
    default="holm",
    show_default=True,
    help="Multiple-testing correction over all pairs.",
)
@click.option("--alpha", type=click.FloatRange(0, 1, min_open=True, max_open=True), default=0.05)
@click.option("--dhsic/--no-dhsic", "with_dhsic", default=True, show_default=True)
@click.option("--top-k", type=click.IntRange(min=0), default=10, show_default=True)
@click.option(
    "--max-memory",
    default="4GB",
    show_default=True,
    help="Working-memory budget per rank (binary units); checked before allocating.",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 ...")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-progress", is_flag=True, help="No progress bars (also off when not a TTY).")
def measure(
    embeddings: Path, key, labels, dataset, layer, out_dir, overwrite, data_root, data_samples,
    **opts,
) -> None:  # fmt: skip
    """Pairwise (HSIC) and mutual (dHSIC) independence of the features of EMBEDDINGS (n, d).

    EMBEDDINGS is an array file (.npy/.npz/.csv/.pt/.safetensors), or a training run folder or
    an encoder from `vcreg export` (then the --dataset split of its run's data is encoded).
    """
    from vcreg import __version__
    from vcreg import independence as ind
    from vcreg._device import resolve_device
    from vcreg.distributed import init_from_env
    from vcreg.io import LoadError
    from vcreg.trained import is_trained_source

    bw = _bandwidth(opts.pop("bandwidth"))
    try:
        ind.parse_memory(opts["max_memory"])
    except (TypeError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="--max-memory") from None
    try:
        dev = resolve_device(opts.pop("device"))
    except (TypeError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="--device") from None
    out = out_dir if out_dir is not None else embeddings.parent / f"{embeddings.stem}_independence"
    try:
        check_results_folder(out, RESULT_FILES, overwrite)
        trained = is_trained_source(embeddings)
    except LoadError as exc:
        raise click.BadParameter(str(exc), param_hint="EMBEDDINGS") from None
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--out") from None
    progress = bars_enabled(not opts.pop("no_progress"))
    kw = dict(
        method=opts.pop("method"), bandwidth=bw, device=dev, progress=progress,
        keep_matrices=True, test=opts.pop("test_method"), n_permutations=opts.pop("permutations"),
        **opts,
    )  # fmt: skip
    exported = trained and not embeddings.is_dir()
    if (data_root or data_samples) and not exported:
        raise click.BadParameter(
            "applies to an exported encoder (.safetensors) only", param_hint="--data-root"
        )
    world, rank, created = init_from_env(dev)  # under torchrun: the pairwise step is sharded
    kw["progress"] = progress and rank == 0
    kw["on_plan"] = _plan_echo(dev, world, rank, kw["seed"])
    try:
        if trained:
            data = {"data_root": data_root, "num_samples": data_samples} if exported else {}
            rep = _measure_trained(embeddings, key, labels, dataset, layer, {**kw, **data})
        else:
            if dataset != "test" or layer is not None:
                raise click.UsageError(
                    "--dataset and --layer need a run folder or an exported encoder"
                )
            z, names, y = _load(embeddings, key, labels)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ind.SubsampledWarning)  # echoed as a banner
                    rep = ind.measure_embeddings(z, y, names=names, **kw)
            except (TypeError, ValueError) as exc:
                raise click.ClickException(str(exc)) from exc
    finally:
        if created:
            import torch.distributed

            torch.distributed.destroy_process_group()
    if rank != 0:  # one writer
        return
    rep["input"].update(path=str(embeddings), key=key)
    rep["settings"]["vcreg_version"] = __version__
    rep["settings"]["world_size"] = world
    t0 = time.perf_counter()
    _write(out, rep, embeddings.name, overwrite)
    rep["cost"]["steps_seconds"]["write"] = time.perf_counter() - t0
    _echo_summary(rep, out)


def _plan_echo(dev, world: int, rank: int, seed: int):
    """The ``on_plan`` callback: before any work, the subsampling banner and the estimate of
    every step, writing the results included."""
    from vcreg.independence.cost import STEP_NAMES, write_seconds

    def echo(plan: dict) -> None:
        if rank != 0:
            return
        n, total = plan["n"], plan.get("n_total")
        if total is not None and n < total:
            click.echo(
                f"WARNING: SUBSAMPLED -- {n} of {total} rows are used (random, seed {seed}); "
                "raise --max-samples to use more (cost grows as n^2 exact, n lowrank)"
            )
        steps = plan["steps"] | {"write": write_seconds(plan.get("n_features", plan["d"]))}
        parts = ", ".join(f"{STEP_NAMES.get(k, k)} {_secs(v)}" for k, v in steps.items())
        click.echo(
            f"estimate: {_secs(sum(steps.values()))} in all for n = {n}, d = {plan['d']} "
            f"({plan['method']} pairwise HSIC, peak ~{_bytes(plan['peak_bytes'])} per rank; "
            f"{world} rank(s), {dev}; an idle 2-core CPU, longer on a shared one): {parts}"
        )

    return echo


def _secs(s: float) -> str:
    return f"~{s:.0f} s" if s >= 1 else "<1 s"


def _bytes(n: float) -> str:
    from vcreg.independence import format_bytes

    return format_bytes(n)


def _measure_trained(source: Path, key, labels, dataset, layer, kw: dict) -> dict[str, Any]:
    from vcreg.trained import measure_trained
    from vcreg.training import CheckpointError

    if key is not None:
        raise click.UsageError("--key is for array files, not a run folder or exported encoder")
    if labels not in (None, "labels"):
        raise click.BadParameter(
            "a run folder / exported encoder has one set of labels: pass --labels labels",
            param_hint="--labels",
        )
    try:
        return measure_trained(source, dataset, layer=layer, labels=labels is not None, **kw)
    except (TypeError, ValueError, FileNotFoundError, CheckpointError) as exc:
        raise click.ClickException(str(exc)) from None


def _write(out: Path, rep: dict, name: str, overwrite: bool) -> None:
    import numpy as np

    from vcreg.metrics import pairwise_heatmap_figure as heatmap

    mats = rep.pop("matrices")
    rep["files"] = {
        "heatmap": "pairwise_hsic.png",
        "hsic_matrix": "pairwise_hsic.npy",
        "nhsic_matrix": "pairwise_nhsic.npy",
        "p_value_matrix": "pairwise_pvalues.npy",
    }
    text = json.dumps(rep, indent=1).encode()
    nsum = rep["pairwise_nhsic"]
    title = (
        f"{name}: normalized HSIC, n={rep['input']['n_samples_used']}, "
        f"d={rep['input']['n_features']}\nmean off-diagonal {nsum['mean']:.4g}, "
        f"max {nsum['max']:.4g}"
    )
    files = {
        "independence.json": lambda fh: fh.write(text),
        "pairwise_hsic.png": lambda fh: heatmap(mats["nhsic"], title).savefig(fh, format="png"),
        "pairwise_hsic.npy": lambda fh: np.save(fh, mats["hsic"]),
        "pairwise_nhsic.npy": lambda fh: np.save(fh, mats["nhsic"]),
        "pairwise_pvalues.npy": lambda fh: np.save(fh, mats["p_values"]),
    }
    write_results_folder(out, files, RESULT_FILES, overwrite)


def _listed(idx: list[int], k: int = 8) -> str:
    return (
        "["
        + ", ".join(map(str, idx[:k]))
        + (f", ... +{len(idx) - k}" if len(idx) > k else "")
        + "]"
    )


def _degenerate_line(rep: dict) -> str:
    """One line: dead and near-dead features by rule, in the user's feature numbering."""
    deg, fs = rep["degenerate_features"], rep["feature_std"]
    parts = [f"{len(deg['constant'])} constant {_listed(deg['constant'])}"]
    near = deg["near_constant"]
    parts.append(
        f"{len(near)} near-constant (<= {deg['near_constant_rows']} rows off the most common "
        f"value; {len(deg['single_spike'])} a single spike) {_listed(near)}"
    )
    parts.append(
        f"{len(deg['few_distinct'])} with 2-3 distinct values {_listed(deg['few_distinct'])}"
    )
    parts.append(
        f"{fs['n_collapsed']} collapsed (std <= {fs['threshold']:g} x the RMS of all entries; "
        "includes the constant ones)"
    )
    return (
        f"dead / near-dead features of {deg['n_features']} (on the {deg['n_samples']} rows "
        f"used; feature numbers as in the input): " + "; ".join(parts)
    )


def _echo_summary(rep: dict, out: Path) -> None:
    acc = rep.get("lowrank_accuracy")
    if acc is not None:
        click.echo(
            f"low-rank accuracy: mean HSIC of {acc['pairs_checked']} random pairs within "
            f"{100 * acc['relative_error_of_mean']:.2g} % of exact (largest pair error "
            f"{100 * acc['max_abs_error_over_mean']:.2g} % of the mean); pairwise step "
            f"{rep['cost']['pairwise_seconds']:.1f} s (estimated "
            f"{rep['cost']['estimate']['steps']['pairwise']:.0f} s)"
        )
    for note in rep["notes"]:
        click.echo(f"note: {note}")
    click.echo(_degenerate_line(rep))
    nsum, tests = rep["pairwise_nhsic"], rep["pairwise_tests"]
    top = nsum["top_pairs"][0] if nsum["top_pairs"] else None
    click.echo(
        f"pairwise normalized HSIC: mean {nsum['mean']:.4g}, median {nsum['median']:.4g}, "
        f"max {nsum['max']:.4g}" + (f" (features {top['i']}, {top['j']})" if top else "")
    )
    reasons = [f"{v}: {k}" for k, v in (tests.get("not_tested") or {}).items() if v]
    untested = f"; {tests['n_not_tested']} not tested ({'; '.join(reasons)})" if reasons else ""
    click.echo(
        f"pairs significant after {tests['correction']} at alpha = {tests['alpha']:g}: "
        f"{tests['n_significant']} of {tests['n_pairs']} tested (smallest p = "
        f"{tests['min_p_value']:.3g}){untested}"
    )
    dh = rep["dhsic"]
    if dh is not None:
        if dh["refused"]:
            click.echo(f"dHSIC: refused -- {dh['refused']}")
        elif dh["p_value"] is not None:
            click.echo(
                f"dHSIC ({dh['bandwidth_rule']} bandwidth, {dh['test']} test, "
                f"{dh['n_permutations']} permutations): {dh['statistic']:.4g}, "
                f"p = {dh['p_value']:.3g}"
            )
        else:
            click.echo(f"dHSIC: {dh['statistic']}")
    click.echo(
        f"effective rank {rep['effective_rank']:.1f} of {rep['input']['n_features']}; mutual "
        f"dependence {rep['mutual_dependence']['mean_one_vs_rest_nhsic']:.4g}"
    )
    from vcreg.independence.cost import write_seconds

    took, est = rep["cost"]["steps_seconds"], rep["cost"]["estimate"]
    planned = est["seconds"] + write_seconds(rep["input"]["n_features"])
    click.echo(
        f"took {sum(took.values()):.1f} s (estimated {_secs(planned)}): "
        + ", ".join(f"{k} {v:.1f} s" for k, v in took.items())
    )
    click.echo(f"wrote {out / 'independence.json'} and {out / 'pairwise_hsic.png'}")
