"""Does ``--estimate``'s cost model predict what a unit takes? Predicted vs measured, same run.

The ``paper`` preset shrunk by ``--set`` overrides to a few CPU minutes (synthetic CIFAR-10
root in the real formats, the ResNet-18 replaced by ``smallcnn`` unless ``--resnet``), one
seed, one trained-MLP width: ``estimate_reproduction`` predicts each training unit's seconds
(a timed step per model, scaled), then ``run_reproduction`` computes the same units and the
cache records their measured seconds (the trainer's wall time and the whole unit's). The ratio
measured / predicted is printed per unit; both are taken back to back on the same machine.

    python benchmarks/bench_cost_model.py        # -> benchmarks/results/cost_model.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from vcreg.data import write_synthetic_cifar
from vcreg.experiments import run_reproduction
from vcreg.experiments.estimate import estimate_reproduction
from vcreg.experiments.presets import parse_overrides

OUT = Path(__file__).parent / "results" / "cost_model.json"


def overrides(resnet: bool) -> list[str]:
    sets = [
        "C2.n_train=2048",
        "C2.batch_size=256",
        "C2.optimizer.lr=0.3",
        "C2.epochs=3",
        "C2.warmup_epochs=0",
        "C2.monitor_every=3",
        "C2.n_eval=128",
        "C2.probe_train=512",
        "C2.probe_iter=50",
        "C2.ood_samples=128",
        "C2.data_options.ood_corruptions=[gaussian_noise]",
        "C2.data_options.ood_severities=[3]",
        "C2.widths=[512]",
        "C2.kinds=[trained]",
        "C2.depths=[2]",
        "C2.depth_width=512",
        "C2.controls=[no_projector]",
    ]
    if not resnet:
        sets += ["C2.encoder=smallcnn", "C2.repr_dim=128"]
    return sets


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--resnet", action="store_true", help="keep the ResNet-18 (slow on a CPU)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args()
    o = parse_overrides(overrides(args.resnet), "paper")
    kw = dict(preset="paper", only="C2", seeds=1, overrides=o, device=args.device)
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        root = write_synthetic_cifar(Path(tmp) / "data", n_train=2048, n_test=256)
        t0 = time.time()
        est = estimate_reproduction(**kw, data_root=root, out=Path(tmp) / "run")
        t_est = time.time() - t0
        run_reproduction(**kw, data_root=root, out=Path(tmp) / "run", progress=False, jobs=1)
        measured = {}
        for f in (Path(tmp) / "run" / "cache" / "train").glob("*.json"):
            rec = json.loads(f.read_text())
            label = rec["params"]["config"]["name"]
            measured[label] = (rec["seconds"], rec["value"]["train_seconds"])
    rows = []
    for u in est["units"]:
        if "steps" not in u:
            continue
        key = u["label"].replace("/", "_").replace(" ", "_")
        unit_s, train_s = measured[key]
        cal = est["calibration"][u["calibration"]]
        rows.append(
            {
                "unit": u["label"],
                "steps": u["steps"],
                "encoded": u["encoded"],
                "predicted_s": u["seconds"],
                "predicted_train_s": u["steps"] * cal["step_seconds"],
                "measured_unit_s": unit_s,
                "measured_train_s": train_s,
                "ratio_unit": unit_s / u["seconds"],
                "ratio_train": train_s / (u["steps"] * cal["step_seconds"]),
            }
        )
    res = {
        "command": " ".join(["python", *sys.argv]),
        "overrides": overrides(args.resnet),
        "device": est["device"],
        "load_average_start": list(load0),
        "load_average_end": list(os.getloadavg()),
        "estimate_seconds": t_est,
        "units": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=1))
    print(
        f"device {est['device']['name']}, load {load0[0]:.1f} -> {res['load_average_end'][0]:.1f}"
    )
    print("| unit | steps | predicted train s | measured train s | ratio | predicted unit s | "
          "measured unit s | ratio |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['unit']} | {r['steps']} | {r['predicted_train_s']:.1f} | "
            f"{r['measured_train_s']:.1f} | {r['ratio_train']:.2f} | {r['predicted_s']:.1f} | "
            f"{r['measured_unit_s']:.1f} | {r['ratio_unit']:.2f} |"
        )
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
