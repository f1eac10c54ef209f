"""``vcreg measure``: pairwise (HSIC) and mutual (dHSIC) independence of saved embeddings.

``vcreg measure embeddings.(npy|npz|pt|csv) [--key K] [--labels L] [--max-samples N]
[--out DIR]`` (or ``vcreg measure encoder.safetensors``, an encoder from ``vcreg export``: the test
set of its run's dataset, encoded) writes ``DIR/independence.json`` (summaries of the pairwise HSIC and normalized
HSIC matrices, most dependent pairs with gamma-test p-values, dHSIC with its p-value, the
settings used), ``DIR/pairwise_hsic.png`` (heatmap of the normalized matrix) and the two matrices
as ``.npy``. Every file is written atomically (temporary file + ``os.replace``).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import click

from vcreg._io import atomic_write

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
            return np.load(path, allow_pickle=False), None, None
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as f:
                data = {k: f[k] for k in f.files}
            return _pick(data, key, path, "arrays"), None, data
        if suffix == ".csv":
            arr, header = _read_csv(path)
            return arr, header, None
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, ValueError, RuntimeError, EOFError) as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from exc
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


def _heatmap(path: Path, nrm, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    shown = np.array(nrm, dtype=float)
    np.fill_diagonal(shown, np.nan)
    d = shown.shape[0]
    fig, ax = plt.subplots(figsize=(6.4, 5.4), dpi=110)
    im = ax.imshow(shown, cmap="magma", interpolation="nearest" if d <= 256 else "antialiased")
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("feature j")
    ax.set_ylabel("feature i")
    fig.colorbar(im, ax=ax, label="normalized HSIC (diagonal masked)")
    fig.tight_layout()
    atomic_write(path, lambda fh: fig.savefig(fh, format="png"))
    plt.close(fig)


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
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder (default: <embeddings stem>_independence next to the file).",
)
@click.option(
    "--method",
    type=click.Choice(["exact", "lowrank"]),
    default="exact",
    show_default=True,
    help="Pairwise HSIC: exact or pivoted-Cholesky low-rank.",
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
    type=click.Choice(["gamma", "permutation", "none"]),
    default="gamma",
    show_default=True,
    help="p-values for dHSIC and the top pairs.",
)
@click.option("--permutations", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--dhsic/--no-dhsic", "with_dhsic", default=True, show_default=True)
@click.option("--top-k", type=click.IntRange(min=0), default=10, show_default=True)
@click.option("--max-memory", default="4GB", show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 ...")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def measure(
    embeddings: Path,
    key,
    labels,
    max_samples,
    out_dir,
    method,
    estimator,
    kernel,
    bandwidth,
    test_method,
    permutations,
    with_dhsic,
    top_k,
    max_memory,
    device,
    seed,
    no_progress,
) -> None:
    """Pairwise (HSIC) and mutual (dHSIC) independence of the features of EMBEDDINGS (n, d)."""
    import numpy as np
    import torch
    from tqdm.auto import tqdm

    from vcreg import __version__
    from vcreg import independence as ind
    from vcreg._device import resolve_device

    bw = _bandwidth(bandwidth)
    try:
        budget = ind.parse_memory(max_memory)
    except (TypeError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="--max-memory") from None
    try:
        dev = resolve_device(device)
    except (TypeError, ValueError) as exc:
        raise click.BadParameter(str(exc), param_hint="--device") from None

    arr, names, others = load_array(embeddings, key, dev)
    z = _as_matrix(arr, "embeddings")
    if z.ndim != 2:
        raise click.ClickException(
            f"embeddings must be a 2-D (n_samples, n_features) array, got shape {z.shape}"
        )
    n_total, d = z.shape
    if d < 2:
        raise click.ClickException(f"need at least 2 features (columns), got shape {z.shape}")
    if n_total < 4:
        raise click.ClickException(f"need at least 4 samples (rows), got {n_total}")
    bad = ~np.isfinite(z)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        raise click.ClickException(
            f"embeddings contain {int(bad.sum())} NaN/Inf values in {rows.size} rows "
            f"(first: {rows[:5].tolist()}); remove them first"
        )
    y = _load_labels(labels, others, n_total) if labels else None
    rng = np.random.default_rng(seed)
    idx = (
        np.sort(rng.choice(n_total, max_samples, replace=False)) if n_total > max_samples else None
    )
    if idx is not None:
        z = z[idx]
        y = y[idx] if y is not None else None
    n = z.shape[0]

    out = out_dir if out_dir is not None else embeddings.parent / f"{embeddings.stem}_independence"
    out.mkdir(parents=True, exist_ok=True)
    progress = not no_progress
    zt = torch.from_numpy(z).to(dev)
    common = {"kernel": kernel, "bandwidth": bw}
    stages = ["pairwise HSIC", "tests", "plots"] + (["dHSIC"] if with_dhsic else [])
    bar = tqdm(total=len(stages), desc="vcreg measure", disable=not progress)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ind.ConstantVariableWarning)
        bar.set_postfix_str("pairwise HSIC")
        try:
            raw = ind.pairwise_hsic(
                zt,
                normalized=False,
                method=method,
                max_memory=budget,
                estimator=estimator,
                progress=progress,
                **common,
            )
        except ValueError as exc:
            raise click.ClickException(str(exc)) from exc
        nrm = ind.normalize_hsic_matrix(raw)
        raw_np, nrm_np = raw.cpu().numpy(), nrm.cpu().numpy()
        bar.update()
    constant = sorted({int(i) for i in np.nonzero(np.all(z == z[:1], 0))[0]})
    keep = np.setdiff1d(np.arange(d), constant)
    if keep.size < 2:
        raise click.ClickException(f"fewer than 2 non-constant features ({keep.size}) to measure")
    del caught

    nsum = ind.pairwise_summary(nrm_np[np.ix_(keep, keep)], top_k=top_k)
    rsum = ind.pairwise_summary(raw_np[np.ix_(keep, keep)], top_k=top_k)
    for s in (nsum, rsum):  # indices of the kept features -> original column indices
        for t in s["top_pairs"]:
            t["i"], t["j"] = int(keep[t["i"]]), int(keep[t["j"]])
            if names is not None:
                t["names"] = [names[t["i"]], names[t["j"]]]

    bar.set_postfix_str("tests")
    if test_method != "none":
        for t in nsum["top_pairs"]:
            res = ind.hsic_test(
                zt[:, t["i"]],
                zt[:, t["j"]],
                method=test_method,
                n_permutations=permutations,
                random_state=seed,
                **common,
            )
            t["p_value"] = res.p_value
    label_info = None
    if y is not None:
        classes, codes = np.unique(y, return_inverse=True)
        onehot = torch.nn.functional.one_hot(torch.from_numpy(codes), len(classes)).to(zt)
        dep = [ind.hsic(zt[:, j], onehot, kernel="linear", normalized=True) for j in keep]
        order = np.argsort(dep)[::-1][:top_k]
        label_info = {
            "n_classes": int(len(classes)),
            "kernel": "delta (linear kernel on one-hot labels)",
            "feature_label_nhsic_mean": float(np.mean(dep)),
            "most_label_dependent_features": [
                {"feature": int(keep[o]), "nhsic": float(dep[o])} for o in order
            ],
        }
    bar.update()

    dh = None
    if with_dhsic:
        bar.set_postfix_str("dHSIC")
        cols = zt[:, torch.as_tensor(keep, device=dev)]
        dval = ind.dhsic(cols, max_memory=budget, **common)
        dh = {"statistic": dval, "p_value": None, "test": None, "n_variables": int(keep.size)}
        if test_method == "gamma" and n < 4 * keep.size - 2:
            dh["note"] = (
                f"gamma test needs n >= 4d - 2 ({4 * keep.size - 2}); "
                "use --test permutation for a p-value"
            )
        elif test_method != "none":
            res = ind.dhsic_test(
                cols,
                method=test_method,
                n_permutations=permutations,
                random_state=seed,
                max_memory=budget,
                progress=progress,
                **common,
            )
            dh.update(p_value=res.p_value, test=test_method)
        bar.update()

    bar.set_postfix_str("plots")
    atomic_write(out / "pairwise_hsic.npy", lambda fh: np.save(fh, raw_np))
    atomic_write(out / "pairwise_nhsic.npy", lambda fh: np.save(fh, nrm_np))
    _heatmap(
        out / "pairwise_hsic.png",
        nrm_np,
        f"{embeddings.name}: normalized HSIC, n={n}, d={d}\n"
        f"mean off-diagonal {nsum['mean']:.4g}, max {nsum['max']:.4g}",
    )
    bar.update()
    bar.close()

    result = {
        "input": {
            "path": str(embeddings),
            "key": key,
            "n_samples_total": int(n_total),
            "n_samples_used": int(n),
            "n_features": int(d),
            "feature_names": names,
        },
        "pairwise_hsic": rsum,
        "pairwise_nhsic": nsum,
        "dhsic": dh,
        "labels": label_info,
        "constant_features": constant,
        "settings": {
            "method": method,
            "estimator": estimator,
            "kernel": kernel,
            "bandwidth": bw,
            "median_samples": ind.MEDIAN_SAMPLES,
            "test": test_method,
            "permutations": permutations if test_method == "permutation" else None,
            "max_samples": max_samples,
            "seed": seed,
            "max_memory_bytes": budget,
            "device": str(dev),
            "dtype": "float64",
            "vcreg_version": __version__,
        },
        "files": {
            "heatmap": "pairwise_hsic.png",
            "hsic_matrix": "pairwise_hsic.npy",
            "nhsic_matrix": "pairwise_nhsic.npy",
        },
    }
    text = json.dumps(result, indent=1)
    atomic_write(out / "independence.json", lambda fh: fh.write(text), mode="w")
    if constant:
        click.echo(f"note: {len(constant)} constant feature(s) excluded: {constant[:10]}")
    top = nsum["top_pairs"][0] if nsum["top_pairs"] else None
    click.echo(
        f"pairwise normalized HSIC: mean {nsum['mean']:.4g}, median {nsum['median']:.4g}, "
        f"max {nsum['max']:.4g}" + (f" (features {top['i']}, {top['j']})" if top else "")
    )
    if dh is not None:
        p = f", p = {dh['p_value']:.3g}" if dh["p_value"] is not None else ""
        click.echo(f"dHSIC: {dh['statistic']:.4g}{p}")
    click.echo(f"wrote {out / 'independence.json'} and {out / 'pairwise_hsic.png'}")
