"""Why does VICReg training not reach the VCReg constraint? One short run per recipe variant.

    OMP_NUM_THREADS=1 nice -n 5 python benchmarks/bench_regime.py            # the docs table
    python benchmarks/bench_regime.py --only base,k512 --epochs 2           # a smoke run

Each row trains ``configs/mnist1d_vicreg.yaml`` (MNIST-1D, ``cnn1d`` encoder) with a few keys
changed (``--set`` syntax, ``ROWS`` below) and reports, at the end of training, on held-out
test signals: the embedding's mean std, the fraction of its dimensions at VICReg's hinge
(std ≥ 0.9·γ, :data:`vcreg.diagnostics.HINGE_TOL`), the mean squared off-diagonal correlation
in units of its independent-features level ``1/(n−1)`` (``emb_offdiag_excess``), the trainer's
loss terms (variance, covariance at the first and last epoch), a ridge-probe accuracy, and
whether :func:`vcreg.diagnostics.constraint_met` holds. The rank floor of the covariance term
(k embedding dims, batch n): ``c ≥ 2·s⁴·(k/(n−1) − 1)`` for two views at std s, whose pull on s at
s = 1, ``8·(k/(n−1) − 1)``, exceeds the hinge's ``μ = 25`` once ``k/(n−1) > 4.1``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from vcreg.diagnostics import constraint_met, embedding_diagnostics  # noqa: E402
from vcreg.evaluation import dataset_tensors, encode, ridge_accuracy  # noqa: E402
from vcreg.training import TrainConfig, load_bundle, train  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "mnist1d_vicreg.yaml"

# name -> overrides of the default config (epochs are set by --epochs unless given here)
ROWS: dict[str, list[str]] = {
    "base": [],  # the shipped default: Adam 1e-3, 2048-2048, batch 256, 4000 signals
    "k1024": ["projector.spec=1024-1024"],
    "k512": ["projector.spec=512-512"],
    "k256": ["projector.spec=256-256"],
    "k2048_b1024": ["batch_size=1024"],
    "k512_lr3e-3": ["projector.spec=512-512", "optimizer.lr=3e-3"],
    "k512_lr3e-4": ["projector.spec=512-512", "optimizer.lr=3e-4"],
    "k512_lars": [
        "projector.spec=512-512",
        "optimizer.name=lars",
        "optimizer.lr=0.2",
        "optimizer.weight_decay=1e-6",
        "schedule.warmup_epochs=10",
    ],
    "k2048_lars": [
        "optimizer.name=lars",
        "optimizer.lr=0.2",
        "optimizer.weight_decay=1e-6",
        "schedule.warmup_epochs=10",
    ],
    # 4x the signals at the same number of steps (5 epochs x 62 steps)
    "k512_n16k": ["projector.spec=512-512", "data.options.num_samples=20000", "epochs=5"],
    "k512_mu50": ["projector.spec=512-512", "loss.params.mu=50.0"],
    "k512_lam10": ["projector.spec=512-512", "loss.params.lambda_=10.0"],
    # longer training (steps) at a narrow width
    "k256_ep100": ["projector.spec=256-256", "epochs=100"],
    "k128": ["projector.spec=128-128"],
    "k32": ["projector.spec=32-32"],
    "k64": ["projector.spec=64-64"],
    "k32_ep60": ["projector.spec=32-32", "epochs=60"],
    "k256_mu50_lam10": [
        "projector.spec=256-256",
        "loss.params.mu=50.0",
        "loss.params.lambda_=10.0",
    ],
    "k256_mu50_lam10_ep60": [
        "projector.spec=256-256",
        "loss.params.mu=50.0",
        "loss.params.lambda_=10.0",
        "epochs=60",
    ],
    "k32_lam10_ep60": ["projector.spec=32-32", "loss.params.lambda_=10.0", "epochs=60"],
}


def run(name: str, overrides: list[str], epochs: int, n_eval: int, bundles: dict) -> dict:
    sets = [f"epochs={epochs}", "device=cpu", "monitor.every=0", "tensorboard=false"]
    if not any(o.startswith("schedule.warmup_epochs") for o in overrides):
        sets.append(f"schedule.warmup_epochs={min(2, epochs)}")
    cfg = TrainConfig.from_yaml(CONFIG, sets + overrides)
    key = json.dumps(cfg.data.options, sort_keys=True)
    if key not in bundles:
        bundles[key] = load_bundle(cfg)
    bundle = bundles[key]
    t0 = time.time()
    res = train(cfg, out_dir=None, progress=False, bundle=bundle)
    if res.status != "completed":  # SIGINT/SIGTERM stop the trainer cleanly: not a result
        raise SystemExit(f"row {name} was interrupted after {len(res.history)} epochs")
    wall = time.time() - t0
    x_eval, y_eval = dataset_tensors(bundle.test, n_eval)
    x_tr, y_tr = dataset_tensors(bundle.train, 2000)
    with torch.no_grad():
        f_eval = encode(res.encoder, x_eval, 512, "cpu")
        f_tr = encode(res.encoder, x_tr, 512, "cpu")
    diag = embedding_diagnostics(res.projector, f_eval)
    h = res.history
    return {
        "row": name,
        "overrides": overrides,
        "steps": res.extra["steps_per_epoch"] * len(h),
        "wall_s": wall,
        "var_term": h[-1].get("loss_variance"),
        "cov_first": h[0].get("loss_covariance"),
        "cov_last": h[-1].get("loss_covariance"),
        "inv_last": h[-1].get("loss_invariance"),
        "probe_acc": ridge_accuracy(f_tr, y_tr, f_eval, y_eval),
        "met": constraint_met(diag),
        **diag,
    }


def _setting(r: dict, key: str, default: float) -> float:
    for o in r["overrides"]:
        if o.startswith(key + "="):
            return float(o.split("=", 1)[1])
    return default


def forces(r: dict) -> dict:
    """The force balance on the embedding's scale s (module docstring of the docs section).

    With the two views' correlation ρ and the mean squared off-diagonal correlation r̄² read off
    the last epoch's loss terms (inv = 2(1−ρ)s², cov = 2s⁴(k−1)r̄², both views), the pull of the
    invariance and covariance terms on s is ``(2λ·inv + 4ν·cov)/s``, balanced by the hinge's μ
    while dims are below it (``pull_now``/μ ≈ 1 at equilibrium); at s = 1 it would be
    ``4λ(1−ρ) + 8(k−1)r̄²`` (``pull_at_1``), which must be ≤ μ for the hinge to be reachable;
    ``floor_at_1 = 8(k−1)/(n−1)`` is the covariance pull of *independent* features (sampling
    noise of an n-sample covariance), a floor no training removes.
    """
    lam = _setting(r, "loss.params.lambda_", 25.0)
    mu = _setting(r, "loss.params.mu", 25.0)
    n = int(_setting(r, "batch_size", 256))
    spec = next(
        (o.split("=")[1] for o in r["overrides"] if o.startswith("projector.spec")), "2048-2048"
    )
    k = int(spec.split("-")[-1])
    s = r["emb_std_mean"]
    inv, cov = r["inv_last"], r["cov_last"]
    return {
        "one_minus_rho": inv / (2 * s * s),
        "pull_now_over_mu": (2 * lam * inv + 4 * cov) / s / mu,
        "pull_at_1_over_mu": (2 * lam * inv / s**2 + 4 * cov / s**4) / mu,
        "floor_at_1_over_mu": 8 * (k - 1) / (n - 1) / mu,
    }


def _fmt(r: dict) -> str:
    f = forces(r)
    return (
        f"| {r['row']} | {r['steps']} | {r['wall_s']:.0f} | {r['emb_std_mean']:.3f} "
        f"| {100 * r['emb_hinge_frac']:.0f} % | {100 * r['emb_at_hinge_frac']:.0f} % "
        f"| {r['emb_offdiag_excess']:.1f} | {r['var_term']:.3f} "
        f"| {r['cov_first']:.2f} → {r['cov_last']:.2f} | {r['inv_last']:.3f} "
        f"| {f['one_minus_rho']:.2f} | {f['pull_now_over_mu']:.2f} | {f['pull_at_1_over_mu']:.1f} "
        f"| {f['floor_at_1_over_mu']:.2f} | {r['probe_acc']:.3f} | {'yes' if r['met'] else 'no'} |"
    )


HEADER = (
    "| row | steps | s | emb std | std ≥ γ | at hinge (≥ 0.9γ) | off-diag r² / indep. "
    "| var term | cov term first → last | inv term | 1 − ρ | pull/μ now | pull/μ at std 1 "
    "| sampling floor/μ at std 1 | probe acc | constraint met |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", help="comma-separated row names (default: all)")
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--n-eval", type=int, default=512, help="held-out signals measured")
    ap.add_argument("--json", type=Path, help="also write the rows here (appended per row)")
    ap.add_argument("--table", nargs="+", type=Path, help="only print the table of these JSONs")
    a = ap.parse_args()
    print(HEADER)
    if a.table:
        for path in a.table:
            for r in json.loads(path.read_text()):
                print(_fmt(r))
        return
    names = a.only.split(",") if a.only else list(ROWS)
    bundles: dict = {}
    rows = []
    for name in names:
        over = [o for o in ROWS[name]]
        ep = a.epochs
        r = run(name, over, ep, a.n_eval, bundles)
        rows.append(r)
        print(_fmt(r), flush=True)
        if a.json:
            a.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
