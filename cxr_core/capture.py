"""Phone photos of films: find the film, check the photo, straighten it into a grey radiograph.

Where there is no digital X-ray, the radiograph is a film on a light box, a film held against a
window, or an image on a monitor, and the clinician photographs it. :func:`capture_film` turns such
a photo into the grey image every other path of cxr-edge reads::

    load (EXIF orientation) -> find the film's quad (capture_detect) -> measure the photo
    (capture_quality) -> refuse an unusable photo with what to do -> rectify the perspective to
    the film's aspect -> white balance -> luminance -> contrast stretch -> DecodedImage

The result then goes through the same preprocessing, input gate and learned gate as any file
(:meth:`cxr_core.predictor.Predictor.predict_photo`).

Decisions, and why:

* **Detect small, warp once.** The film is found on a 512 px working copy (Pillow's C box
  reduction); the corners are refined to sub-pixel there and mapped back to the photo. The film's
  bounding box is then box-reduced once to about the output size (no aliasing) and warped with
  Pillow's ``Image.transform(PERSPECTIVE)``: to at most ``long_side`` (1024) px in grey, with the white
  balance and the luminance applied by Pillow's RGB -> L matrix on the way, and to a 512 px colour copy
  for the white balance gains and the glare. A JPEG file with more than 3 times the needed
  resolution is decoded at 1/2, 1/4 or 1/8 scale by libjpeg (draft mode), keeping at least 1536 px on
  its long side; the corners are still reported in the full-size photo's pixels.
* **The film's aspect from the quad.** A film is a rectangle; its width / height is estimated from
  the photographed quad (:func:`cxr_core.capture_geometry.film_aspect`), so a 14 x 17 inch film is
  not squeezed square.
* **White balance, then luminance.** A film is grey; a light box, a window or a monitor gives the
  photo a colour cast that the input gate would refuse as "colour". The cast is a gain per channel,
  estimated on the film's mid-tones (grey world), removed, and only then is the luminance taken.
  What colour remains is the image's ``colourfulness`` (the input gate still refuses a photo of a
  coloured picture).
* **Contrast stretch.** A photographed film's black is lifted (light leaking through the film base,
  the screen's black level): its 0.5th-99.5th percentiles are stretched to [0, 1], as a digital
  radiograph spans its range. The provenance notes record the gains and the stretch.
* **Refuse with the fix.** An unusable photo raises :class:`PhotoRefusedError` with the reason in
  plain words, the fix ("avoid the reflection", "hold the phone parallel to the film", "move
  closer", "hold the phone still") and the quality figures.
* **Corners from the user win.** ``corners=`` (the app's draggable corners) skips detection; the
  photo is still measured and judged, except for detection's own refusals.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageOps, UnidentifiedImageError

from cxr_core.capture_common import (
    CORNER_NAMES,
    CaptureInputError,
    FilmQuad,
    PhotoInput,
    PhotoRefusedError,
    as_corners,
)
from cxr_core.capture_detect import detect_quad
from cxr_core.capture_geometry import film_aspect, homography, quad_area, tilt_degrees
from cxr_core.capture_quality import (
    BLUR_SIZE,
    DEFAULT_LIMITS,
    MEASURE_SIZE,
    PhotoLimits,
    PhotoQuality,
    blur_metric,
    check_photo_blur,
    glare_shares,
    judge,
    measure_copy,
    moire_metric,
)
from cxr_core.errors import ImageDecodeError, UnsupportedImageError
from cxr_core.imaging_common import (
    DEFAULT_MAX_PIXELS,
    CorruptImageError,
    DecodedImage,
    DecodeLimits,
    ImageFileError,
    ImageProvenance,
    check_dimensions,
    colourfulness,
)

__all__ = [
    "CORNER_NAMES",
    "DEFAULT_LIMITS",
    "CaptureInputError",
    "CapturedFilm",
    "FilmQuad",
    "PhotoInput",
    "PhotoLimits",
    "PhotoQuality",
    "PhotoRefusedError",
    "capture_film",
    "find_film",
    "load_photo",
    "rectify",
]

logger = logging.getLogger(__name__)

#: Long side of the rectified film, in pixels (never enlarged beyond the film's size in the photo).
RECTIFIED_LONG_SIDE = 1024
#: Percentiles of the film's grey levels stretched to 0 and 1.
STRETCH_PERCENTILES = (0.5, 99.5)
#: White balance uses the film's pixels between these shares of full scale (no black, no blown out).
BALANCE_RANGE = (0.08, 0.95)
EXPECTED_PHOTO = "a JPEG or PNG photo of a film"
_LUMA_601 = (0.299, 0.587, 0.114)


@dataclass(frozen=True, eq=False)
class CapturedFilm:
    """A film taken from a photo: the rectified grey ``image`` and how it was found."""

    image: DecodedImage  # the rectified, white-balanced grey film, ready for Predictor.predict_image
    corners: NDArray[np.float64]  # (4, 2) in the ORIGINAL photo's pixel coordinates
    detected: bool  # False when the caller supplied the corners
    quality: PhotoQuality
    photo_size: tuple[int, int]  # (width, height)
    timings_ms: dict[str, float]

    def photo_input(self) -> PhotoInput:
        corners = tuple((float(x), float(y)) for x, y in self.corners)
        return PhotoInput(corners, self.detected, self.quality.to_dict(), self.photo_size)


# ----------------------------------------------------------------------------- loading


def _open_photo(
    path: str | Path, limits: DecodeLimits | None = None, draft_long_side: int | None = None
) -> tuple[Image.Image, str]:
    """The photo at ``path`` as an RGB Pillow image with its EXIF orientation applied, and its format.

    ``draft_long_side``: decode a JPEG at the smallest DCT scale keeping that many px on the long
    side; the full size (after orientation) is then in ``image.info["cxr_full_size"]``."""
    from cxr_core.imaging import sniff_format

    name = str(path)
    path = Path(path)
    try:
        with path.open("rb") as handle:
            head = handle.read(132)
    except FileNotFoundError:
        raise ImageFileError(name, f"file not found; expected {EXPECTED_PHOTO}") from None
    except IsADirectoryError:
        raise ImageFileError(name, f"is a directory; expected {EXPECTED_PHOTO}") from None
    except OSError as exc:
        raise ImageFileError(
            name, f"cannot be read ({exc.strerror or exc}); expected {EXPECTED_PHOTO}"
        ) from exc
    try:
        fmt = sniff_format(head, name)
    except UnsupportedImageError as exc:
        raise UnsupportedImageError(name, f"{exc.reason.split(';')[0]}; expected {EXPECTED_PHOTO}") from None
    if fmt not in ("jpeg", "png"):
        raise UnsupportedImageError(
            name,
            f"is a DICOM file, not a photo; expected {EXPECTED_PHOTO} (score DICOM files without --photo)",
        )
    limits = limits or DecodeLimits(max_pixels=DEFAULT_MAX_PIXELS)
    try:
        image = Image.open(path)
        check_dimensions(name, image.width, image.height, limits)
        full = image.size
        if draft_long_side is not None and fmt == "jpeg":
            shrink = 1
            while shrink < 8 and max(full) // (shrink * 2) >= draft_long_side:
                shrink *= 2
            if shrink > 1:
                image.draft("RGB", (full[0] // shrink, full[1] // shrink))
        orientation = image.getexif().get(0x0112, 1)
        image = ImageOps.exif_transpose(image)
        full = full[::-1] if orientation in (5, 6, 7, 8) else full
        if image.mode in SIXTEEN_BIT_GREY_MODES:
            image = _sixteen_bit_grey_to_8(image)
        image.info["cxr_full_size"] = full
        if image.mode != "RGB":
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                background = Image.new("RGB", image.size, (0, 0, 0))
                background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
                image = background
            else:
                image = image.convert("RGB")
        image.load()
    except ImageDecodeError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise CorruptImageError(name, f"cannot be decoded ({exc}); expected {EXPECTED_PHOTO}") from exc
    return image, fmt


#: Pillow's modes for a 16-bit grey PNG. Its convert("RGB") clips them at 255 instead of scaling:
#: a 16-bit photo of a good film came out all white and was refused as blurred.
SIXTEEN_BIT_GREY_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N"})


def _sixteen_bit_grey_to_8(image: Image.Image) -> Image.Image:
    """A 16-bit grey image scaled to 8 bits (value / 257, rounded: 65535 -> 255), as mode L."""
    values = np.asarray(image, dtype=np.float32)
    eight = np.clip(np.rint(values / 257.0), 0, 255).astype(np.uint8)
    return Image.fromarray(eight, "L")


def _open_photo_scaled(path: str | Path, min_long_side: int) -> tuple[Image.Image, str, tuple[int, int]]:
    """The photo decoded at the smallest JPEG DCT scale (1/2, 1/4, 1/8) that keeps at least
    ``min_long_side`` px on its long side (libjpeg's draft mode: a 12-megapixel photo decodes about
    4x faster at 1/2), its format, and its full size (width, height) after EXIF orientation."""
    from cxr_core.imaging import sniff_format

    try:
        with Path(path).open("rb") as handle:
            jpeg = sniff_format(handle.read(132), str(path)) == "jpeg"
    except (OSError, ImageDecodeError):
        jpeg = False  # _open_photo reports it
    if not jpeg:
        image, fmt = _open_photo(path)
        return image, fmt, image.size
    image, fmt = _open_photo(path, draft_long_side=min_long_side)
    return image, fmt, image.info["cxr_full_size"]


def load_photo(path: str | Path) -> NDArray[np.uint8]:
    """The photo at ``path`` as (H, W, 3) uint8 RGB, EXIF orientation applied.

    Raises an :class:`~cxr_core.errors.ImageDecodeError` subclass naming the file and the problem.
    """
    image, _ = _open_photo(path)
    return np.asarray(image, dtype=np.uint8)


def _as_image(rgb: NDArray[np.uint8] | Image.Image, name: str) -> Image.Image:
    if isinstance(rgb, Image.Image):
        return rgb if rgb.mode == "RGB" else rgb.convert("RGB")
    array = np.asarray(rgb)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8 or min(array.shape[:2]) < 16:
        raise CaptureInputError(
            f"{name}: photo array has shape {array.shape} and dtype {array.dtype}; expected (H, W, 3) uint8 "
            "RGB at least 16 px on a side"
        )
    return Image.fromarray(np.ascontiguousarray(array), "RGB")


# ----------------------------------------------------------------------------- detection


def find_film(
    rgb: NDArray[np.uint8] | Image.Image, *, name: str = "photo", limits: PhotoLimits = DEFAULT_LIMITS
) -> FilmQuad:
    """The film's four corners in the photo (TL, TR, BR, BL, photo pixels) and the detection's confidence.

    Raises :class:`PhotoRefusedError` when the whole photo is too blurred to look for a film in (the
    advice is then to hold the phone still, not that no film was found), when there is no film, two
    films, or a film cut off by the frame.
    """
    photo = _as_image(rgb, name)
    check_photo_blur(photo, limits, name)
    return detect_quad(photo, name)


# ----------------------------------------------------------------------------- rectification


def _output_size(
    corners: NDArray[np.float64], photo_size: tuple[int, int], long_side: int
) -> tuple[int, int]:
    aspect = film_aspect(corners, photo_size)
    sides = np.linalg.norm(np.roll(corners, -1, axis=0) - corners, axis=1)
    native = float(max(sides))  # the film's longest side in the photo, in photo pixels
    longest = max(16, min(long_side, int(round(native))))
    if aspect >= 1.0:
        return longest, max(16, int(round(longest / aspect)))
    return max(16, int(round(longest * aspect))), longest


def _film_region(
    photo: Image.Image, corners: NDArray[np.float64], size: tuple[int, int]
) -> tuple[Image.Image, NDArray[np.float64]]:
    """The film's bounding box of ``photo`` box-reduced to about ``size`` (once: the grey image and the
    small colour copy are both warped from it), and the corners in its pixels."""
    lo = np.floor(corners.min(axis=0)).astype(int)
    hi = np.ceil(corners.max(axis=0)).astype(int) + 1
    box = (
        max(0, int(lo[0])),
        max(0, int(lo[1])),
        min(photo.width, int(hi[0])),
        min(photo.height, int(hi[1])),
    )
    if box[2] - box[0] < 2 or box[3] - box[1] < 2:
        raise CaptureInputError(f"corners {np.round(corners, 1).tolist()} lie outside the photo {photo.size}")
    width, height = size
    native = np.linalg.norm(np.roll(corners, -1, axis=0) - corners, axis=1)
    factor = max(1, int(min(native[0] / width, native[1] / height, native[2] / width, native[3] / height)))
    region = photo.reduce(factor, box=box) if factor >= 2 else photo.crop(box)
    return region, (corners - np.array([box[0], box[1]], dtype=np.float64) + 0.5) / factor - 0.5


def _warp(
    photo: Image.Image,
    corners: NDArray[np.float64],
    size: tuple[int, int],
    convert: tuple[float, ...] | None = None,
) -> Image.Image:
    """The quad ``corners`` of ``photo`` warped onto a ``size`` rectangle: box-reduced first to about
    the output's resolution (no aliasing, a smaller warp), optionally converted to grey with the
    ``convert`` matrix (Pillow's RGB -> L with per-channel weights), then one perspective warp."""
    width, height = size
    region, local = _film_region(photo, corners, size)
    if convert is not None:
        region = region.convert("L", convert)
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float64)
    # Pillow's PERSPECTIVE maps output coordinates (pixel edges) to input coordinates (pixel edges).
    coeffs = homography(target, local + 0.5).ravel()[:8]
    return region.transform(
        (width, height), Image.Transform.PERSPECTIVE, tuple(coeffs), Image.Resampling.BILINEAR
    )


def rectify_rgb(
    photo: Image.Image, corners: NDArray[np.float64], long_side: int = RECTIFIED_LONG_SIDE
) -> Image.Image:
    """The film cut out of ``photo`` and straightened to its aspect (RGB, at most ``long_side`` px)."""
    return _warp(photo, corners, _output_size(corners, photo.size, long_side))


def white_balance_gains(rgb: NDArray[np.uint8]) -> NDArray[np.float64]:
    """Per-channel gains that make the film's mid-tones grey (grey world over :data:`BALANCE_RANGE`)."""
    pixels = rgb.reshape(-1, 3).astype(np.float32)
    if len(pixels) > 200_000:
        pixels = pixels[:: len(pixels) // 200_000]
    brightest = pixels.max(axis=1)
    use = (brightest >= BALANCE_RANGE[0] * 255) & (brightest <= BALANCE_RANGE[1] * 255)
    if use.sum() < 100:
        return np.ones(3)
    means = pixels[use].mean(axis=0).astype(np.float64)
    if np.any(means <= 1e-3):
        return np.ones(3)
    return means.mean() / means


def _grey_matrix(gains: NDArray[np.float64]) -> tuple[float, ...]:
    """Pillow's RGB -> L matrix of white balance with ``gains`` then BT.601 luminance."""
    weights = np.array(_LUMA_601) * gains
    return (float(weights[0]), float(weights[1]), float(weights[2]), 0.0)


def _stretch(grey: Image.Image) -> tuple[NDArray[np.float32], float, float]:
    """The L image as float32 with its :data:`STRETCH_PERCENTILES` stretched to [0, 1] (from its
    histogram), and the (low, high) grey levels in [0, 1]."""
    counts = np.cumsum(grey.histogram()[:256])
    total = counts[-1]
    low = int(np.searchsorted(counts, total * STRETCH_PERCENTILES[0] / 100.0))
    high = int(np.searchsorted(counts, total * STRETCH_PERCENTILES[1] / 100.0))
    pixels = np.asarray(grey, dtype=np.float32)
    if high - low >= 2:
        pixels = (pixels - np.float32(low)) * np.float32(1.0 / (high - low))
        np.clip(pixels, 0.0, 1.0, out=pixels)
    else:
        pixels = pixels * np.float32(1.0 / 255.0)
    return pixels, low / 255.0, high / 255.0


def _balanced_colourfulness(rgb: NDArray[np.uint8], gains: NDArray[np.float64]) -> float:
    balanced = rgb.astype(np.float32) * gains.astype(np.float32)[None, None, :]
    return colourfulness(np.clip(balanced, 0.0, 255.0), 255.0)


def rectify(
    rgb: NDArray[np.uint8] | Image.Image, corners: object, *, long_side: int = RECTIFIED_LONG_SIDE
) -> NDArray[np.float32]:
    """The film inside ``corners`` (TL, TR, BR, BL in photo pixels) straightened to its aspect, white
    balanced and as grey float32 in [0, 1] (stretched), at most ``long_side`` px on its long side."""
    photo = _as_image(rgb, "photo")
    points = as_corners(corners)
    small = np.asarray(_warp(photo, points, _output_size(points, photo.size, MEASURE_SIZE)), np.uint8)
    gains = white_balance_gains(small)
    size = _output_size(points, photo.size, long_side)
    grey, _, _ = _stretch(_warp(photo, points, size, _grey_matrix(gains)))
    return grey


# ----------------------------------------------------------------------------- capture


def _edge_margin(corners: NDArray[np.float64], size: tuple[int, int]) -> float:
    width, height = size
    margins = np.minimum.reduce(
        [corners[:, 0], corners[:, 1], (width - 1) - corners[:, 0], (height - 1) - corners[:, 1]]
    )
    return float(margins.min() / math.hypot(width, height))


def measure(
    photo_size: tuple[int, int],
    corners: NDArray[np.float64],
    film_rgb: NDArray[np.uint8],
    film_grey,
    confidence,
) -> PhotoQuality:
    """The quality figures of a photo (:mod:`cxr_core.capture_quality`)."""
    glare, glare_film = glare_shares(film_rgb)
    small = measure_copy(film_grey)
    return PhotoQuality(
        glare=glare,
        glare_film=glare_film,
        blur=blur_metric(measure_copy(small, BLUR_SIZE)),
        moire=moire_metric(small),
        tilt_deg=tilt_degrees(corners, photo_size),
        fill=abs(quad_area(corners)) / float(photo_size[0] * photo_size[1]),
        edge_margin=_edge_margin(corners, photo_size),
        aspect=film_aspect(corners, photo_size),
        confidence=float(confidence),
    )


def _ms(start: int) -> float:
    return (time.perf_counter_ns() - start) / 1e6


def capture_film(
    source: str | Path | NDArray[np.uint8] | Image.Image,
    *,
    corners: object = None,
    name: str | None = None,
    limits: PhotoLimits = DEFAULT_LIMITS,
    long_side: int = RECTIFIED_LONG_SIDE,
    check: bool = True,
) -> CapturedFilm:
    """Find (unless ``corners`` are given), measure, judge and rectify the film in a photo.

    ``source`` is a file (JPEG or PNG), an (H, W, 3) uint8 RGB array or a Pillow image. Raises
    :class:`PhotoRefusedError` for an unusable photo (reason, fix and figures), an
    :class:`~cxr_core.errors.ImageDecodeError` for a file that cannot be read. ``check=False``
    measures without refusing (the study and the app's preview use it).
    """
    timings: dict[str, float] = {}
    start = time.perf_counter_ns()
    fmt = "jpeg"
    scale = 1.0  # photo pixels per pixel of the decoded image (a JPEG is decoded at a reduced scale)
    if isinstance(source, (str, Path)):
        label = str(source) if name is None else name
        photo, fmt, size = _open_photo_scaled(source, long_side + long_side // 2)
        scale = size[0] / photo.width
        timings["load"] = _ms(start)
    else:
        label = "photo" if name is None else name
        photo = _as_image(source, label)
        size = photo.size
    start = time.perf_counter_ns()
    if corners is None:
        if check:  # a photo too blurred to find the film in says so, not "no film found"
            check_photo_blur(photo, limits, label)
        quad = detect_quad(photo, label)
        points, confidence, detected = quad.corners * scale, quad.confidence, True
    else:
        points, confidence, detected = as_corners(corners), 1.0, False
    timings["detect"] = _ms(start)
    start = time.perf_counter_ns()
    # A small colour copy of the film for the white balance and the glare; one grey warp for the image.
    out_size = _output_size(points, size, long_side)
    region, local = _film_region(photo, points / scale, out_size)
    small = np.asarray(_warp(region, local, _output_size(points, size, MEASURE_SIZE)), dtype=np.uint8)
    gains = white_balance_gains(small)
    film = _warp(region, local, out_size, _grey_matrix(gains))
    grey, low, high = _stretch(film)
    colour = _balanced_colourfulness(small[::2, ::2], gains)
    timings["rectify"] = _ms(start)
    start = time.perf_counter_ns()
    quality = measure(size, points, small, grey, confidence)
    timings["measure"] = _ms(start)
    if check:
        judge(quality, limits, label)
    notes = (
        f"phone photo of a film ({size[0]}x{size[1]}), corners "
        f"{'found' if detected else 'given'}: {np.round(points, 1).tolist()}",
        f"perspective rectified to {grey.shape[1]}x{grey.shape[0]} (film aspect {quality.aspect:.3f})",
        f"white balance gains (R, G, B) {tuple(round(float(g), 3) for g in gains)}; luminance; "
        f"grey levels {low:.3f}-{high:.3f} stretched to 0-1",
    )
    provenance = ImageProvenance(
        path=label,
        format=fmt,
        width=int(grey.shape[1]),
        height=int(grey.shape[0]),
        bit_depth=8,
        source_mode="RGB",
        colourfulness=colour,
        notes=notes,
    )
    logger.info("%s: film captured (%s)", label, ", ".join(f"{k} {v:.0f} ms" for k, v in timings.items()))
    return CapturedFilm(DecodedImage(grey, provenance), points, detected, quality, size, timings)
