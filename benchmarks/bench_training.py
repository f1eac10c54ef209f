"""Training throughput of ``vcreg.training.train`` (samples/s) for the shipped configs.

For each config the trainer runs ``--epochs`` epochs (monitoring off) and is compared, in the
same process and on the same data sizes, with a bare PyTorch loop doing the same optimizer steps
(same encoder + projector + loss + Adam, pre-computed views, no augmentation, no bookkeeping):
``ratio = trainer samples/s ÷ bare-loop samples/s`` is the trainer's overhead (1.0 = none),
robust to the machine's load. The MNIST-1D line also projects the default 50-epoch run's wall
time from the measured throughput (target ≤ 180 s on 2 CPU cores). Load averages are printed
because the machine may be shared.

    python benchmarks/bench_training.py [--epochs 2] [--fashion-samples 4096] [--no-fashion]
        [--out benchmarks/results/training_throughput.json]

Fashion-MNIST runs twice: with the shipped config's per-sample views in 2 DataLoader workers
(``augmentation.on_device=false``, ``data.num_workers=2``) and with views made from whole
batches in the training process (``augmentation.on_device=true``, the shipped setting).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402

from vcreg.training import TrainConfig, build_loss, build_model, load_bundle, train  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def bare_loop(cfg: TrainConfig, bundle, steps: int) -> float:
    """samples/s of a plain training loop with the config's model, loss and Adam."""
    model = build_model(cfg, bundle.input_shape)
    loss_fn = build_loss(cfg)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    x = bundle.train.tensors[0][: cfg.batch_size]
    xa, xb = x + 0.01 * torch.randn_like(x), x - 0.01 * torch.randn_like(x)
    model.train()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = loss_fn(model(xa), model(xb))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps * cfg.batch_size / (time.perf_counter() - t0)


RESULTS: dict = {"rows": []}


def bench(
    name: str, overrides: list[str], epochs: int, default_epochs: int, label: str = ""
) -> None:
    cfg = TrainConfig.from_yaml(
        ROOT / "configs" / name,
        [
            f"epochs={epochs}",
            "monitor.every=0",
            "device=cpu",
            "schedule.warmup_epochs=0",
            *overrides,
        ],
    )
    bundle = load_bundle(cfg)
    t0 = time.perf_counter()
    res = train(cfg, progress=False, bundle=bundle)
    wall = time.perf_counter() - t0
    # the first epoch includes warm-up effects; use the last one
    sps = res.history[-1]["samples_per_s"]
    steps = res.extra["steps_per_epoch"]
    base = bare_loop(cfg, bundle, steps)
    n = steps * cfg.batch_size
    print(
        f"{label or name:<26} trainer {sps:8.0f} samples/s | bare loop {base:8.0f} samples/s | "
        f"ratio {sps / base:5.2f} | {steps} steps/epoch, {epochs} epochs in {wall:.1f} s"
    )
    RESULTS["rows"].append(
        {
            "config": name,
            "label": label or name,
            "overrides": overrides,
            "trainer_samples_per_s": sps,
            "bare_loop_samples_per_s": base,
            "ratio": sps / base,
            "steps_per_epoch": steps,
            "epochs": epochs,
            "wall_s": wall,
        }
    )
    if default_epochs:
        projected = default_epochs * n / sps
        print(
            f"{'':<26} projected {default_epochs}-epoch run: {projected:.0f} s "
            f"(target <= 180 s: ratio {projected / 180:.2f})"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--fashion-samples", type=int, default=4096)
    ap.add_argument("--no-fashion", action="store_true")
    ap.add_argument(
        "--out", default=str(ROOT / "benchmarks" / "results" / "training_throughput.json")
    )
    args = ap.parse_args()
    RESULTS.update(command=" ".join(["python", *sys.argv]), torch=torch.__version__)
    RESULTS.update(threads=torch.get_num_threads(), load_average_start=os.getloadavg())
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"load average at start {os.getloadavg()}"
    )
    bench("mnist1d_vicreg.yaml", [], args.epochs, default_epochs=50)
    if not args.no_fashion:
        fm = [f"data.train_samples={args.fashion_samples}", "data.options.ood=false"]
        try:
            workers = [*fm, "augmentation.on_device=false", "data.num_workers=2"]
            bench("fashionmnist_vicreg.yaml", workers, args.epochs, 0, "fashion, 2 workers")
            # the same steps with both views made from whole batches in the training process
            on = [*fm, "augmentation.on_device=true"]
            bench("fashionmnist_vicreg.yaml", on, args.epochs, 0, "fashion, on_device")
        except (FileNotFoundError, ValueError) as exc:
            print(f"fashionmnist_vicreg.yaml skipped: {str(exc).splitlines()[0]}")
    print(f"load average at end {os.getloadavg()}")
    RESULTS["load_average_end"] = os.getloadavg()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(RESULTS, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
