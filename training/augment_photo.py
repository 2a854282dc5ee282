"""Photographic augmentation: what photographing a film does to the preprocessed grey image.

Follows the synthetic photographic transformations of CheXphoto (Phillips et al. 2020): glare,
moire, tilt (a perspective warp), blur, noise and brightness/contrast changes, here applied on the
fly to the preprocessed ``(C, H, W)`` training tensor (never at evaluation). Each transformation is
applied independently with probability :data:`P_EACH`, in the order light meets camera: the film
is tilted, a reflection and the screen's fringes lie on it, the lens blurs, the exposure and
contrast shift, the sensor adds noise. It works in display intensity ``[0, 1]`` (the
normalisation is undone and redone), clamps there like a sensor, and keeps the channels equal (a
rectified, white-balanced photo is grey). Random numbers come from torch's generator, like the
other augmentations (see :mod:`training.augment`).

Strengths are those of a *usable* photo, the one a clinician would take and the capture step
would accept after rectification: a residual tilt of a few degrees, a faint reflection, mild blur.
"""

from __future__ import annotations

import math

import torch

from cxr_core.optional import require

#: Probability of each transformation (independently).
P_EACH = 0.4
#: Largest corner displacement of the tilt warp, as a share of the side (a few degrees of residual tilt).
TILT_MAX = 0.06


def _rand(lo: float, hi: float) -> float:
    return float(lo + (hi - lo) * torch.rand(()))


def _coords(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column index of every pixel, as float tensors of shape (h, w)."""
    rows, cols = torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32)
    return torch.meshgrid(rows, cols, indexing="ij")


def tilt(image: torch.Tensor) -> torch.Tensor:
    """A perspective warp: each corner moved inwards or outwards by up to TILT_MAX of the side."""
    functional = require("torchvision.transforms.v2.functional", extra="train", purpose="tilt augmentation")
    h, w = image.shape[-2:]
    start = [[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]]
    sign = [(1, 1), (-1, 1), (-1, -1), (1, -1)]  # inwards for each corner
    end = [
        [x + sx * _rand(-0.3, 1.0) * TILT_MAX * w, y + sy * _rand(-0.3, 1.0) * TILT_MAX * h]
        for (x, y), (sx, sy) in zip(start, sign, strict=True)
    ]
    return functional.perspective(
        image, start, end, interpolation=functional.InterpolationMode.BILINEAR, fill=0.0
    )


def glare(image: torch.Tensor) -> torch.Tensor:
    """A specular reflection: a soft, possibly elongated bright blob added (and clipped)."""
    h, w = image.shape[-2:]
    ys, xs = _coords(h, w)
    cy, cx = _rand(0, h), _rand(0, w)
    radius = _rand(0.05, 0.2) * min(h, w)
    angle, stretch = _rand(0, math.pi), _rand(1.0, 2.5)
    along = ((xs - cx) * math.cos(angle) + (ys - cy) * math.sin(angle)) / stretch
    across = -(xs - cx) * math.sin(angle) + (ys - cy) * math.cos(angle)
    blob = _rand(0.15, 0.7) * torch.exp(-(along**2 + across**2) / (2 * radius * radius))
    return image + blob


def moire(image: torch.Tensor) -> torch.Tensor:
    """Fringes of a screen's pixel grid beating with the sensor's: a modulated fine sinusoid."""
    h, w = image.shape[-2:]
    ys, xs = _coords(h, w)
    angle, period = _rand(0, math.pi), _rand(2.5, 8.0)
    wave = torch.cos(2 * math.pi * (xs * math.cos(angle) + ys * math.sin(angle)) / period + _rand(0, 6.3))
    beat = 0.6 + 0.4 * torch.cos(2 * math.pi * (xs * math.sin(angle) - ys * math.cos(angle)) / (9 * period))
    return image * (1 + _rand(0.02, 0.08) * wave * beat)


def blur(image: torch.Tensor) -> torch.Tensor:
    """Optical blur: a Gaussian of sigma 0.5-1.5 px (per 224 px of side on larger inputs)."""
    functional = require("torchvision.transforms.v2.functional", extra="train", purpose="blur augmentation")
    sigma = _rand(0.5, 1.5) * max(1.0, image.shape[-1] / 224)
    kernel = 2 * math.ceil(3 * sigma) + 1
    return functional.gaussian_blur(image, [kernel, kernel], [sigma, sigma])


def brightness_contrast(image: torch.Tensor) -> torch.Tensor:
    """Exposure and contrast of the photo: ``(x - mean) * c + mean + b``."""
    mean = image.mean()
    return (image - mean) * _rand(0.7, 1.3) + mean + _rand(-0.12, 0.12)


def noise(image: torch.Tensor) -> torch.Tensor:
    """Sensor noise, stronger in bright parts (shot noise), the same in every channel."""
    std = _rand(0.005, 0.03)
    grain = torch.randn(image.shape[-2:], dtype=image.dtype)
    return image + std * torch.sqrt(image.clamp(min=0) + 0.05) * grain


#: The transformations in the order they are applied.
TRANSFORMS = (tilt, glare, moire, blur, brightness_contrast, noise)


def photographic(image01: torch.Tensor, p: float = P_EACH) -> torch.Tensor:
    """Apply each of :data:`TRANSFORMS` with probability ``p`` to a ``(C, H, W)`` image in ``[0, 1]``.

    The channels are expected equal (grey replicated); the first is transformed and replicated.
    """
    grey = image01[:1]
    for transform in TRANSFORMS:
        if torch.rand(()) < p:
            grey = transform(grey).clamp(0.0, 1.0)
    return grey.expand_as(image01).contiguous()
