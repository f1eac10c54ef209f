"""``vcreg ica``: blind source separation of a .csv/.npy matrix with :class:`vcreg.ica.VCRegICA`."""

from __future__ import annotations

import json
from pathlib import Path

import click
import numpy as np

from vcreg._io import atomic_write, atomic_write_text
from vcreg.ica import VCRegICA, amari_distance, mean_corr_coef


def _load_matrix(path: Path, what: str) -> np.ndarray:
    if not path.exists():
        raise click.BadParameter(f"file not found: {path}", param_hint=what)
    try:
        if path.suffix == ".npy":
            arr = np.load(path, allow_pickle=False)
        elif path.suffix in (".csv", ".txt"):
            arr = np.loadtxt(path, delimiter=",", ndmin=2)
        else:
            raise click.BadParameter(
                f"{path} must be a .npy or .csv file (got suffix {path.suffix!r})", param_hint=what
            )
    except (ValueError, OSError) as exc:
        raise click.BadParameter(f"cannot read {path}: {exc}", param_hint=what) from exc
    if arr.ndim != 2:
        raise click.BadParameter(
            f"{path} must hold a 2-D (n_samples, n_features) matrix, got shape {arr.shape}",
            param_hint=what,
        )
    return arr.astype(np.float64)


def _save_npy(path: Path, arr: np.ndarray) -> None:
    atomic_write(path, lambda fh: np.save(fh, arr))


def _save_csv(path: Path, arr: np.ndarray) -> None:
    atomic_write(path, lambda fh: np.savetxt(fh, arr, delimiter=",", fmt="%.10g"))


@click.command("ica")
@click.argument("data", type=click.Path(path_type=Path))
@click.option(
    "--n-components", "-k", type=int, default=None, help="Number of sources (default: all)."
)
@click.option(
    "--out", "out_dir", type=click.Path(path_type=Path), required=True, help="Output folder."
)
@click.option(
    "--sources",
    "sources_path",
    type=click.Path(path_type=Path),
    default=None,
    help="True sources (.npy/.csv, n_samples x k) to score the separation against.",
)
@click.option(
    "--mixing",
    "mixing_path",
    type=click.Path(path_type=Path),
    default=None,
    help="True mixing matrix A (n_features x k), for the Amari distance.",
)
@click.option(
    "--projector", type=click.Choice(["random-features", "mlp"]), default="random-features"
)
@click.option("--width", type=int, default=None, help="Random features per source / MLP width.")
@click.option("--max-iter", type=int, default=200, show_default=True)
@click.option("--tol", type=float, default=1e-6, show_default=True)
@click.option("--n-restarts", type=int, default=1, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def ica(
    data,
    n_components,
    out_dir,
    sources_path,
    mixing_path,
    projector,
    width,
    max_iter,
    tol,
    n_restarts,
    seed,
) -> None:
    """Unmix DATA (.npy or .csv, rows = samples) with VCReg ICA.

    Writes to OUT: sources.npy + sources.csv (estimated sources), unmixing.npy (components_,
    k x n_features, S = (X - mean) @ unmixing.T), mixing.npy, mean.npy, and, with --sources,
    metrics.json (MCC Pearson/Spearman; Amari distance when --mixing is given too).
    """
    X = _load_matrix(data, "DATA")
    S_true = _load_matrix(sources_path, "--sources") if sources_path is not None else None
    if S_true is not None and S_true.shape[0] != X.shape[0]:
        raise click.BadParameter(
            f"--sources has {S_true.shape[0]} rows but DATA has {X.shape[0]}",
            param_hint="--sources",
        )
    A_true = _load_matrix(mixing_path, "--mixing") if mixing_path is not None else None
    est = VCRegICA(
        n_components=n_components,
        projector=projector,
        width=width,
        max_iter=max_iter,
        tol=tol,
        n_restarts=n_restarts,
        random_state=seed,
    )
    try:
        S_hat = est.fit_transform(X)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    out_dir.mkdir(parents=True, exist_ok=True)
    _save_npy(out_dir / "sources.npy", S_hat)
    _save_csv(out_dir / "sources.csv", S_hat)
    _save_npy(out_dir / "unmixing.npy", est.components_)
    _save_npy(out_dir / "mixing.npy", est.mixing_)
    _save_npy(out_dir / "mean.npy", est.mean_)
    info = {"n_iter": est.n_iter_, "converged": est.converged_, "loss": est.loss_}
    if S_true is not None:
        info["mcc_pearson"] = mean_corr_coef(S_hat, S_true)
        info["mcc_spearman"] = mean_corr_coef(S_hat, S_true, method="spearman")
    if A_true is not None:
        try:
            info["amari_distance"] = amari_distance(est.components_, A_true)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--mixing") from exc
    if S_true is not None or A_true is not None:
        text = json.dumps(info, indent=2)
        atomic_write_text(out_dir / "metrics.json", text)
    click.echo(json.dumps(info))
    click.echo(f"wrote sources/unmixing/mixing to {out_dir}")
