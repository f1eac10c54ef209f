"""Can VICReg's variance hinge be met through a random-feature projector? One row per scale.

    .venv/bin/python benchmarks/bench_rf_scale.py                 # the numbers in the docs
    .venv/bin/python benchmarks/bench_rf_scale.py --epochs 2 --widths 64 512   # a smoke run

Trains the full preset's random-feature configurations of the C2 sweep (MNIST-1D, ``cnn1d``
encoder, d = 64, standardized projector input, bandwidth 1, VICReg with γ = 1) once per feature
``scale`` of :class:`vcreg.projectors.RandomFeatureProjector` and prints, per width k, the
embedding's mean std and the fraction of its dimensions meeting the hinge ``std ≥ 1``
(``vcreg.diagnostics.embedding_diagnostics`` on held-out signals), the representation's mean
pairwise HSIC and the linear-probe accuracy. A scale whose hinge fraction stays at 0 can never
satisfy the loss's variance target: the encoder is pushed by a term it cannot zero.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from vcreg.experiments._training import RunSpec, run_metrics, run_training, train_unit  # noqa: E402
from vcreg.experiments.presets import resolve_settings  # noqa: E402
from vcreg.experiments.runner import Context  # noqa: E402


def run(scale: str, width: int, epochs: int, seed: int) -> dict:
    s = resolve_settings("full", overrides={"C2": {"rf_scale": scale, "epochs": epochs}})
    unit = train_unit(RunSpec("width", "random_features", width, 1, "vicreg", seed), s["C2"])
    ctx = Context(out_dir=Path("."), device="cpu", settings=s)
    t0 = time.time()
    m = run_metrics(run_training(unit, ctx))
    keys = ("emb_std_mean", "emb_hinge_frac", "hsic", "acc_id", "acc_ood")
    return {"scale": scale, "k": width, **{k: m[k] for k in keys}, "s": time.time() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scales", nargs="+", default=["unit", "standardized"])
    ap.add_argument("--widths", nargs="+", type=int, default=[64, 512, 2048, 8192])
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the rows here")
    a = ap.parse_args()
    rows = []
    print("| scale | k | emb std | hinge met | pairwise HSIC | ID acc | OOD acc |")
    print("|---|---|---|---|---|---|---|")
    for scale in a.scales:
        for w in a.widths:
            r = run(scale, w, a.epochs, a.seed)
            rows.append(r)
            print(
                f"| {scale} | {w} | {r['emb_std_mean']:.3f} | {100 * r['emb_hinge_frac']:.0f} % "
                f"| {r['hsic']:.5f} | {r['acc_id']:.3f} | {r['acc_ood']:.3f} |",
                flush=True,
            )
    if a.json:
        a.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
