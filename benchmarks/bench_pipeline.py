"""Input pipeline vs model on the device present: can the views be made as fast as the model
trains on them? And which batched augmentation implementation to use.

1. Implementations on a batched tensor (CIFAR recipe + blur, 3x32x32, ``--batch``): torchvision
   v2 sample by sample (the reference: what DataLoader workers run), torchvision v2 on the whole
   batch (it draws ONE set of parameters for all samples), kornia (if installed) and vcreg's
   ``ImageAugmentation.sample_params`` + ``apply``. For each: samples/s (wall and CPU time),
   whether identical inputs get distinct views, and the largest two-sample KS distance to the
   reference over per-view statistics (crop centre/size, flip, brightness, contrast,
   colourfulness, high frequencies; ``--ks-samples`` views each) with its p-value.
2. The trainer's feeding (``vcreg.training.feeding.Batches``) on the device, both views of each
   batch: on-device batches (``augmentation.on_device: true``) and, on the CPU, per-sample
   views in ``--workers`` DataLoader workers (the shipped configs' path before the switch),
   next to the model's forward/backward alone (ResNet-18 CIFAR stem + projector 2048-2048-2048,
   VICReg, LARS, both views, bf16 autocast on CUDA as the trainer; ``configs/cifar10_vicreg.yaml``).
   ``pipeline / model`` > 1 means the pipeline does not bound training.

Data: CIFAR-10 from ``--data-root`` when given, else a synthetic root in the same format
(``vcreg.data.write_synthetic_cifar``; the pipeline's speed does not depend on the pixels).
Writes ``benchmarks/results/pipeline_<device>.json``. Load averages are recorded because the
machine may be shared; compare ratios measured in the same run.

    python benchmarks/bench_pipeline.py [--batch 256] [--steps 3] [--device auto]
        [--ks-samples 2000] [--workers 2] [--data-root DIR] [--no-compare] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy.stats import ks_2samp  # noqa: E402

from vcreg._device import resolve_device  # noqa: E402
from vcreg.data import make_augmentation, write_synthetic_cifar  # noqa: E402
from vcreg.training import TrainConfig, build_loss, build_model, load_bundle  # noqa: E402
from vcreg.training.feeding import Batches, make_views  # noqa: E402
from vcreg.training.optim import build_optimizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, reps: int) -> tuple[float, float]:
    """(wall s, CPU s) per call: median over ``reps`` calls after one warm-up call."""
    fn()
    _sync(device)
    walls, cpus = [], []
    for _ in range(reps):
        w, c = time.perf_counter(), time.process_time()
        fn()
        _sync(device)
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return float(np.median(walls)), float(np.median(cpus))


# -- 1. implementations ------------------------------------------------------------------------


def coordinate_images(n: int) -> torch.Tensor:
    """[0, 1] images: channel 0 = x of the pixel centre, 1 = y, 2 = a smooth random pattern."""
    t = (torch.arange(32) + 0.5) / 32
    g = torch.Generator().manual_seed(0)
    pattern = torch.nn.functional.interpolate(
        torch.rand(1, 1, 4, 4, generator=g), size=(32, 32), mode="bilinear", align_corners=False
    )[0, 0]
    img = torch.stack([t.expand(32, 32), t[:, None].expand(32, 32), pattern])
    return img.expand(n, 3, 32, 32).clone()


def view_stats(out: torch.Tensor) -> dict[str, np.ndarray]:
    left, right = out[:, 0, :, 0].mean(1), out[:, 0, :, -1].mean(1)
    top, bottom = out[:, 1, 0, :].mean(1), out[:, 1, -1, :].mean(1)
    lap = 4 * out[..., 1:-1, 1:-1] - out[..., :-2, 1:-1] - out[..., 2:, 1:-1]
    lap = lap - out[..., 1:-1, :-2] - out[..., 1:-1, 2:]
    d = {
        "crop_cx": (left + right) / 2,
        "crop_w": (right - left).abs(),
        "crop_cy": (top + bottom) / 2,
        "crop_h": bottom - top,
        "flip": (left > right).float(),
        "mean": out.mean((1, 2, 3)),
        "contrast": out.std((1, 2, 3)),
        "colour": (out.amax(1) - out.amin(1)).mean((1, 2)),
        "high_freq": lap.pow(2).mean((1, 2, 3)),
    }
    return {k: np.round(v.float().cpu().numpy(), 4) for k, v in d.items()}  # atoms coincide


def implementations(device: torch.device) -> dict:
    """name -> f(images in [0, 1] on ``device``) -> views in [0, 1]."""
    aug = make_augmentation("cifar10", (3, 32, 32), blur_p=0.5, seed=0)
    m, s = aug._mean.to(device), aug._std.to(device)
    impl = {
        "torchvision v2, per sample (reference)": lambda x: torch.stack(
            [aug._pipeline(i) for i in x]
        ),
        "torchvision v2, whole batch": lambda x: aug._pipeline(x),
        "vcreg batched": lambda x: aug((x - m) / s) * s + m,
    }
    try:
        import kornia.augmentation as K

        k = K.AugmentationSequential(
            K.RandomResizedCrop((32, 32), scale=(0.2, 1.0), ratio=(3 / 4, 4 / 3)),
            K.RandomHorizontalFlip(p=0.5),
            K.ColorJitter(0.4, 0.4, 0.2, 0.1, p=0.8),
            K.RandomGrayscale(p=0.2),
            K.RandomGaussianBlur((3, 3), (0.1, 2.0), p=0.5),
            K.RandomSolarize(thresholds=0.0, additions=0.0, p=0.1),
        )
        impl[f"kornia {__import__('kornia').__version__}"] = k
    except ImportError:
        print("kornia not installed: its column is skipped (pip install kornia)")
    return impl


def compare(device: torch.device, batch: int, ks_n: int, reps: int) -> dict:
    impl = implementations(device)
    x = coordinate_images(batch).to(device)
    same = coordinate_images(ks_n).to(device)
    torch.manual_seed(0)
    ref = view_stats(impl["torchvision v2, per sample (reference)"](same))
    out = {}
    for name, fn in impl.items():
        wall, cpu = timed(lambda fn=fn: fn(x), device, reps)
        views = fn(x[:1].expand(64, 3, 32, 32).contiguous())
        distinct = len({tuple(v.flatten()[::37].tolist()) for v in views.cpu()})
        torch.manual_seed(1)
        stats = view_stats(fn(same))
        ks = {k: ks_2samp(ref[k], stats[k]) for k in ref}
        worst = max(ks, key=lambda k: ks[k].statistic)
        out[name] = {
            "samples_per_s_wall": batch / wall,
            "samples_per_s_cpu": batch / cpu,
            "distinct_views_of_64_identical_inputs": distinct,
            "ks_max_statistic": float(ks[worst].statistic),
            "ks_max_at": worst,
            "ks_min_pvalue": float(min(r.pvalue for r in ks.values())),
        }
        r = out[name]
        print(
            f"  {name:<40} {r['samples_per_s_wall']:9.0f} samples/s wall "
            f"({r['samples_per_s_cpu']:9.0f} CPU) | distinct views {distinct:2d}/64 | "
            f"KS vs reference: max D {r['ks_max_statistic']:.3f} ({worst}), "
            f"min p {r['ks_min_pvalue']:.2g}"
        )
    return out


# -- 2. pipeline vs model ----------------------------------------------------------------------


def cifar_config(root: str, device: torch.device, batch: int, **over) -> TrainConfig:
    cfg = TrainConfig.from_yaml(
        ROOT / "configs" / "cifar10_vicreg.yaml",
        [f"data.root={root}", f"device={device}", f"batch_size={batch}", "monitor.every=0"],
    )
    return cfg.replace(over)


def pipeline_rate(cfg: TrainConfig, bundle, device: torch.device, steps: int) -> float:
    """Views per second (both views of each sample count once) of the trainer's feeding."""
    b = Batches(cfg, bundle.train, make_views(cfg, bundle), 1, 0, device)
    it = b.epoch(0, 0, device.type == "cuda")
    next(it)  # warm-up (and the workers' start)
    _sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        va, vb, _ = next(it)
    _sync(device)
    return steps * cfg.batch_size / (time.perf_counter() - t)


def model_rate(cfg: TrainConfig, device: torch.device, steps: int) -> float:
    """Samples per second of forward + backward + optimizer step on both views, fixed inputs."""
    model = build_model(cfg, (3, 32, 32)).to(device).train()
    loss_fn = build_loss(cfg).to(device)
    opt = build_optimizer([model], cfg.optimizer)
    g = torch.Generator().manual_seed(0)
    xa = torch.randn(cfg.batch_size, 3, 32, 32, generator=g).to(device)
    xb = torch.randn(cfg.batch_size, 3, 32, 32, generator=g).to(device)
    amp = device.type == "cuda"

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            za, zb = model(xa), model(xb)
        loss = loss_fn(za.float(), zb.float())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    _sync(device)
    t = time.perf_counter()
    for _ in range(steps):
        step()
    _sync(device)
    return steps * cfg.batch_size / (time.perf_counter() - t)


def pipeline(args, device: torch.device, root: str) -> dict:
    cfg = cifar_config(root, device, args.batch, **{"augmentation.on_device": True})
    bundle = load_bundle(cfg)
    steps_pipe = max(args.steps, 5)
    res = {"on_device_samples_per_s": pipeline_rate(cfg, bundle, device, steps_pipe)}
    print(
        f"  on-device batches ({device})            {res['on_device_samples_per_s']:9.0f} samples/s"
    )
    if device.type == "cpu" and args.workers > 0:
        w = cfg.replace({"augmentation.on_device": False, "data.num_workers": args.workers})
        res["per_sample_workers_samples_per_s"] = pipeline_rate(w, bundle, device, steps_pipe)
        res["workers"] = args.workers
        print(
            f"  per-sample views in {args.workers} workers         "
            f"{res['per_sample_workers_samples_per_s']:9.0f} samples/s"
        )
    res["model_samples_per_s"] = model_rate(cfg, device, args.steps)
    res["model"] = "resnet18 (CIFAR stem) + projector 2048-2048-2048, VICReg, LARS, 2 views"
    res["pipeline_over_model"] = res["on_device_samples_per_s"] / res["model_samples_per_s"]
    print(
        f"  model forward/backward alone             {res['model_samples_per_s']:9.0f} samples/s"
        f" -> pipeline / model = {res['pipeline_over_model']:.1f}"
    )
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=3, help="timed model steps (more on a GPU)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--ks-samples", type=int, default=2000)
    ap.add_argument("--reps", type=int, default=3, help="timed calls per implementation")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--no-compare", action="store_true")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    info = {
        "command": " ".join(["python", *sys.argv]),
        "device": str(device),
        "device_name": name or platform.machine(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "batch": args.batch,
        "load_average_start": os.getloadavg(),
    }
    print(
        f"{info['device']} ({info['device_name']}), torch {torch.__version__}, "
        f"{info['threads']} threads, load average {info['load_average_start']}"
    )
    if not args.no_compare:
        print(f"1. augmentations on a batch of {args.batch} (CIFAR recipe + blur, 3x32x32):")
        info["implementations"] = compare(device, args.batch, args.ks_samples, args.reps)
        info["ks_samples"] = args.ks_samples
    print(f"2. trainer feeding vs model, batch {args.batch}:")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data_root or str(
            write_synthetic_cifar(tmp, n_train=50_000, n_test=10, corruptions=None)
        )
        info["data"] = "CIFAR-10 from --data-root" if args.data_root else "synthetic, CIFAR format"
        info["pipeline"] = pipeline(args, device, root)
    info["load_average_end"] = os.getloadavg()
    print(f"load average at end {info['load_average_end']}")
    out = (
        Path(args.out)
        if args.out
        else ROOT / "benchmarks" / "results" / f"pipeline_{device.type}.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(info, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
