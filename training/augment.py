"""Training-only augmentation, applied on top of the one preprocess() (never at evaluation).

It works on the preprocessed ``(C, H, W)`` tensor and draws from torch's random generator:
in DataLoader workers that generator is seeded from the loader's (seeded, per-epoch)
generator, in the main process it is the global one whose state checkpoints carry, so an
augmented run is reproducible and resumable.

* ``none``: the DGC paper trains without augmentation.
* ``hflip``: random horizontal flip with probability 0.5 (CheXNet).
* ``hflip-rotate``: the flip plus a rotation by an angle uniform in ``[-degrees, degrees]``, the
  uncovered corners filled with the value black (0) takes after normalisation.
* ``photo``: CheXphoto's photographic transformations (glare, moire, tilt, blur, noise,
  brightness/contrast; :mod:`training.augment_photo`), for models meant for phone photos of films.
* ``hflip-photo``: the flip, then the photographic transformations (the ``field`` preset).
"""

from __future__ import annotations

import torch

from cxr_core.optional import require
from cxr_core.preprocess import PreprocessSpec
from training.augment_photo import photographic
from training.config import AUGMENTATIONS, ConfigError


class Augmentation:
    """Callable ``(C, H, W) -> (C, H, W)`` for the names in :data:`training.config.AUGMENTATIONS`."""

    def __init__(self, name: str, spec: PreprocessSpec, degrees: float = 5.0) -> None:
        if name not in AUGMENTATIONS or name == "none":
            choices = [a for a in AUGMENTATIONS if a != "none"]
            raise ConfigError(f"unknown augmentation {name!r}; expected one of {choices} (or none)")
        if spec.layout != "NCHW":
            raise ConfigError(
                f"augmentation works on NCHW inputs; the spec's layout is {spec.layout!r}, expected 'NCHW'"
            )
        self.name, self.degrees = name, float(degrees)
        if spec.normalization == "mean_std":
            self.fill = [-m / s for m, s in zip(spec.mean, spec.std, strict=True)]
            offset, scale = list(spec.mean), list(spec.std)  # normalised = (x01 - offset) / scale
        else:
            self.fill = [float(spec.value_range[0])] * spec.channels
            lo, hi = spec.value_range
            offset, scale = [-lo / (hi - lo)] * spec.channels, [1.0 / (hi - lo)] * spec.channels
        self.offset = torch.tensor(offset, dtype=torch.float32).reshape(-1, 1, 1)
        self.scale = torch.tensor(scale, dtype=torch.float32).reshape(-1, 1, 1)

    def __call__(self, image: torch.Tensor) -> torch.Tensor:
        if self.name != "photo" and torch.rand(()) < 0.5:
            image = torch.flip(image, dims=(-1,))
        if self.name in ("photo", "hflip-photo"):
            x01 = image * self.scale.to(image.dtype) + self.offset.to(image.dtype)
            image = (photographic(x01) - self.offset.to(image.dtype)) / self.scale.to(image.dtype)
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
