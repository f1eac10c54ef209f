"""Batched image augmentations (vcreg.data.augment): each sample its own parameters, drawn with
torchvision's distributions and applied with torchvision's operations, on any device.

References are torchvision itself: its functional ops with the same parameters (exact), its
``RandomResizedCrop.get_params`` sampler and its per-sample v2 pipeline (distributions, KS tests
at fixed seeds, each with a control that the test detects a wrong distribution)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.stats import chisquare, ks_2samp
from torchvision import transforms as T
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from vcreg.data import make_augmentation
from vcreg.data.augment import take_rows

RECIPES = [("cifar10", (3, 32, 32), {"blur_p": 0.5}), ("fashion-mnist", (1, 28, 28), {})]
RECIPES.append(("imagenet", (3, 40, 40), {}))


def _torchvision_view(aug, pix: torch.Tensor, p: dict, i: int) -> torch.Tensor:
    """Sample ``i`` through torchvision's functional ops with the parameters of row ``i``."""
    box = [int(p[k][i]) for k in ("top", "left", "height", "width")]
    im = TF.resized_crop(pix, *box, list(aug.size), antialias=True)
    if p["flip"][i]:
        im = TF.horizontal_flip(im)
    if "jitter" in p and p["jitter"][i]:
        f = p["jitter_factors"][i].tolist()
        ops = (TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue)
        for op in p["jitter_order"][i].tolist():
            im = ops[op](im, f[op])
    if "gray" in p and p["gray"][i]:
        im = TF.rgb_to_grayscale(im, 3)
    if "blur" in p and p["blur"][i]:
        k = max(3, int(0.1 * min(aug.size)) // 2 * 2 + 1)
        sigma = float(p["blur_sigma"][i])
        im = TF.gaussian_blur(im, [k, k], [sigma, sigma])
    if "solarize" in p and p["solarize"][i]:
        im = TF.solarize(im, 0.5)
    return im


@pytest.mark.parametrize(("name", "shape", "params"), RECIPES)
def test_each_sample_equals_torchvision_with_its_parameters(name, shape, params) -> None:
    aug = make_augmentation(name, shape, **params)
    m, s = aug._mean, aug._std
    pix = torch.rand(48, *shape, generator=torch.Generator().manual_seed(1))
    p = aug.sample_params(pix.shape, torch.Generator().manual_seed(2))
    out = aug.apply((pix - m) / s, p) * s + m
    ref = torch.stack([_torchvision_view(aug, pix[i], p, i) for i in range(len(pix))])
    torch.testing.assert_close(out, ref, rtol=0, atol=5e-5)
    # the batch exercised every operation on some samples and not on others
    for key in ("flip", "jitter", "gray", "blur", "solarize"):
        if key in p:
            assert 0 < int(p[key].sum()) < len(pix), key
    assert len(set(p["width"].tolist())) > 5


def test_calling_the_augmentation_is_sample_params_then_apply() -> None:
    aug = make_augmentation("cifar10", (3, 32, 32))
    x = torch.randn(16, 3, 32, 32)
    p = aug.sample_params(x.shape, torch.Generator().manual_seed(0))
    assert torch.equal(aug(x, generator=torch.Generator().manual_seed(0)), aug.apply(x, p))
    # a rank's rows of the global batch's parameters give the rows of the global views
    full = aug.apply(x, p)
    assert torch.equal(aug.apply(x[4:12], take_rows(p, 4, 12)), full[4:12])


def _crop_boxes_torchvision(n: int, h: int, w: int, scale) -> np.ndarray:
    torch.manual_seed(0)
    img = torch.zeros(1, h, w)
    return np.array(
        [T.RandomResizedCrop.get_params(img, list(scale), [3 / 4, 4 / 3]) for _ in range(n)]
    )


@pytest.mark.parametrize("hw", [(32, 32), (28, 28), (24, 40)])
def test_crop_boxes_follow_torchvisions_sampler(hw) -> None:
    h, w = hw
    n = 3000
    ref = _crop_boxes_torchvision(n, h, w, (0.2, 1.0))
    for scale, same in (((0.2, 1.0), True), ((0.3, 1.0), False)):  # the second: a control
        aug = make_augmentation("cifar10", (3, h, w), crop_scale=scale)
        p = aug.sample_params((n, 3, h, w), torch.Generator().manual_seed(1))
        ours = torch.stack([p["top"], p["left"], p["height"], p["width"]], 1).numpy()
        assert (ours[:, 0] + ours[:, 2] <= h).all() and (ours[:, 1] + ours[:, 3] <= w).all()
        pvals = [ks_2samp(ref[:, k], ours[:, k]).pvalue for k in range(4)]
        if same:
            assert min(pvals) > 1e-3, pvals
        else:
            assert min(pvals) < 1e-6, pvals


def test_jitter_order_and_factors_are_per_sample() -> None:
    aug = make_augmentation("cifar10", (3, 32, 32))
    n = 4800
    p = aug.sample_params((n, 3, 32, 32), torch.Generator().manual_seed(3))
    perms = {q: i for i, q in enumerate(itertools.permutations(range(4)))}
    counts = np.bincount([perms[tuple(r)] for r in p["jitter_order"].tolist()], minlength=24)
    assert chisquare(counts).pvalue > 1e-3  # uniform over the 24 orders
    f = p["jitter_factors"].numpy()
    for k, (lo, hi) in enumerate([(0.6, 1.4), (0.6, 1.4), (0.8, 1.2), (-0.1, 0.1)]):
        assert ks_2samp(f[:, k], np.random.default_rng(k).uniform(lo, hi, n)).pvalue > 1e-3
    assert abs(float(p["jitter"].float().mean()) - 0.8) < 0.03
    assert abs(float(p["gray"].float().mean()) - 0.2) < 0.03


def _coordinate_images(n: int) -> torch.Tensor:
    """Channel 0: x of the pixel centre, channel 1: y, channel 2: 0.5 (in [0, 1])."""
    t = (torch.arange(32) + 0.5) / 32
    img = torch.stack([t.expand(32, 32), t[:, None].expand(32, 32), torch.full((32, 32), 0.5)])
    return img.expand(n, 3, 32, 32).clone()


def _stats(out: torch.Tensor) -> dict[str, np.ndarray]:
    """Per-view statistics: crop centre/size and flip read from the coordinate channels, and
    appearance (channel means, contrast, colourfulness, high frequencies); rounded so that
    atoms (e.g. grey views) coincide across implementations."""
    left, right = out[:, 0, :, 0].mean(1), out[:, 0, :, -1].mean(1)
    top, bottom = out[:, 1, 0, :].mean(1), out[:, 1, -1, :].mean(1)
    lap = out[..., 1:-1, 1:-1] * 4 - out[..., :-2, 1:-1] - out[..., 2:, 1:-1]
    lap = lap - out[..., 1:-1, :-2] - out[..., 1:-1, 2:]
    d = {
        "cx": (left + right) / 2,
        "cw": (right - left).abs(),
        "cy": (top + bottom) / 2,
        "ch": bottom - top,
        "flip": (left > right).float(),
        "mean": out.mean((1, 2, 3)),
        "std": out.std((1, 2, 3)),
        "colour": (out.amax(1) - out.amin(1)).mean((1, 2)),
        "lap": lap.pow(2).mean((1, 2, 3)),
    }
    return {k: np.round(v.numpy(), 4) for k, v in d.items()}


def test_views_are_distributed_as_torchvisions_per_sample_pipeline() -> None:
    """The whole CIFAR recipe (+ blur) on identical coordinate images: batched views against
    torchvision's v2 pipeline applied sample by sample; torchvision's pipeline applied to the
    batch at once (ONE set of parameters for all samples) is the control that must fail."""
    n = 300  # bench_pipeline.py measures the same at n = 2000
    aug = make_augmentation("cifar10", (3, 32, 32), blur_p=0.5, seed=0)
    img = _coordinate_images(n)
    m, s = aug._mean, aug._std
    ours = _stats(aug((img - m) / s) * s + m)
    torch.manual_seed(1)
    ref = _stats(torch.stack([aug._pipeline(im) for im in img]))
    same_batch = _stats(aug._pipeline(img))
    for key in ref:
        assert ks_2samp(ref[key], ours[key]).pvalue > 1e-3, key
    assert max(ks_2samp(ref[k], same_batch[k]).statistic for k in ref) > 0.5


def test_identical_inputs_get_different_views() -> None:
    x = torch.randn(1, 3, 32, 32).expand(32, 3, 32, 32).contiguous()
    out = make_augmentation("cifar10", (3, 32, 32), seed=0)(x)
    distinct = {tuple(v.flatten()[:64].tolist()) for v in out}
    assert len(distinct) == 32
    # what torchvision's v2 transforms do with a batched tensor: the same view for all
    tv = v2.Compose([v2.RandomResizedCrop(32, scale=(0.2, 1.0)), v2.ColorJitter(0.4, 0.4, 0.2)])
    same = tv(x)
    assert all(torch.equal(same[0], v) for v in same)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_views_equal_cpu_views() -> None:
    aug = make_augmentation("cifar10", (3, 32, 32), blur_p=0.5)
    x = torch.randn(64, 3, 32, 32)
    p = aug.sample_params(x.shape, torch.Generator().manual_seed(0))
    gpu = aug.apply(x.cuda(), p)
    assert gpu.is_cuda
    torch.testing.assert_close(gpu.cpu(), aug.apply(x, p), rtol=0, atol=1e-4)
    sig = make_augmentation("mnist1d", (1, 40))
    xs = torch.randn(64, 1, 40)
    ps = sig.sample_params(xs.shape, torch.Generator().manual_seed(0))
    torch.testing.assert_close(sig.apply(xs.cuda(), ps).cpu(), sig.apply(xs, ps), atol=1e-5, rtol=0)
