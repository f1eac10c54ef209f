"""MNIST-C / ImageNet-C style image corruptions, deterministic and graded by severity 1..5.

``corrupt(images, corruption, severity, seed=0)`` takes uint8 images (N, H, W) or (N, C, H, W)
in [0, 255] and returns corrupted uint8 images of the same shape (computed in [0, 1] float,
clipped, rounded). All randomness comes from ``numpy.random.default_rng([seed, k])`` (k = index
of the corruption), drawn identically for every severity: severities of one image differ only in
magnitude, so the distance from the clean image grows with severity.

Severity parameters (pixel lengths are for 28-pixel images and scale with the image side):

=================  ==========================================  ============================
corruption         parameter                                    severities 1..5
=================  ==========================================  ============================
gaussian_noise     std of added N(0, s^2) noise, [0,1] units    0.08, 0.12, 0.18, 0.26, 0.38
gaussian_blur      Gaussian blur sigma (pixels)                 0.5, 0.75, 1.0, 1.5, 2.0
contrast           c in x' = m + c (x - m), m = image mean      0.6, 0.45, 0.3, 0.2, 0.1
rotation           |angle| in degrees (random sign per image)    10, 20, 30, 45, 60
elastic            alpha (Simard et al. 2003), sigma = 4 px      10, 17, 25, 34, 45
=================  ==========================================  ============================
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy.ndimage import gaussian_filter

SEVERITIES = (1, 2, 3, 4, 5)

#: corruption name -> parameter per severity 1..5
CORRUPTIONS: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.08, 0.12, 0.18, 0.26, 0.38),
    "gaussian_blur": (0.5, 0.75, 1.0, 1.5, 2.0),
    "contrast": (0.6, 0.45, 0.3, 0.2, 0.1),
    "rotation": (10.0, 20.0, 30.0, 45.0, 60.0),
    "elastic": (10.0, 17.0, 25.0, 34.0, 45.0),
}

_ELASTIC_SIGMA = 4.0  # smoothing of the displacement field, pixels at 28 px


def _as_nchw(images: np.ndarray) -> tuple[np.ndarray, tuple[int, ...]]:
    arr = np.asarray(images)
    if arr.dtype != np.uint8:
        raise TypeError(f"corrupt() expects uint8 images in [0, 255], got dtype {arr.dtype}")
    if arr.ndim == 3:
        return arr[:, None], arr.shape
    if arr.ndim == 4:
        return arr, arr.shape
    raise ValueError(
        f"corrupt() expects images of shape (N, H, W) or (N, C, H, W), got {arr.shape}"
    )


def _grid_warp(x: np.ndarray, disp: np.ndarray, padding: str) -> np.ndarray:
    """Bilinear resampling of x (N, C, H, W) at positions (pixel grid + disp[N, H, W, 2]) (dy, dx)."""
    n, _, h, w = x.shape
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    py = ys[None] + disp[..., 0]
    px = xs[None] + disp[..., 1]
    # grid_sample wants (x, y) in [-1, 1] with align_corners=True mapping to pixel centres
    grid = np.stack([2 * px / (w - 1) - 1, 2 * py / (h - 1) - 1], axis=-1)
    out = F.grid_sample(
        torch.from_numpy(x.astype(np.float32)),
        torch.from_numpy(grid.astype(np.float32)),
        mode="bilinear",
        padding_mode=padding,
        align_corners=True,
    )
    return out.numpy()


def corrupt(images: np.ndarray, corruption: str, severity: int, seed: int = 0) -> np.ndarray:
    """Apply ``corruption`` at ``severity`` (1..5) to uint8 images; deterministic in ``seed``."""
    if corruption not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {corruption!r}; available: {list(CORRUPTIONS)}")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    arr, shape = _as_nchw(images)
    n, c, h, w = arr.shape
    x = arr.astype(np.float32) / 255.0
    level = CORRUPTIONS[corruption][severity - 1]
    px = min(h, w) / 28.0
    rng = np.random.default_rng([int(seed), list(CORRUPTIONS).index(corruption)])

    if corruption == "gaussian_noise":
        out = x + level * rng.standard_normal(x.shape, dtype=np.float32)
    elif corruption == "gaussian_blur":
        out = gaussian_filter(x, sigma=(0, 0, level * px, level * px), mode="constant")
    elif corruption == "contrast":
        m = x.mean(axis=(1, 2, 3), keepdims=True)
        out = m + level * (x - m)
    elif corruption == "rotation":
        sign = np.where(rng.random(n) < 0.5, -1.0, 1.0)
        theta = np.deg2rad(level) * sign
        cy, cx = (h - 1) / 2, (w - 1) / 2
        ys, xs = np.meshgrid(np.arange(h) - cy, np.arange(w) - cx, indexing="ij")
        cos, sin = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
        # inverse map: output pixel p samples input at R(-theta) p
        src_y = cos * ys - sin * xs
        src_x = sin * ys + cos * xs
        disp = np.stack([src_y - ys, src_x - xs], axis=-1)
        out = _grid_warp(x, disp, "zeros")
    else:  # elastic
        field = rng.uniform(-1.0, 1.0, size=(n, h, w, 2)).astype(np.float32)
        field = gaussian_filter(field, sigma=(0, _ELASTIC_SIGMA * px, _ELASTIC_SIGMA * px, 0))
        out = _grid_warp(x, level * px * field, "border")

    out = np.clip(np.rint(np.clip(out, 0.0, 1.0) * 255.0), 0, 255).astype(np.uint8)
    return out.reshape(shape)


def corruption_parameter(corruption: str, severity: int) -> float:
    """The documented parameter value of ``corruption`` at ``severity``."""
    if corruption not in CORRUPTIONS or severity not in SEVERITIES:
        raise ValueError(f"unknown corruption/severity {corruption!r}/{severity!r}")
    return CORRUPTIONS[corruption][severity - 1]


__all__ = ["CORRUPTIONS", "SEVERITIES", "corrupt", "corruption_parameter"]
