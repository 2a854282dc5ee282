"""Decode PNG, JPEG and DICOM files into a float grey image plus provenance.

TEMPORARY minimal implementation (8-bit grey PNG/JPEG only); the full decoder replaces it.
The contract below (DecodedImage, ImageProvenance, decode_image) is fixed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

#: Decompression-bomb guard: images with more pixels than this are refused.
DEFAULT_MAX_PIXELS = 64_000_000


@dataclass(frozen=True)
class ImageProvenance:
    """What the file was, as read from it."""

    path: str
    format: str  # "png" | "jpeg" | "dicom"
    width: int  # original width in pixels (after EXIF orientation)
    height: int
    bit_depth: int  # bits per sample as stored (8, 12, 16, ...)
    source_mode: str  # Pillow mode or DICOM PhotometricInterpretation of the stored pixels
    colourfulness: float = 0.0  # mean |chroma| in [0, 1] of the source; 0 for grey sources
    modality: str | None = None
    body_part_examined: str | None = None
    view_position: str | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class DecodedImage:
    """A grey radiograph: ``pixels`` is float32 (H, W) in [0, 1], 1 = bright (bone, as displayed)."""

    pixels: NDArray[np.float32]
    provenance: ImageProvenance


def decode_image(path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    path = Path(path)
    with Image.open(path) as img:
        grey = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
        fmt = (img.format or "").lower()
    h, w = grey.shape
    return DecodedImage(grey, ImageProvenance(str(path), fmt, w, h, 8, "L"))
