"""Training-only augmentation, applied on top of the one preprocess() (never at evaluation).

It works on the preprocessed ``(C, H, W)`` tensor and draws from torch's random generator:
in DataLoader workers that generator is seeded from the loader's (seeded, per-epoch)
generator, in the main process it is the global one whose state checkpoints carry, so an
augmented run is reproducible and resumable.

* ``none``: the DGC paper trains without augmentation.
* ``hflip``: random horizontal flip with probability 0.5 (CheXNet).
* ``hflip-rotate``: the flip plus a rotation by an angle uniform in ``[-degrees, degrees]``, the
  uncovered corners filled with the value black (0) takes after normalisation.
"""

from __future__ import annotations

import torch

from cxr_core.optional import require
from cxr_core.preprocess import PreprocessSpec
from training.config import ConfigError


class Augmentation:
    """Callable ``(C, H, W) -> (C, H, W)`` for the names in :data:`training.config.AUGMENTATIONS`."""

    def __init__(self, name: str, spec: PreprocessSpec, degrees: float = 5.0) -> None:
        if name not in ("hflip", "hflip-rotate"):
            raise ConfigError(f"unknown augmentation {name!r}; expected 'hflip' or 'hflip-rotate' (or none)")
        if spec.layout != "NCHW":
            raise ConfigError(
                f"augmentation works on NCHW inputs; the spec's layout is {spec.layout!r}, expected 'NCHW'"
            )
        self.name, self.degrees = name, float(degrees)
        if spec.normalization == "mean_std":
            self.fill = [-m / s for m, s in zip(spec.mean, spec.std, strict=True)]
        else:
            self.fill = [float(spec.value_range[0])] * spec.channels

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if torch.rand(()) < 0.5:
            image = torch.flip(image, dims=(-1,))
        if self.name == "hflip-rotate" and self.degrees > 0:
            functional = require("torchvision.transforms.v2.functional", extra="train", purpose="rotation")
            angle = float((torch.rand(()) * 2.0 - 1.0) * self.degrees)
            image = functional.rotate(
                image,
                angle,
                interpolation=functional.InterpolationMode.BILINEAR,
                fill=self.fill,
            )
        return image.contiguous()


def build_augmentation(name: str, spec: PreprocessSpec, degrees: float = 5.0) -> Augmentation | None:
    """The augmentation called ``name``, or ``None`` for ``none``."""
    return None if name == "none" else Augmentation(name, spec, degrees)
