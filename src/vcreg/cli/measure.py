"""``vcreg measure``: pairwise (HSIC) and mutual (dHSIC) independence of saved embeddings.

``vcreg measure embeddings.(npy|npz|pt|csv) [--key K] [--labels L] [--out DIR] [--overwrite]``
(or ``vcreg measure encoder.safetensors``, an encoder from ``vcreg export``: the test set of its
run's dataset, encoded): loads the matrix, calls :func:`vcreg.independence.measure_embeddings`
and writes its report as ``DIR/independence.json``, the heatmap ``DIR/pairwise_hsic.png`` and
the matrices (``pairwise_hsic.npy``, ``pairwise_nhsic.npy``, ``pairwise_pvalues.npy``). The
result set is published together (``vcreg._results``): an earlier result folder is replaced
only with ``--overwrite``, atomically and without leaving stale files.
"""

from __future__ import annotations

import json
import pickle
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any

import click

from vcreg._results import check_results_folder, write_results_folder

SUFFIXES = (".npy", ".npz", ".pt", ".pth", ".csv", ".safetensors")


def _pick(container: dict, key: str | None, path: Path, what: str) -> Any:
    keys = list(container.keys())
    if key is not None:
        if key not in container:
            raise click.BadParameter(
                f"key {key!r} not in {path.name}; it holds {keys}", param_hint="--key"
            )
        return container[key]
    if len(keys) == 1:
        return container[keys[0]]
    raise click.BadParameter(
        f"{path.name} holds several {what} {keys}; choose one with --key", param_hint="--key"
    )


def _read_csv(path: Path) -> tuple[Any, list[str] | None]:
    import numpy as np

    with open(path) as fh:
        first = fh.readline()
    fields = [f.strip() for f in first.strip().split(",")]
    try:
        [float(f) for f in fields]
        header = None
    except ValueError:
        header = fields
    try:
        arr = np.loadtxt(path, delimiter=",", skiprows=1 if header else 0, ndmin=2)
    except ValueError as exc:
        raise click.ClickException(f"cannot parse {path.name} as numeric CSV: {exc}") from exc
    return arr, header


NPY_MAGIC = b"\x93NUMPY"
RESULT_FILES = (
    "independence.json",
    "pairwise_hsic.png",
    "pairwise_hsic.npy",
    "pairwise_nhsic.npy",
    "pairwise_pvalues.npy",
)


def _load_npy(path: Path):
    import numpy as np

    with open(path, "rb") as fh:
        magic = fh.read(len(NPY_MAGIC))
    if magic != NPY_MAGIC:
        raise click.ClickException(f"{path.name} is not a NumPy .npy file (no NumPy header)")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickled" in str(exc) or "Object arrays" in str(exc):
            raise click.ClickException(
                f"{path.name} holds Python objects (dtype=object), not a numeric array; vcreg "
                "never unpickles data: save a numeric array"
            ) from None
        raise click.ClickException(f"cannot read {path.name}: {exc}") from exc


def _load_pt(path: Path):
    import torch

    with open(path, "rb") as fh:
        head = fh.read(2)
    # torch.save writes a zip archive (or, legacy, a pickle stream starting with PROTO 0x80)
    if not (zipfile.is_zipfile(path) or head[:1] == b"\x80"):
        raise click.ClickException(f"{path.name} is not a file written by torch.save")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "weights_only" in str(exc) or "Weights only" in str(exc):
            raise click.ClickException(
                f"{path.name} holds pickled Python objects, which vcreg refuses to load "
                "(weights-only loading); save a tensor or a dict of tensors with torch.save"
            ) from None
        raise click.ClickException(f"{path.name} is not a file written by torch.save") from None
    except (RuntimeError, EOFError, ValueError) as exc:
        raise click.ClickException(
            f"{path.name} is not a file written by torch.save ({type(exc).__name__})"
        ) from None


def load_array(
    path: Path, key: str | None, device: Any = "cpu"
) -> tuple[Any, list[str] | None, dict | None]:
    """(array, column names or None, the file's other arrays for --labels lookups). An encoder
    from ``vcreg export`` (.safetensors) gives its run's test set encoded on ``device``, with
    ``--labels labels`` available."""
    import numpy as np
    import torch

    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise click.BadParameter(
            f"unsupported file type {path.suffix!r}; use one of {', '.join(SUFFIXES)}",
            param_hint="EMBEDDINGS",
        )
    if suffix == ".safetensors":  # `vcreg export`: its run's test set, encoded
        from vcreg.export import encode_exported

        try:
            feats, labels = encode_exported(path, device=str(device))
        except (ValueError, FileNotFoundError) as exc:
            raise click.ClickException(str(exc)) from None
        return feats, None, {"labels": labels}
    try:
        if suffix == ".npy":
            return _load_npy(path), None, None
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                data = {k: f[k] for k in f.files}
            if not data:
                raise click.ClickException(f"{path.name} holds no arrays")
            return _pick(data, key, path, "arrays"), None, data
        if suffix == ".csv":
            arr, header = _read_csv(path)
            return arr, header, None
    except (zipfile.BadZipFile, EOFError) as exc:
        raise click.ClickException(f"{path.name} is not a valid .npz (zip) file: {exc}") from None
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from exc
    obj = _load_pt(path)
    if isinstance(obj, torch.Tensor):
        return obj, None, None
    if isinstance(obj, dict):
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor | np.ndarray)}
        if not tensors:
            raise click.ClickException(f"{path.name} holds a dict without tensors")
        return _pick(tensors, key, path, "tensors"), None, tensors
    raise click.ClickException(f"{path.name} holds a {type(obj).__name__}, not a tensor or dict")


def _as_matrix(arr: Any, name: str):
    import numpy as np
    import torch

    a = arr.detach().cpu().double().numpy() if isinstance(arr, torch.Tensor) else np.asarray(arr)
    if a.dtype.kind not in "biuf":
        raise click.ClickException(f"{name} must be numeric, got dtype {a.dtype}")
    return a.astype(np.float64, copy=False)


def _load_labels(spec: str, others: dict | None, n_total: int):
    import numpy as np

    p = Path(spec)
    if p.is_file():
        arr, _, _ = load_array(p, None)
    elif others is not None and spec in others:
        arr = others[spec]
    else:
        raise click.BadParameter(
            f"{spec!r} is neither a file nor a key of the embeddings file", param_hint="--labels"
        )
    lab = _as_matrix(arr, "labels").reshape(len(arr), -1)
    if lab.shape[1] != 1 or lab.shape[0] != n_total:
        raise click.BadParameter(
            f"labels must be one value per sample ({n_total}), got shape {lab.shape}",
            param_hint="--labels",
        )
    return np.asarray(lab[:, 0])


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
@click.argument("embeddings", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--key", help="Array/tensor name inside an .npz or .pt file.")
@click.option(
    "--labels",
    help="Per-sample class labels (a file, or a key of the .npz/.pt): adds each feature's "
    "normalized HSIC with the labels (delta kernel).",
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
    "--method",
    type=click.Choice(["auto", "exact", "lowrank"]),
    default="auto",
    show_default=True,
    help="Pairwise HSIC: exact, pivoted-Cholesky low-rank, or auto (lowrank when exact would "
    "take more than ~1 minute).",
)
@click.option(
    "--estimator", type=click.Choice(["biased", "unbiased"]), default="biased", show_default=True
)
@click.option(
    "--kernel", type=click.Choice(["gaussian", "laplacian"]), default="gaussian", show_default=True
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
    type=click.Choice(["auto", "permutation", "gamma", "none"]),
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
    type=click.Choice(["holm", "bonferroni", "fdr_bh", "none"]),
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
def measure(embeddings: Path, key, labels, out_dir, overwrite, **opts) -> None:
    """Pairwise (HSIC) and mutual (dHSIC) independence of the features of EMBEDDINGS (n, d)."""
    from vcreg import __version__
    from vcreg import independence as ind
    from vcreg._device import resolve_device
    from vcreg.distributed import init_from_env

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
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--out") from None
    arr, names, others = load_array(embeddings, key, dev)
    z = _as_matrix(arr, "embeddings")
    y = _load_labels(labels, others, len(z)) if labels else None
    progress = not opts.pop("no_progress") and sys.stdout.isatty()
    world, rank, created = init_from_env(dev)  # under torchrun: the pairwise step is sharded
    try:
        _echo_plan(z.shape, opts, dev, world, rank)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ind.SubsampledWarning)  # echoed as a banner
            rep = ind.measure_embeddings(
                z, y, opts.pop("method"), names=names, bandwidth=bw, device=dev,
                progress=progress and rank == 0, keep_matrices=True,
                test=opts.pop("test_method"), n_permutations=opts.pop("permutations"), **opts,
            )  # fmt: skip
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
    _write(out, rep, embeddings.name, overwrite)
    _echo_summary(rep, out)


def _echo_plan(shape: tuple[int, int], opts: dict, dev, world: int, rank: int) -> None:
    """Before any work: the subsampling banner and the estimated cost of the pairwise step."""
    from vcreg import independence as ind

    if rank != 0 or len(shape) != 2 or min(shape) < 2:
        return  # bad shapes are reported by measure_embeddings
    n_total, d = shape
    n = min(n_total, opts["max_samples"])
    if n < n_total:
        click.echo(
            f"WARNING: SUBSAMPLED -- {n} of {n_total} rows are used (random, seed "
            f"{opts['seed']}); raise --max-samples to use more (cost grows as n^2 exact, n lowrank)"
        )
    method = opts["method"]
    if method == "auto":
        sec = ind.exact_pairwise_seconds(n, d, opts["max_memory"], dev.type == "cuda")
        method = "lowrank" if sec > ind.measurement.AUTO_EXACT_LIMIT_S else "exact"
    est = ind.measure_cost(n, d, method, opts["max_memory"], dev.type == "cuda", world)
    click.echo(
        f"estimate: {method} pairwise HSIC on n = {n}, d = {d}: ~{est['seconds']:.0f} s, peak "
        f"~{ind.format_bytes(est['peak_bytes'])} per rank ({world} rank(s), {dev}; "
        f"{est['assumptions']})"
    )


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


def _echo_summary(rep: dict, out: Path) -> None:
    acc = rep.get("lowrank_accuracy")
    if acc is not None:
        click.echo(
            f"low-rank accuracy: mean HSIC of {acc['pairs_checked']} random pairs within "
            f"{100 * acc['relative_error_of_mean']:.2g} % of exact (largest pair error "
            f"{100 * acc['max_abs_error_over_mean']:.2g} % of the mean); pairwise step "
            f"{rep['cost']['pairwise_seconds']:.1f} s (estimated {rep['cost']['estimate']['seconds']:.0f} s)"
        )
    for note in rep["notes"]:
        click.echo(f"note: {note}")
    if rep["constant_features"]:
        const = rep["constant_features"]
        click.echo(f"note: constant feature(s): {const[:10]}")
    nsum, tests = rep["pairwise_nhsic"], rep["pairwise_tests"]
    top = nsum["top_pairs"][0] if nsum["top_pairs"] else None
    click.echo(
        f"pairwise normalized HSIC: mean {nsum['mean']:.4g}, median {nsum['median']:.4g}, "
        f"max {nsum['max']:.4g}" + (f" (features {top['i']}, {top['j']})" if top else "")
    )
    click.echo(
        f"pairs significant after {tests['correction']} at alpha = {tests['alpha']:g}: "
        f"{tests['n_significant']} of {tests['n_pairs']} (smallest p = {tests['min_p_value']:.3g})"
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
    fs = rep["feature_std"]
    click.echo(
        f"effective rank {rep['effective_rank']:.1f} of {rep['input']['n_features']}; "
        f"collapsed features {fs['n_collapsed']}; mutual dependence "
        f"{rep['mutual_dependence']['mean_one_vs_rest_nhsic']:.4g}"
    )
    click.echo(f"wrote {out / 'independence.json'} and {out / 'pairwise_hsic.png'}")
