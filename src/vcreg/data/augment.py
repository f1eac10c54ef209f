"""Random augmentations for joint-embedding SSL and the two-view dataset wrapper.

API (docs/sections/data.md):

- ``make_augmentation(name, input_shape, **params) -> Augmentation``: a callable returning ONE
  random view. ``aug(x)`` accepts one sample (shape ``input_shape``) or a batch
  (shape ``(B, *input_shape)``); each sample of a batch gets its own random parameters.
  ``aug(x, generator=g)`` draws from ``torch.Generator`` ``g`` (reproducible); otherwise from the
  augmentation's own generator (``make_augmentation(..., seed=0)``) or torch's global RNG.
  ``aug(x, batch=True/False)`` asserts which layout is expected (default: inferred from ndim).
- ``TwoViewDataset(base, augmentation, seed=None)`` yields ``(view1, view2, y)``.

Inputs are the datasets' standardized float tensors. Both augmentation families split a batch
view into ``sample_params(shape, generator)`` (every sample's random parameters, drawn on the CPU
from the generator: the same parameters whatever device the images are on) and
``apply(x, params)`` (vectorized, on ``x``'s device); ``take_rows(params, lo, hi)`` is a DDP
rank's share of a global batch's parameters. 1-D signals (``SignalAugmentation``, names
"mnist1d"/"signal1d") are vectorized operations of their own. Images (``ImageAugmentation``,
names "fashion-mnist", "cifar10"/"cifar100"/"cifar", "imagenet") follow
``torchvision.transforms.v2`` exactly: the parameters are drawn with torchvision's samplers
(``RandomResizedCrop.get_params``' integer boxes, ``ColorJitter``'s order and factors per
sample, ...) and applied with its operations' formulas (equal to its functional ops to 1e-5,
``tests/test_augment_batched.py``), after undoing the dataset standardization (mean/std; colour
jitter and solarize are defined on [0, 1] pixels) and before redoing it. torchvision's own v2
transforms applied to a batched tensor draw ONE set of parameters for the whole batch, which is
why the batched path does not call them; ``batched=False`` runs them sample by sample (torch's
global RNG, under ``torch.random.fork_rng`` seeded from the generator when one is given).
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
        params = self.sample_params(xb.shape, generator if generator is not None else self._gen)
        out = self.apply(xb, params)
        return out if batch else out.squeeze(0)

    def sample_params(
        self, shape: Sequence[int], generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """The random parameters of a batch of ``shape`` (B, C, L), drawn on the CPU from
        ``generator`` (row i: sample i; :func:`take_rows` slices them)."""
        b, c, length = (int(v) for v in shape)
        g = generator if generator is not None else self._gen
        p = {"s": _uniform((b, 1), *self.crop_scale, g)}
        p["keep"] = torch.rand((b, 1), generator=g) < self.crop_p
        p["start"] = torch.rand((b, 1), generator=g)
        if self.max_shift > 0:
            p["shift"] = torch.randint(-self.max_shift, self.max_shift + 1, (b, 1), generator=g)
        p["flip"] = torch.rand((b, 1), generator=g) < self.flip_p
        p["amp"] = _uniform((b, 1, 1), *self.amplitude, g)
        if self.trend > 0:
            p["trend"] = _uniform((b, 1, 1), -self.trend, self.trend, g)
        if self.noise_std > 0:
            p["noise"] = torch.randn((b, c, length), generator=g)
        return p

    def apply(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        """``x`` (B, C, L) transformed with ``params`` (:meth:`sample_params`), on ``x``'s
        device."""
        b, c, length = x.shape
        dev, dt = x.device, x.dtype if x.is_floating_point() else torch.float32
        x = x.to(dt)
        grid = torch.linspace(0.0, 1.0, length)
        # 1. crop-resize: sample positions start + s * grid (fractions of L-1), linear interp
        s = torch.where(params["keep"], params["s"], torch.ones_like(params["s"]))
        pos = (params["start"] * (1 - s) + s * grid) * (length - 1)
        # 2. circular shift (integer, applied on the sampling positions)
        if "shift" in params:
            pos = torch.remainder(pos - params["shift"], length)
        # 3. time reversal
        pos = torch.where(params["flip"], pos.flip(-1), pos)
        i0 = pos.floor().long().clamp(0, length - 1)
        i1 = torch.remainder(i0 + 1, length)
        w = (pos - i0).to(dt).to(dev).unsqueeze(1)
        i0 = i0.to(dev).unsqueeze(1).expand(b, c, length)
        i1 = i1.to(dev).unsqueeze(1).expand(b, c, length)
        out = torch.gather(x, 2, i0) * (1 - w) + torch.gather(x, 2, i1) * w
        # 4.-6. amplitude, trend, noise
        out = out * params["amp"].to(dev, dt)
        if "trend" in params:
            out = out + params["trend"].to(dev, dt) * (grid - 0.5).to(dev, dt)
        if "noise" in params:
            out = out + self.noise_std * params["noise"].to(dev, dt)
        return out


def take_rows(params: dict[str, Tensor], lo: int, hi: int) -> dict[str, Tensor]:
    """Rows ``lo:hi`` of a batch's parameters (a DDP rank's share of the global batch)."""
    return {k: v[lo:hi] for k, v in params.items()}


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
    """torchvision-v2 random view of standardized images (C, H, W) or (B, C, H, W); batches are
    vectorized (``batched=True``: :meth:`sample_params` + :meth:`apply`, any device), or run
    through torchvision's v2 transforms sample by sample (``batched=False``).

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
            return self.apply(x, self.sample_params(x.shape, g))

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

    # -- the batched path: parameters drawn on the CPU, applied on the images' device ----------

    def sample_params(
        self, shape: Sequence[int], generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """Per-sample random parameters of a batch of ``shape`` (B, C, H, W), drawn on the CPU
        from ``generator`` with torchvision's distributions (row i: sample i; :func:`take_rows`
        slices them): crop box ``top, left, height, width`` (integers, ``RandomResizedCrop.
        get_params``: 10 tries of area ~ U[crop_scale]·H·W and log-ratio ~ U[log 3/4, log 4/3],
        sizes rounded, the first that fits, else the whole image), ``flip``, ``jitter`` (applied),
        ``jitter_order`` (a permutation of brightness, contrast, saturation, hue per sample),
        ``jitter_factors``, ``gray``, ``blur`` + ``blur_sigma``, ``solarize``."""
        b, c, h, w = (int(v) for v in shape)
        g = generator if generator is not None else self._gen
        p = self._crop_params(b, h, w, g)
        p["flip"] = torch.rand(b, generator=g) < self.flip_p
        if c == 3 and self.jitter is not None and self.jitter_p > 0:
            p["jitter"] = torch.rand(b, generator=g) < self.jitter_p
            p["jitter_order"] = torch.rand(b, 4, generator=g).argsort(dim=1)
            lo_hi = [(max(0.0, 1 - a), 1 + a) for a in self.jitter[:3]]
            lo_hi.append((-self.jitter[3], self.jitter[3]))
            u = torch.rand(b, 4, generator=g)
            p["jitter_factors"] = torch.stack(
                [lo + (hi - lo) * u[:, k] for k, (lo, hi) in enumerate(lo_hi)], dim=1
            )
        if c == 3 and self.grayscale_p > 0:
            p["gray"] = torch.rand(b, generator=g) < self.grayscale_p
        if self.blur_p > 0:
            p["blur"] = torch.rand(b, generator=g) < self.blur_p
            p["blur_sigma"] = _uniform((b,), *self.blur_sigma, g)
        if self.solarize_p > 0:
            p["solarize"] = torch.rand(b, generator=g) < self.solarize_p
        return p

    def _crop_params(self, b: int, h: int, w: int, g: torch.Generator | None) -> dict[str, Tensor]:
        area = h * w * _uniform((b, 10), *self.crop_scale, g).double()
        ratio = torch.exp(_uniform((b, 10), math.log(3 / 4), math.log(4 / 3), g).double())
        cw = torch.round(torch.sqrt(area * ratio)).long()
        ch = torch.round(torch.sqrt(area / ratio)).long()
        fits = (cw > 0) & (cw <= w) & (ch > 0) & (ch <= h)
        first = fits.long().argmax(dim=1, keepdim=True)
        ok = fits.any(dim=1)
        # torchvision's fallback for an image whose aspect ratio is inside [3/4, 4/3]: all of it
        in_ratio = w / h
        fw = w if in_ratio <= 4 / 3 else int(round(h * 4 / 3))
        fh = h if in_ratio >= 3 / 4 else int(round(w / (3 / 4)))
        cw = torch.where(ok, cw.gather(1, first).squeeze(1), torch.full((b,), fw))
        ch = torch.where(ok, ch.gather(1, first).squeeze(1), torch.full((b,), fh))
        u = torch.rand(b, 2, generator=g)
        top = torch.where(ok, (u[:, 0] * (h - ch + 1)).long().clamp(max=h - ch), (h - ch) // 2)
        left = torch.where(ok, (u[:, 1] * (w - cw + 1)).long().clamp(max=w - cw), (w - cw) // 2)
        return {"top": top, "left": left, "height": ch, "width": cw}

    def apply(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
        """Standardized images ``x`` (B, C, H, W) transformed with ``params``
        (:meth:`sample_params`) on ``x``'s device: the operations of the torchvision pipeline,
        each sample with its own parameters."""
        b, c = x.shape[:2]
        dev, dt = x.device, x.dtype
        mean, std = self._mean.to(dev, dt), self._std.to(dev, dt)
        img = self._resized_crop((x * std + mean).clamp(0.0, 1.0), params)

        def on(key: str) -> Tensor:
            return params[key].to(dev).view(b, 1, 1, 1)

        if "jitter" in params:
            img = self._jitter(img, params)
        if "gray" in params:
            img = torch.where(on("gray"), _gray(img).expand_as(img), img)
        if "blur" in params:
            img = torch.where(on("blur"), self._blur(img, params["blur_sigma"].to(dev, dt)), img)
        if "solarize" in params:
            img = torch.where(on("solarize"), torch.where(img >= 0.5, 1.0 - img, img), img)
        return (img - mean) / std

    def _resized_crop(self, img: Tensor, p: dict[str, Tensor]) -> Tensor:
        """Crop box -> ``size`` by bilinear resampling (torchvision's ``resized_crop``: pixel
        centres, align_corners=False, sources clamped to the box), then the horizontal flip."""
        b, _, h, w = img.shape
        dev, dt = img.device, img.dtype
        oh, ow = self.size

        def axis(start: Tensor, extent: Tensor, n_out: int, n_in: int) -> Tensor:
            extent = extent.to(dev, dt).view(b, 1)
            t = torch.arange(n_out, device=dev, dtype=dt)
            src = ((t + 0.5) * extent / n_out - 0.5).clamp(min=0).minimum(extent - 1)
            return (start.to(dev, dt).view(b, 1) + src + 0.5) * (2.0 / n_in) - 1.0

        gx = axis(p["left"], p["width"], ow, w)  # (b, ow)
        gx = torch.where(p["flip"].to(dev).view(b, 1), gx.flip(1), gx)
        gy = axis(p["top"], p["height"], oh, h)  # (b, oh)
        grid = torch.stack(
            [gx.view(b, 1, ow).expand(b, oh, ow), gy.view(b, oh, 1).expand(b, oh, ow)], dim=-1
        )
        return F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)

    def _blur(self, img: Tensor, sigma: Tensor) -> Tensor:
        """Gaussian blur, a kernel of ~10 % of the side (odd) per sample, reflect padding
        (torchvision's ``gaussian_blur``, separable)."""
        b, c, h, w = img.shape
        k = max(3, int(0.1 * min(self.size)) // 2 * 2 + 1)
        t = torch.arange(k, device=img.device, dtype=img.dtype) - (k - 1) / 2
        ker = torch.exp(-0.5 * (t[None] / sigma[:, None]) ** 2)
        ker = (ker / ker.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (b*c, k)
        flat, pad = img.reshape(1, b * c, h, w), k // 2
        out = F.conv2d(
            F.pad(flat, (0, 0, pad, pad), mode="reflect"), ker[:, None, :, None], groups=b * c
        )
        out = F.conv2d(
            F.pad(out, (pad, pad, 0, 0), mode="reflect"), ker[:, None, None, :], groups=b * c
        )
        return out.reshape(img.shape)

    def _jitter(self, img: Tensor, p: dict[str, Tensor]) -> Tensor:
        """torchvision's ColorJitter per sample: brightness, contrast, saturation (blends,
        clamped to [0, 1]) and hue (HSV rotation) in the sample's own random order."""
        assert self.jitter is not None
        b, dev = img.shape[0], img.device
        apply = p["jitter"].to(dev)
        order = p["jitter_order"].to(dev)
        f = p["jitter_factors"].to(dev, img.dtype)
        out = img
        for slot in range(4):
            op = order[:, slot]
            for k in range(3):
                if self.jitter[k] <= 0:
                    continue
                # factor 1 for the samples not due: clamp(1 x + 0 ref) = x exactly on [0, 1]
                fk = torch.where(apply & (op == k), f[:, k], torch.ones_like(f[:, k]))
                fk = fk.view(b, 1, 1, 1)
                if k == 0:  # brightness: blend with black
                    out = (fk * out).clamp(0.0, 1.0)
                    continue
                gray = _gray(out)
                ref = gray.mean(dim=(1, 2, 3), keepdim=True) if k == 1 else gray
                out = (fk * out + (1 - fk) * ref).clamp(0.0, 1.0)
            if self.jitter[3] > 0:  # hue: only on the samples whose turn it is (HSV is costly)
                idx = (apply & (op == 3)).nonzero().squeeze(1)
                hsv = _rgb_to_hsv(out[idx])
                hue = (hsv[:, 0] + f[idx, 3].view(-1, 1, 1)) % 1.0
                new = _hsv_to_rgb(torch.stack([hue, hsv[:, 1], hsv[:, 2]], 1))
                out = out.index_copy(0, idx, new)
        return out


def _gray(img: Tensor) -> Tensor:
    r, g, b = img.unbind(1)
    return (0.2989 * r + 0.587 * g + 0.114 * b).unsqueeze(1)


def _rgb_to_hsv(img: Tensor) -> Tensor:
    """RGB -> HSV, all in [0, 1] (hue in turns; grey pixels get hue 0, saturation 0)."""
    r, g, b = img.unbind(1)
    minc, maxc = torch.aminmax(img, dim=1)
    delta = maxc - minc
    d = torch.where(delta > 0, delta, torch.ones_like(delta))
    h = torch.where(
        maxc == r, (g - b) / d, torch.where(maxc == g, (b - r) / d + 2, (r - g) / d + 4)
    )
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    s = torch.where(maxc > 0, delta / maxc.clamp(min=1e-12), torch.zeros_like(maxc))
    return torch.stack([h, s, maxc], 1)


def _hsv_to_rgb(hsv: Tensor) -> Tensor:
    """HSV -> RGB: channel n in (5, 3, 1) is v - v s clamp(min(k, 4 - k), 0, 1), k = (n + 6 h)
    mod 6 (the piecewise-linear hexcone, without branches)."""
    h, s, v = hsv.unbind(1)
    h6 = h * 6.0
    out = []
    for n in (5.0, 3.0, 1.0):
        k = (h6 + n) % 6.0
        out.append(v - v * s * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0))
    return torch.stack(out, 1).clamp(0.0, 1.0)


class IdentityAugmentation:
    """No augmentation (returns its input); accepts the same call signature."""

    def __call__(
        self, x: Tensor, generator: torch.Generator | None = None, batch: bool | None = None
    ) -> Tensor:
        return x

    def sample_params(
        self, shape: Sequence[int], generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        return {}

    def apply(self, x: Tensor, params: dict[str, Tensor]) -> Tensor:
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
