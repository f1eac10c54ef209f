"""``vcreg ica``: blind source separation of a matrix file (:mod:`vcreg.io`) with :class:`vcreg.ica.VCRegICA`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import click
import numpy as np

from vcreg._results import check_results_folder, write_results_folder
from vcreg.cli._errors import Choice

if TYPE_CHECKING:
    from vcreg.ica import VCRegICA

# every file `vcreg ica` may write: a folder holding any of them holds an earlier result
RESULT_FILES = (
    "sources.npy",
    "sources.csv",
    "unmixing.npy",
    "mixing.npy",
    "mean.npy",
    "metrics.json",
    "diagnostics.json",
)


def _load_matrix(path: Path, what: str, key: str | None = None) -> np.ndarray:
    from vcreg.io import LoadError, check_finite, load_matrix

    try:
        X = load_matrix(path, key)
        check_finite(X, path)  # located by the file's own line numbers
        return X
    except LoadError as exc:
        raise click.BadParameter(str(exc), param_hint=what) from None


def _load_references(sources_path, mixing_path, X, n_components):
    """The true sources / mixing matrix, validated against DATA before the (long) fit."""
    S_true = A_true = None
    if sources_path is not None:
        S_true = _load_matrix(sources_path, "--sources")
        if S_true.shape[0] != X.shape[0]:
            raise click.BadParameter(
                f"--sources has {S_true.shape[0]} rows but DATA has {X.shape[0]}",
                param_hint="--sources",
            )
        # vcreg.ica (torch, sklearn) loads only when the command runs, not for `vcreg --help`
        from vcreg.ica.metrics import check_sources

        try:
            check_sources(S_true, str(sources_path))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--sources") from exc
    if mixing_path is not None:
        A_true = _load_matrix(mixing_path, "--mixing")
        k = X.shape[1] if n_components is None else n_components
        if A_true.shape != (X.shape[1], k) or not np.isfinite(A_true).all():
            raise click.BadParameter(
                f"--mixing must be a finite (n_features, n_components) = ({X.shape[1]}, {k}) "
                f"matrix, got shape {A_true.shape}",
                param_hint="--mixing",
            )
    return S_true, A_true


# VCRegICA's parameters under the names the user typed
_OPTIONS = {
    "n_components": "--n-components",
    "n_init": "--n-init/--n-restarts",
    "max_iter": "--max-iter",
    "tol": "--tol",
    "width": "--width",
    "scale": "--scale",
    "projector": "--projector",
    "random_state": "--seed",
}


def _in_option_names(message: str) -> str:
    """An estimator's message about its parameters, in this command's option names."""
    message = re.sub(
        r"The '(\w+)' parameter of VCRegICA",
        lambda m: f"{_OPTIONS.get(m.group(1), m.group(1))}",
        message,
    )
    return re.sub(
        r"\b(" + "|".join(_OPTIONS) + r")=",
        lambda m: f"{_OPTIONS[m.group(1)]} ",
        message,
    )


def _npy(arr: np.ndarray):
    return lambda fh: np.save(fh, arr)


def _result_files(est: VCRegICA, S_hat: np.ndarray, metrics: dict | None) -> dict:
    def csv(fh):
        np.savetxt(fh, S_hat, delimiter=",", fmt="%.10g")

    files = {
        "sources.npy": _npy(S_hat),
        "sources.csv": csv,
        "unmixing.npy": _npy(est.components_),
        "mixing.npy": _npy(est.mixing_),
        "mean.npy": _npy(est.mean_),
    }
    if metrics is not None:
        text = json.dumps(metrics, indent=2).encode()
        files["metrics.json"] = lambda fh: fh.write(text)
    diag = json.dumps(est.diagnostics_, indent=2).encode()
    files["diagnostics.json"] = lambda fh: fh.write(diag)
    return files


@click.command("ica")
@click.argument("data", type=click.Path(path_type=Path))
@click.option("--key", help="Array name inside an .npz, .pt or .safetensors DATA file.")
@click.option(
    "--n-components",
    "-k",
    type=click.IntRange(min=1),
    default=None,
    help="Number of sources (default: all).",
)
@click.option(
    "--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Output folder."
)
@click.option(
    "--sources",
    "sources_path",
    type=click.Path(path_type=Path),
    default=None,
    help="True sources (n_samples x k, any format DATA may have) to score the separation against.",
)
@click.option(
    "--mixing",
    "mixing_path",
    type=click.Path(path_type=Path),
    default=None,
    help="True mixing matrix A (n_features x k), for the Amari distance.",
)
@click.option("--projector", type=Choice(["random-features", "mlp"]), default="random-features")
@click.option(
    "--width",
    type=click.IntRange(min=1),
    default=None,
    help="Random features per source / MLP width.",
)
@click.option(
    "--scale",
    type=Choice(["standardized", "kernel"]),
    default="standardized",
    show_default=True,
    help="Random-feature scale (VCRegICA's scale).",
)
@click.option("--max-iter", type=click.IntRange(min=1), default=200, show_default=True)
@click.option("--tol", type=click.FloatRange(min=0), default=1e-4, show_default=True)
@click.option(
    "--n-init",
    "--n-restarts",
    "n_init",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Random restarts; the lowest contrast is kept (--n-restarts: old name).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--overwrite", is_flag=True, help="Replace the results of an earlier run in OUT (all of them)."
)
@click.option(
    "--no-progress",
    is_flag=True,
    help="Accepted as by every vcreg command (ica draws no progress bar).",
)
def ica(
    data,
    key,
    n_components,
    out_dir,
    sources_path,
    mixing_path,
    projector,
    width,
    scale,
    max_iter,
    tol,
    n_init,
    seed,
    overwrite,
    no_progress,
) -> None:
    """Unmix DATA (rows = samples; .npy/.npz/.csv/.pt/.safetensors, see vcreg.io) with VCReg ICA.

    Writes to OUT: sources.npy + sources.csv (estimated sources), unmixing.npy (components_,
    k x n_features, S = (X - mean) @ unmixing.T), mixing.npy, mean.npy, diagnostics.json (the
    ground-truth-free quality check, VCRegICA.diagnostics_; "reliable": false comes with a
    warning naming the reasons) and, with --sources and/or --mixing, metrics.json (MCC
    Pearson/Spearman; Amari distance). OUT, --sources and
    --mixing are checked before the fit. Earlier results in OUT are replaced only with
    --overwrite, all together (no file of the earlier run is left).
    """
    X = _load_matrix(data, "DATA", key)
    try:
        check_results_folder(out_dir, RESULT_FILES, overwrite)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--out") from exc
    S_true, A_true = _load_references(sources_path, mixing_path, X, n_components)
    from vcreg.ica import VCRegICA, amari_distance, mean_corr_coef

    est = VCRegICA(
        n_components=n_components,
        projector=projector,
        width=width,
        scale=scale,
        max_iter=max_iter,
        tol=tol,
        n_init=n_init,
        random_state=seed,
    )
    try:
        S_hat = est.fit_transform(X)
    except ValueError as exc:
        raise click.ClickException(_in_option_names(str(exc))) from exc
    info = {
        "n_iter": est.n_iter_,
        "converged": est.converged_,
        "loss": est.loss_,
        "reliable": est.diagnostics_["reliable"],
    }
    if S_true is not None:
        info["mcc_pearson"] = mean_corr_coef(S_hat, S_true)
        info["mcc_spearman"] = mean_corr_coef(S_hat, S_true, method="spearman")
    if A_true is not None:
        info["amari_distance"] = amari_distance(est.components_, A_true)
    scored = S_true is not None or A_true is not None
    write_results_folder(
        out_dir, _result_files(est, S_hat, info if scored else None), RESULT_FILES, overwrite
    )
    click.echo(json.dumps({**info, "diagnostics": est.diagnostics_}))
    click.echo(f"wrote sources/unmixing/mixing to {out_dir}")
