"""Random augmentations for joint-embedding SSL and the two-view dataset wrapper.

API (docs/sections/data.md):

- ``make_augmentation(name, input_shape, **params) -> Augmentation``: a callable returning ONE
  random view. ``aug(x)`` accepts one sample (shape ``input_shape``) or a batch
  (shape ``(B, *input_shape)``); each sample of a batch gets its own random parameters.
  ``aug(x, generator=g)`` draws from ``torch.Generator`` ``g`` (reproducible); otherwise from the
  augmentation's own generator (``make_augmentation(..., seed=0)``) or torch's global RNG.
  ``aug(x, batch=True/False)`` asserts which layout is expected (default: inferred from ndim).
- ``TwoViewDataset(base, augmentation, seed=None)`` yields ``(view1, view2, y)``.

Inputs are the datasets' standardized float tensors. 1-D signal augmentations
(``SignalAugmentation``, names "mnist1d"/"signal1d") are vectorized over the batch, so applying
them to a whole (B, C, L) batch on the main process is the fast path on CPU. Image augmentations
(``ImageAugmentation``, names "fashion-mnist", "cifar10"/"cifar100"/"cifar", "imagenet") use
``torchvision.transforms.v2``: they undo the dataset standardization (mean/std), transform in
[0, 1] pixel space (colour jitter, solarize are defined there) and standardize again; a batch is
processed sample by sample (use DataLoader workers with ``TwoViewDataset`` for images).
torchvision draws from torch's global RNG, so with a generator each call runs under
``torch.random.fork_rng`` seeded from the generator (global RNG state is left untouched).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

#: Dataset standardization constants (mean, std per channel) of the image datasets, in [0, 1]
#: pixel units. CIFAR/ImageNet: the usual published values; Fashion-MNIST: train-set statistics
#: (checked against the data in tests when the dataset is installed).
NORMALIZATION: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "fashion-mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}


def _uniform(shape: tuple[int, ...], lo: float, hi: float, g: torch.Generator | None) -> Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=g)


@dataclass
class SignalAugmentation:
    """Batch-vectorized random view of 1-D signals of shape (C, L) or (B, C, L).

    Applied in this order, each with independent per-sample parameters:

    1. crop-resize: keep a random window of ``s * L`` samples, ``s ~ U[crop_scale]``, and
       resample it back to ``L`` by linear interpolation (time dilation), with prob. ``crop_p``;
    2. circular shift by an integer ``k ~ U{-max_shift..max_shift}`` (MNIST-1D digits are
       themselves circularly translated by the generator);
    3. time reversal with probability ``flip_p`` (off by default: it maps digits to other shapes);
    4. amplitude scaling by ``a ~ U[amplitude]``;
    5. additive linear trend ``c * linspace(-0.5, 0.5, L)``, ``c ~ U[-trend, trend]``
       (mimics MNIST-1D's shear);
    6. additive i.i.d. Gaussian noise with std ``noise_std`` (data are standardized to std 1).
    """

    crop_scale: tuple[float, float] = (0.7, 1.0)
    crop_p: float = 1.0
    max_shift: int = 4
    flip_p: float = 0.0
    amplitude: tuple[float, float] = (0.8, 1.2)
    trend: float = 0.3
    noise_std: float = 0.05
    seed: int | None = None

    def __post_init__(self) -> None:
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        for name in ("crop_p", "flip_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(
                    f"{name} must be a probability in [0, 1], got {getattr(self, name)}"
                )
        if self.max_shift < 0 or int(self.max_shift) != self.max_shift:
            raise ValueError(f"max_shift must be a non-negative int, got {self.max_shift}")
        a_lo, a_hi = self.amplitude
        if not 0 <= a_lo <= a_hi:
            raise ValueError(f"amplitude must satisfy 0 <= low <= high, got {self.amplitude}")
        if self.trend < 0 or self.noise_std < 0:
            raise ValueError("trend and noise_std must be >= 0")
        self._gen: torch.Generator | None = None
        if self.seed is not None:
            self._gen = torch.Generator().manual_seed(int(self.seed))

    def __call__(
        self, x: Tensor, generator: torch.Generator | None = None, batch: bool | None = None
    ) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
        if batch is None:
            batch = x.ndim == 3
        if (batch and x.ndim != 3) or (not batch and x.ndim != 2):
            want = "(B, C, L)" if batch else "(C, L)"
            raise ValueError(f"signal augmentation expects shape {want}, got {tuple(x.shape)}")
        xb = x if batch else x.unsqueeze(0)
        out = self._apply(xb, generator if generator is not None else self._gen)
        return out if batch else out.squeeze(0)

    def _apply(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        b, c, length = x.shape
        dev, dt = x.device, x.dtype if x.is_floating_point() else torch.float32
        x = x.to(dt)
        grid = torch.linspace(0.0, 1.0, length)
        # 1. crop-resize: sample positions start + s * grid (fractions of L-1), linear interp
        s = _uniform((b, 1), *self.crop_scale, g)
        keep = torch.rand((b, 1), generator=g) < self.crop_p
        s = torch.where(keep, s, torch.ones_like(s))
        start = torch.rand((b, 1), generator=g) * (1 - s)
        pos = (start + s * grid) * (length - 1)
        # 2. circular shift (integer, applied on the sampling positions)
        if self.max_shift > 0:
            k = torch.randint(-self.max_shift, self.max_shift + 1, (b, 1), generator=g)
            pos = torch.remainder(pos - k, length)
        # 3. time reversal
        flip = torch.rand((b, 1), generator=g) < self.flip_p
        pos = torch.where(flip, pos.flip(-1), pos)
        i0 = pos.floor().long().clamp(0, length - 1)
        i1 = torch.remainder(i0 + 1, length)
        w = (pos - i0).to(dt).to(dev).unsqueeze(1)
        i0 = i0.to(dev).unsqueeze(1).expand(b, c, length)
        i1 = i1.to(dev).unsqueeze(1).expand(b, c, length)
        out = torch.gather(x, 2, i0) * (1 - w) + torch.gather(x, 2, i1) * w
        # 4.-6. amplitude, trend, noise
        amp = _uniform((b, 1, 1), *self.amplitude, g).to(dev, dt)
        out = out * amp
        if self.trend > 0:
            coef = _uniform((b, 1, 1), -self.trend, self.trend, g).to(dev, dt)
            out = out + coef * (grid - 0.5).to(dev, dt)
        if self.noise_std > 0:
            out = out + self.noise_std * torch.randn(out.shape, generator=g).to(dev, dt)
        return out


_IMAGE_RECIPES: dict[str, dict[str, Any]] = {
    # grayscale 28x28: geometric + blur + solarize, no colour jitter / grayscale
    "fashion-mnist": dict(
        crop_scale=(0.3, 1.0),
        flip_p=0.5,
        jitter=None,
        jitter_p=0.0,
        grayscale_p=0.0,
        blur_p=0.2,
        blur_sigma=(0.1, 1.0),
        solarize_p=0.1,
    ),
    # SimCLR/VICReg CIFAR recipe (as in solo-learn's cifar configs) at 32x32
    "cifar": dict(
        crop_scale=(0.2, 1.0),
        flip_p=0.5,
        jitter=(0.4, 0.4, 0.2, 0.1),
        jitter_p=0.8,
        grayscale_p=0.2,
        blur_p=0.0,
        blur_sigma=(0.1, 2.0),
        solarize_p=0.1,
    ),
    # VICReg ImageNet recipe (symmetric average of its two view pipelines)
    "imagenet": dict(
        crop_scale=(0.08, 1.0),
        flip_p=0.5,
        jitter=(0.4, 0.4, 0.2, 0.1),
        jitter_p=0.8,
        grayscale_p=0.2,
        blur_p=0.5,
        blur_sigma=(0.1, 2.0),
        solarize_p=0.1,
    ),
}


@dataclass
class ImageAugmentation:
    """torchvision-v2 random view of standardized images (C, H, W) or (B, C, H, W).

    Pipeline (SimCLR/VICReg style): RandomResizedCrop(size, scale=crop_scale) ->
    RandomHorizontalFlip(flip_p) -> ColorJitter(*jitter) w.p. jitter_p (RGB only) ->
    RandomGrayscale(grayscale_p) (RGB only) -> GaussianBlur(sigma ~ U[blur_sigma], kernel ~10% of
    size, odd) w.p. blur_p -> RandomSolarize(threshold 0.5) w.p. solarize_p. Pixels are
    de-standardized with (mean, std) before and re-standardized after.
    """

    size: tuple[int, int]
    channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    crop_scale: tuple[float, float] = (0.2, 1.0)
    flip_p: float = 0.5
    jitter: tuple[float, float, float, float] | None = (0.4, 0.4, 0.2, 0.1)
    jitter_p: float = 0.8
    grayscale_p: float = 0.2
    blur_p: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.1
    batched: bool = True
    seed: int | None = None

    def __post_init__(self) -> None:
        from torchvision.transforms import v2

        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(
                f"mean/std need {self.channels} values (one per channel), got {self.mean}/{self.std}"
            )
        if not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        for name in ("flip_p", "jitter_p", "grayscale_p", "blur_p", "solarize_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(
                    f"{name} must be a probability in [0, 1], got {getattr(self, name)}"
                )
        ops: list[Any] = [
            v2.RandomResizedCrop(self.size, scale=tuple(self.crop_scale), antialias=True),
            v2.RandomHorizontalFlip(self.flip_p),
        ]
        rgb = self.channels == 3
        if rgb and self.jitter is not None and self.jitter_p > 0:
            ops.append(v2.RandomApply([v2.ColorJitter(*self.jitter)], p=self.jitter_p))
        if rgb and self.grayscale_p > 0:
            ops.append(v2.RandomGrayscale(self.grayscale_p))
        if self.blur_p > 0:
            k = max(3, int(0.1 * min(self.size)) // 2 * 2 + 1)
            ops.append(
                v2.RandomApply([v2.GaussianBlur(k, sigma=tuple(self.blur_sigma))], p=self.blur_p)
            )
        if self.solarize_p > 0:
            ops.append(v2.RandomSolarize(0.5, p=self.solarize_p))
        self._pipeline = v2.Compose(ops)
        self._mean = torch.tensor(self.mean).view(-1, 1, 1)
        self._std = torch.tensor(self.std).view(-1, 1, 1)
        self._gen: torch.Generator | None = None
        if self.seed is not None:
            self._gen = torch.Generator().manual_seed(int(self.seed))

    def _one(self, x: Tensor) -> Tensor:
        mean, std = self._mean.to(x.device, x.dtype), self._std.to(x.device, x.dtype)
        img = (x * std + mean).clamp(0.0, 1.0)
        img = self._pipeline(img)
        return (img - mean) / std

    def __call__(
        self, x: Tensor, generator: torch.Generator | None = None, batch: bool | None = None
    ) -> Tensor:
        if not isinstance(x, Tensor):
            raise TypeError(f"expected a torch.Tensor, got {type(x).__name__}")
        if batch is None:
            batch = x.ndim == 4
        if (batch and x.ndim != 4) or (not batch and x.ndim != 3) or x.shape[-3] != self.channels:
            want = f"(B, {self.channels}, H, W)" if batch else f"({self.channels}, H, W)"
            raise ValueError(f"image augmentation expects shape {want}, got {tuple(x.shape)}")
        g = generator if generator is not None else self._gen
        if not x.is_floating_point():
            raise TypeError("image augmentation expects standardized float images")

        if batch and self.batched:
            return self._batched(x, g)

        def run() -> Tensor:
            if batch:
                return torch.stack([self._one(xi) for xi in x])
            return self._one(x)

        if g is None:
            return run()
        seed = int(torch.randint(0, 2**62, (1,), generator=g))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return run()

    def _batched(self, x: Tensor, g: torch.Generator | None) -> Tensor:
        """Vectorized batch path: same operations and parameter distributions as the
        torchvision pipeline, each sample with its own parameters. Differences: the colour
        jitter order is drawn once per batch (torchvision: per call), and the crop is resampled
        bilinearly without antialiasing (crops are never smaller than the output here)."""
        b, c, h, w = x.shape
        dev, dt = x.device, x.dtype
        mean, std = self._mean.to(dev, dt), self._std.to(dev, dt)
        img = (x * std + mean).clamp(0.0, 1.0)

        def u(lo: float, hi: float, *shape: int) -> Tensor:
            return _uniform((b, *shape), lo, hi, g).to(dev, dt)

        def coin(p: float) -> Tensor:
            return (torch.rand((b,), generator=g) < p).to(dev)

        # random resized crop (+ horizontal flip) as one affine resampling
        # torchvision's sampler: up to 10 (area, log-ratio) draws, first box that fits, else
        # the whole image (our images are square-ish so its fallback crop is the full image)
        area = u(*self.crop_scale, 10)
        log_r = u(math.log(3 / 4), math.log(4 / 3), 10)
        ratio = torch.exp(log_r) * (h / w)  # torchvision ratio is w/h in pixels
        cw_all, ch_all = torch.sqrt(area * ratio), torch.sqrt(area / ratio)
        fits = (cw_all <= 1.0) & (ch_all <= 1.0)
        first = fits.float().argmax(dim=1, keepdim=True)
        any_fit = fits.any(dim=1)
        one = torch.ones(b, device=dev, dtype=dt)
        cw = torch.where(any_fit, cw_all.gather(1, first).squeeze(1), one)
        ch = torch.where(any_fit, ch_all.gather(1, first).squeeze(1), one)
        cx = (1 - cw) * u(0.0, 1.0) + cw / 2
        cy = (1 - ch) * u(0.0, 1.0) + ch / 2
        sx = torch.where(coin(self.flip_p), -cw, cw)
        theta = torch.zeros(b, 2, 3, device=dev, dtype=dt)
        theta[:, 0, 0], theta[:, 0, 2] = sx, 2 * cx - 1
        theta[:, 1, 1], theta[:, 1, 2] = ch, 2 * cy - 1
        grid = F.affine_grid(theta, [b, c, *self.size], align_corners=False)
        img = F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)
        if c == 3 and self.jitter is not None and self.jitter_p > 0:
            img = self._jitter(img, coin(self.jitter_p), u, g)
        if c == 3 and self.grayscale_p > 0:
            gray = _gray(img).expand_as(img)
            img = torch.where(coin(self.grayscale_p).view(b, 1, 1, 1), gray, img)
        if self.blur_p > 0:
            k = max(3, int(0.1 * min(self.size)) // 2 * 2 + 1)
            sigma = u(*self.blur_sigma)
            t = torch.arange(k, device=dev, dtype=dt) - (k - 1) / 2
            ker = torch.exp(-0.5 * (t[None] / sigma[:, None]) ** 2)
            ker = (ker / ker.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (b*c, k)
            flat = img.reshape(1, b * c, *img.shape[-2:])
            pad = k // 2
            blurred = F.conv2d(
                F.pad(flat, (0, 0, pad, pad), mode="reflect"), ker[:, None, :, None], groups=b * c
            )
            blurred = F.conv2d(
                F.pad(blurred, (pad, pad, 0, 0), mode="reflect"),
                ker[:, None, None, :],
                groups=b * c,
            )
            img = torch.where(coin(self.blur_p).view(b, 1, 1, 1), blurred.reshape(img.shape), img)
        if self.solarize_p > 0:
            sol = torch.where(img >= 0.5, 1.0 - img, img)
            img = torch.where(coin(self.solarize_p).view(b, 1, 1, 1), sol, img)
        return (img - mean) / std

    def _jitter(
        self, img: Tensor, apply: Tensor, u: Callable[..., Tensor], g: torch.Generator | None
    ) -> Tensor:
        assert self.jitter is not None
        b = img.shape[0]
        out = img
        for op in torch.randperm(4, generator=g).tolist():
            amount = self.jitter[op]
            if amount <= 0:
                continue
            if op == 3:  # hue shift in [-amount, amount] turns
                f = u(-amount, amount).view(b, 1, 1)
                hsv = _rgb_to_hsv(out)
                hsv = torch.stack([(hsv[:, 0] + f) % 1.0, hsv[:, 1], hsv[:, 2]], 1)
                new = _hsv_to_rgb(hsv)
            else:
                f = u(max(0.0, 1 - amount), 1 + amount).view(b, 1, 1, 1)
                if op == 0:  # brightness
                    ref = torch.zeros_like(out)
                elif op == 1:  # contrast: blend with the mean grey level
                    ref = _gray(out).mean(dim=(1, 2, 3), keepdim=True).expand_as(out)
                else:  # saturation: blend with the grey image
                    ref = _gray(out).expand_as(out)
                new = (f * out + (1 - f) * ref).clamp(0.0, 1.0)
            out = torch.where(apply.view(b, 1, 1, 1), new, out)
        return out


def _gray(img: Tensor) -> Tensor:
    r, g, b = img.unbind(1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(1)


def _rgb_to_hsv(img: Tensor) -> Tensor:
    r, g, b = img.unbind(1)
    maxc, _ = img.max(1)
    minc, _ = img.min(1)
    delta = maxc - minc
    s = torch.where(maxc > 0, delta / maxc.clamp(min=1e-12), torch.zeros_like(maxc))
    d = torch.where(delta > 0, delta, torch.ones_like(delta))
    rc, gc, bc = (maxc - r) / d, (maxc - g) / d, (maxc - b) / d
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    return torch.stack([h, s, maxc], 1)


def _hsv_to_rgb(hsv: Tensor) -> Tensor:
    h, s, v = hsv.unbind(1)
    i = torch.floor(h * 6.0)
    f = h * 6.0 - i
    i = i.long() % 6
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = torch.stack(
        [
            torch.stack([v, q, p, p, t, v], 0),
            torch.stack([t, v, v, q, p, p], 0),
            torch.stack([p, p, t, v, v, q], 0),
        ],
        0,
    )  # (3, 6, B, H, W)
    idx = i.unsqueeze(0).unsqueeze(0).expand(3, 1, *i.shape)
    return torch.gather(table, 1, idx).squeeze(1).permute(1, 0, 2, 3).clamp(0.0, 1.0)


class IdentityAugmentation:
    """No augmentation (returns its input); accepts the same call signature."""

    def __call__(
        self, x: Tensor, generator: torch.Generator | None = None, batch: bool | None = None
    ) -> Tensor:
        return x


Augmentation = SignalAugmentation | ImageAugmentation | IdentityAugmentation

AUGMENTATIONS = (
    "mnist1d",
    "signal1d",
    "fashion-mnist",
    "cifar10",
    "cifar100",
    "cifar",
    "imagenet",
    "none",
)


def make_augmentation(
    name: str, input_shape: Sequence[int], **params: Any
) -> Callable[..., Tensor]:
    """Build the named augmentation for inputs of shape ``input_shape`` (without batch dim).

    ``params`` override the recipe's defaults (field names of ``SignalAugmentation`` /
    ``ImageAugmentation``, plus ``seed``; ``mean``/``std`` for images). Unknown names or
    parameters raise ``ValueError``.
    """
    shape = tuple(int(s) for s in input_shape)
    key = name.lower()
    if key in ("none", "identity"):
        if params:
            raise ValueError(f"augmentation 'none' takes no parameters, got {sorted(params)}")
        return IdentityAugmentation()
    if key in ("mnist1d", "signal1d"):
        if len(shape) != 2:
            raise ValueError(f"signal augmentation needs input_shape (C, L), got {shape}")
        return _build(SignalAugmentation, {}, params, name)
    if key in ("fashion-mnist", "cifar", "cifar10", "cifar100", "imagenet"):
        if len(shape) != 3:
            raise ValueError(f"image augmentation needs input_shape (C, H, W), got {shape}")
        recipe = "cifar" if key.startswith("cifar") else key
        norm_key = "cifar10" if key == "cifar" else key
        mean, std = NORMALIZATION[norm_key]
        if len(mean) != shape[0]:  # e.g. ImageNet recipe on grayscale data: neutral default
            mean, std = (0.5,) * shape[0], (0.5,) * shape[0]
        base = dict(
            _IMAGE_RECIPES[recipe], size=(shape[1], shape[2]), channels=shape[0], mean=mean, std=std
        )
        return _build(ImageAugmentation, base, params, name)
    raise ValueError(f"unknown augmentation {name!r}; available: {list(AUGMENTATIONS)}")


def _build(cls: type, base: dict[str, Any], params: dict[str, Any], name: str) -> Any:
    valid = {f.name for f in fields(cls)} - {"size", "channels"}
    bad = sorted(set(params) - valid)
    if bad:
        raise ValueError(
            f"unknown parameter(s) {bad} for augmentation {name!r}; valid: {sorted(valid)}"
        )
    kwargs = dict(base)
    kwargs.update(params)
    for k in ("crop_scale", "amplitude", "blur_sigma", "mean", "std", "jitter", "size"):
        if k in kwargs and isinstance(kwargs[k], list):
            kwargs[k] = tuple(kwargs[k])
    return cls(**kwargs)


class TwoViewDataset(Dataset):
    """Wraps a dataset of ``(x, y)`` and yields ``(aug(x), aug(x), y)``: two random views.

    With ``seed`` given, the views of item ``i`` in epoch ``e`` (see ``set_epoch``) are drawn from
    a ``torch.Generator`` seeded with ``(seed, e, i)``: reproducible regardless of DataLoader
    workers. Without it, torch's global RNG (per-worker seeded by DataLoader) is used.
    """

    def __init__(self, base: Dataset, augmentation: Callable[..., Tensor], seed: int | None = None):
        self.base = base
        self.augmentation = augmentation
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, Any]:
        x, y = self.base[index]
        if self.seed is None:
            return self.augmentation(x), self.augmentation(x), y
        mixed = (int(self.seed) * 1_000_003 + self.epoch) * 10_000_019 + int(index)
        g = torch.Generator().manual_seed(mixed % 2**63)
        return self.augmentation(x, generator=g), self.augmentation(x, generator=g), y
