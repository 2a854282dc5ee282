"""What the raster decoder (:mod:`cxr_core.imaging`) and the DICOM decoder
(:mod:`cxr_core.imaging_dicom`) share: the result types, the size limits, the grey conversion.

It exists so that the import graph has one direction: ``imaging`` imports ``imaging_dicom`` (lazily,
for DICOM files) and both import this module; ``imaging_dicom`` never imports ``imaging``.
Everything here is re-exported by :mod:`cxr_core.imaging`, the public module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from cxr_core.errors import ImageDecodeError, ImageSizeError, ImageTooLargeError

#: Decompression-bomb guard: images with more pixels than this are refused.
DEFAULT_MAX_PIXELS = 64_000_000
#: Longer side over shorter side above this is not a radiograph (a strip, a banner).
DEFAULT_MAX_ASPECT_RATIO = 10.0
#: Fewer pixels than this on a side is not a radiograph.
DEFAULT_MIN_SIDE = 8
#: Names that allow a DICOM file without the 128-byte preamble.
DICOM_SUFFIXES = (".dcm", ".dicom")
PNG_SUFFIXES = (".png",)
JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")
#: The one list of image file names every folder scan picks up (cxr-predict, cxr-calibrate, the
#: app's watch folder, the data loaders, edge-bench); lower case, compared with ``suffix.lower()``.
IMAGE_SUFFIXES = (*PNG_SUFFIXES, *JPEG_SUFFIXES, *DICOM_SUFFIXES)
EXPECTED_FORMATS = "a PNG, JPEG or DICOM radiograph"

_LUMA_601 = (0.299, 0.587, 0.114)


class ImageFileError(ImageDecodeError):
    """The path does not name a readable regular file (missing, a directory, no permission)."""


class CorruptImageError(ImageDecodeError):
    """The file has the right magic bytes but is truncated or its data is damaged."""


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
    transfer_syntax: str | None = None  # DICOM transfer syntax name; None for PNG/JPEG


@dataclass(frozen=True)
class DecodedImage:
    """A grey radiograph: ``pixels`` is float32 (H, W) in [0, 1], 1 = bright (bone, as displayed)."""

    pixels: NDArray[np.float32]
    provenance: ImageProvenance


@dataclass(frozen=True)
class DecodeLimits:
    """The size checks applied to header dimensions before pixel data is decoded."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_aspect_ratio: float = DEFAULT_MAX_ASPECT_RATIO
    min_side: int = DEFAULT_MIN_SIDE


def check_dimensions(name: str, width: int, height: int, limits: DecodeLimits) -> None:
    """Refuse zero, tiny, huge (decompression bomb) and extremely elongated image sizes."""
    size = f"{width}x{height} pixels"
    if width <= 0 or height <= 0:
        raise ImageSizeError(name, f"image has zero size ({size}); expected a non-empty radiograph")
    if width * height > limits.max_pixels:
        raise ImageTooLargeError(
            name,
            f"image is {size} ({width * height} pixels), more than the limit of {limits.max_pixels} "
            "pixels (decompression-bomb guard); expected a smaller image",
        )
    if min(width, height) < limits.min_side:
        raise ImageSizeError(
            name, f"image is only {size}; expected at least {limits.min_side} pixels on each side"
        )
    ratio = max(width, height) / min(width, height)
    if ratio > limits.max_aspect_ratio:
        raise ImageSizeError(
            name,
            f"aspect ratio {ratio:.1f}:1 ({size}) is not a radiograph; expected at most "
            f"{limits.max_aspect_ratio:g}:1",
        )


def rgb_to_grey(rgb: NDArray, max_value: float) -> NDArray[np.float32]:
    """ITU-R BT.601 luma of an ``(H, W, 3)`` array whose full scale is ``max_value``, in [0, 1]."""
    scale = np.float32(1.0 / max_value)
    grey = rgb[..., 0] * np.float32(_LUMA_601[0] * scale)
    grey += rgb[..., 1] * np.float32(_LUMA_601[1] * scale)
    grey += rgb[..., 2] * np.float32(_LUMA_601[2] * scale)
    return np.clip(grey, 0.0, 1.0, out=grey).astype(np.float32, copy=False)


def colourfulness(rgb: NDArray, max_value: float) -> float:
    """Mean HSV chroma ``mean(max(R,G,B) - min(R,G,B)) / max_value`` of an ``(H, W, 3)`` array.

    0 for grey content, up to 1 for saturated primaries; cheap (one pass, no colour-space maths).
    """
    return _unit(_chroma(rgb).mean(dtype=np.float64) / max_value)


def _chroma(rgb: NDArray) -> NDArray:
    red, green, blue = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    # Element-wise over the channel views: ~20x faster than max/min reductions over a size-3 axis.
    chroma = np.maximum(np.maximum(red, green), blue)
    chroma -= np.minimum(np.minimum(red, green), blue)
    return chroma


def _unit(value: float) -> float:
    return float(min(1.0, max(0.0, float(value))))


#: Rows converted at a time by :func:`grey_and_colourfulness`.
STRIP_ROWS = 256


def grey_and_colourfulness(
    rgb: NDArray, max_value: float, alpha: NDArray | None = None
) -> tuple[NDArray[np.float32], float]:
    """:func:`rgb_to_grey` and :func:`colourfulness` of ``rgb``, composited over black by ``alpha``
    (8-bit, ``(H, W)``) when given, computed strip by strip.

    The same grey values as the whole-image functions; the colourfulness the same up to float64
    summation order. Whole-image float32 temporaries made a 48-megapixel phone photo peak at 1.3 GB
    (1.75 GB as RGBA PNG); strips keep the peak near the 8-bit pixels plus the grey output, which
    matters on a 2 GB Pi or a phone.
    """
    height, width = rgb.shape[:2]
    grey = np.empty((height, width), dtype=np.float32)
    chroma_sum = 0.0
    for top in range(0, height, STRIP_ROWS):
        rows = slice(top, top + STRIP_ROWS)
        values = rgb[rows]
        if alpha is not None:
            values = values * (alpha[rows, :, None] * np.float32(1.0 / 255.0))
        grey[rows] = rgb_to_grey(values, max_value)
        chroma_sum += float(_chroma(values).sum(dtype=np.float64))
    return grey, _unit(chroma_sum / max(1, height * width) / max_value)
