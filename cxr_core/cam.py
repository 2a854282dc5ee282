"""Class activation maps from the exported feature map and the classifier weights, and their overlay.

The exported models return, beside the probabilities, the feature map ``F`` (C, h, w) that the
classifier pools (``logit = pool(F) @ W.T + b``, docs/bundle-format.md). The class activation map
of finding ``c`` is ``sum_k W[c, k] * F[k]`` (Zhou et al. 2016; CheXNet's heat maps): one small
matrix product, no gradients, no second pass through the model, so it works on any runtime and
costs a fraction of a millisecond before upsampling.

Decisions, and why:

* **Normalised per map, at model resolution.** A heat map is min-max scaled to [0, 1] on the
  ``h x w`` grid, before upsampling (bilinear interpolation cannot leave that range, so the result
  is the same as scaling afterwards, for ``h*w`` values instead of ``H*W``). It shows *where* the
  model looked for a finding, not *how likely* the finding is: the probability says that. A flat
  map (no spatial preference) becomes all zeros rather than noise stretched to full scale.
* **Upsampled straight into the original geometry.** :func:`upsample_to_image` maps each original
  pixel centre through the preprocessing (resize, then centre crop; :func:`compute_geometry`) onto
  the feature grid and interpolates bilinearly (cell centres at ``(i + 0.5) * stride``, edges
  clamped, as ``align_corners=False``). It is separable: ``A @ cam @ B.T`` with ``A`` (H, h) and
  ``B`` (W, w) holding two non-zero weights per row, computed in row blocks over the crop only,
  with the weights cached per image size: 0.25 ms for a 1024 x 1024 image from a 4 x 4 map
  (0.5 ms inside the prediction loop, where the output's 4 MB mostly miss the cache). Pixels
  outside the crop were never seen by the model and get 0.
* **A perceptual colour map written here.** :func:`colour_map_table` (256 x RGB) runs from dark indigo
  through magenta and orange to pale yellow with lightness rising linearly in OKLab (Ottosson
  2020), so equal steps in heat look like equal steps, and it still reads in grey print. Entries
  outside the sRGB gamut have their chroma reduced (hue and lightness kept).
* **Overlay weighted by the heat.** :func:`overlay` blends the colour into the grey radiograph with
  weight ``alpha * heat`` (quantised to 1/255 steps, as the 8-bit output is): cold regions keep the
  radiograph untouched, so the map never hides anatomy where the model did not look.
"""

from __future__ import annotations

import logging
from functools import lru_cache

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from cxr_core.errors import CxrEdgeError
from cxr_core.preprocess import PreprocessGeometry

logger = logging.getLogger(__name__)


class CamInputError(CxrEdgeError, ValueError):
    """A feature map, classifier weight, heat map or overlay setting has the wrong shape or value."""


class CamIndexError(CamInputError, IndexError):
    """A class index outside the classifier's rows."""


#: Entries in the colour look-up table.
COLOUR_MAP_SIZE = 256
#: Output values per row block of the upsampling GEMM (64 rows of a 1024-wide image).
_BLOCK_VALUES = 1 << 16
#: (position, OKLab lightness L, chroma C, hue in degrees, unwrapped) anchors of the colour map.
_ANCHORS: tuple[tuple[float, float, float, float], ...] = (
    (0.00, 0.18, 0.10, 285.0),  # dark indigo
    (0.25, 0.38, 0.17, 320.0),  # purple
    (0.50, 0.58, 0.20, 375.0),  # red-magenta (15 deg)
    (0.75, 0.77, 0.17, 420.0),  # orange (60 deg)
    (1.00, 0.96, 0.12, 465.0),  # pale yellow (105 deg)
)


def class_activation_maps(
    feature_map: NDArray[np.floating], weight: NDArray[np.floating]
) -> NDArray[np.float32]:
    """Raw CAMs of every class: ``(L, h, w)`` from a feature map ``(C, h, w)`` and weights ``(L, C)``."""
    fmap = _check_feature_map(feature_map, weight)
    channels, height, width = fmap.shape
    maps = np.asarray(weight, dtype=np.float32) @ fmap.reshape(channels, height * width)
    return maps.reshape(-1, height, width)


def class_activation_map(
    feature_map: NDArray[np.floating], weight: NDArray[np.floating], index: int
) -> NDArray[np.float32]:
    """Raw CAM ``sum_k weight[index, k] * feature_map[k]`` of one class, ``(h, w)`` float32."""
    fmap = _check_feature_map(feature_map, weight)
    if not 0 <= index < weight.shape[0]:
        raise CamIndexError(
            f"class index {index} is out of range; expected 0 to {weight.shape[0] - 1} "
            f"(the classifier has {weight.shape[0]} classes)"
        )
    channels, height, width = fmap.shape
    row = np.asarray(weight[index], dtype=np.float32)
    return (row @ fmap.reshape(channels, height * width)).reshape(height, width)


def _check_feature_map(
    feature_map: NDArray[np.floating], weight: NDArray[np.floating]
) -> NDArray[np.float32]:
    fmap = np.asarray(feature_map, dtype=np.float32)
    if fmap.ndim != 3:
        raise CamInputError(f"feature map has shape {fmap.shape}; expected (C, h, w) for one image")
    if np.ndim(weight) != 2 or weight.shape[1] != fmap.shape[0]:
        raise CamInputError(
            f"classifier weight has shape {np.shape(weight)} and the feature map {fmap.shape[0]} channels; "
            "expected weight (L, C) with C equal to the feature map's channels"
        )
    return fmap


def normalise_map(cam: NDArray[np.floating]) -> NDArray[np.float32]:
    """Min-max scale a map to [0, 1]; a flat (or non-finite) map becomes all zeros."""
    values = np.asarray(cam, dtype=np.float32)
    low, high = float(values.min()), float(values.max())
    if not (np.isfinite(low) and np.isfinite(high)) or high - low <= 1e-12 * max(1.0, abs(high)):
        return np.zeros_like(values)
    return (values - np.float32(low)) * np.float32(1.0 / (high - low))


@lru_cache(maxsize=32)
def _axis_weights(
    n_out: int, resized: int, start: int, crop: int, cells: int
) -> tuple[NDArray[np.float32], int, int]:
    """Bilinear weights from original pixels along one axis to feature-grid cells.

    Returns ``(weights (last - first, cells), first, last)``: the pixels ``first:last`` whose centres
    fall inside the crop (the others get no weight). Cached: a device sees few image sizes.
    """
    centre = (np.arange(n_out, dtype=np.float64) + 0.5) * (resized / n_out)  # in resized pixels
    in_crop = centre - start  # continuous coordinate inside the crop, [0, crop) where the model looked
    inside = np.nonzero((in_crop >= 0.0) & (in_crop < crop))[0]
    first, last = (int(inside[0]), int(inside[-1]) + 1) if inside.size else (0, 0)
    grid = np.clip(in_crop[first:last] * (cells / crop) - 0.5, 0.0, cells - 1.0)
    weights = np.zeros((last - first, cells), dtype=np.float32)
    if cells == 1:
        weights[:, 0] = 1.0
    else:
        lower = np.minimum(np.floor(grid).astype(np.int64), cells - 2)
        frac = (grid - lower).astype(np.float32)
        index = np.arange(last - first)
        weights[index, lower] = 1.0 - frac
        weights[index, lower + 1] = frac
    weights.setflags(write=False)
    return weights, first, last


def upsample_to_image(
    cam: NDArray[np.floating], geometry: PreprocessGeometry, size: tuple[int, int] | None = None
) -> NDArray[np.float32]:
    """Place a model-resolution map ``(h, w)`` on the original image: ``(H, W)`` float32.

    Bilinear through the preprocessing geometry (resize, centre crop); 0 outside the crop.
    ``size`` = (height, width) samples the same map on a coarser (or finer) grid covering the whole
    original image, e.g. the screen size: the cost is proportional to the output's pixels.
    """
    small = np.asarray(cam, dtype=np.float32)
    if small.ndim != 2:
        raise CamInputError(f"map has shape {small.shape}; expected (h, w)")
    height, width = geometry.original_size if size is None else (int(size[0]), int(size[1]))
    if height < 1 or width < 1:
        raise CamInputError(f"heat map size {height}x{width}; expected positive height and width")
    new_h, new_w = geometry.resized_size
    top, left, crop_h, crop_w = geometry.crop_box
    rows, row0, row1 = _axis_weights(height, new_h, top, crop_h, small.shape[0])
    cols, col0, col1 = _axis_weights(width, new_w, left, crop_w, small.shape[1])
    partial = rows @ small  # (crop rows, w): tiny
    cols_t = np.ascontiguousarray(cols.T)
    out = np.zeros((height, width), dtype=np.float32)
    # Only the crop is written, in blocks of rows (~256 KiB of output each): cache-sized, and each
    # GEMM small enough that OpenBLAS runs it on the calling thread. One (H, w) @ (w, W) call woke
    # BLAS threads and, on a busy 2-core machine, took 9-45 ms (median) instead of 0.3-1 ms.
    step = max(8, _BLOCK_VALUES // max(col1 - col0, 1))
    for start in range(row0, row1, step):
        stop = min(start + step, row1)
        np.matmul(partial[start - row0 : stop - row0], cols_t, out=out[start:stop, col0:col1])
    return out


def score_strength(score: float) -> float:
    """How strongly a finding's heat map is coloured: ``score / 100`` clipped to [0, 1].

    The CAM is min-max scaled per image, so its hottest pixel is always 1; multiplying by this keeps
    a low-scoring finding's map faint (a score of 2 gives 2% of the colour) and makes colour mean
    the same across findings and images.
    """
    value = float(score)
    if value != value:
        raise CamInputError(f"score={score!r}; expected a number in [0, 100]")
    return min(1.0, max(0.0, value / 100.0))


def heatmap(
    feature_map: NDArray[np.floating],
    weight: NDArray[np.floating],
    index: int,
    geometry: PreprocessGeometry,
    size: tuple[int, int] | None = None,
) -> NDArray[np.float32]:
    """The [0, 1] heat map of class ``index`` at the original image's resolution ``(H, W)`` (or ``size``)."""
    return upsample_to_image(normalise_map(class_activation_map(feature_map, weight, index)), geometry, size)


# ----------------------------------------------------------------------------- colour


def _oklab_to_linear_srgb(lab: NDArray[np.float64]) -> NDArray[np.float64]:
    """OKLab ``(..., 3)`` to linear sRGB (Ottosson 2020, published matrices)."""
    to_lms = np.array(
        [
            [1.0, 0.3963377774, 0.2158037573],
            [1.0, -0.1055613458, -0.0638541728],
            [1.0, -0.0894841775, -1.2914855480],
        ]
    )
    to_rgb = np.array(
        [
            [4.0767416621, -3.3077115913, 0.2309699292],
            [-1.2684380046, 2.6097574011, -0.3413193965],
            [-0.0041960863, -0.7034186147, 1.7076147010],
        ]
    )
    return ((lab @ to_lms.T) ** 3) @ to_rgb.T


def linear_srgb_to_oklab(rgb: NDArray[np.floating]) -> NDArray[np.float64]:
    """Linear sRGB ``(..., 3)`` to OKLab (used by the tests to check the colour map is perceptual)."""
    to_lms = np.array(
        [
            [0.4122214708, 0.5363137080, 0.0514500710],
            [0.2119034982, 0.6806995451, 0.1073969566],
            [0.0883024619, 0.2817188376, 0.6299787005],
        ]
    )
    to_lab = np.array(
        [
            [0.2104542553, 0.7936177850, -0.0040720468],
            [1.9779984951, -2.4285922050, 0.4505937099],
            [0.0259040371, 0.7827717662, -0.8086757660],
        ]
    )
    return np.cbrt(np.asarray(rgb, dtype=np.float64) @ to_lms.T) @ to_lab.T


def srgb_encode(linear: NDArray[np.floating]) -> NDArray[np.float64]:
    """The sRGB transfer function: linear [0, 1] to encoded [0, 1]."""
    x = np.clip(np.asarray(linear, dtype=np.float64), 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055)


def srgb_decode(encoded: NDArray[np.floating]) -> NDArray[np.float64]:
    """Inverse of :func:`srgb_encode`."""
    x = np.asarray(encoded, dtype=np.float64)
    return np.where(x <= 0.04045, x / 12.92, np.power((x + 0.055) / 1.055, 2.4))


def _lch_to_linear(lightness: NDArray, chroma: NDArray, hue_deg: NDArray) -> NDArray[np.float64]:
    hue = np.deg2rad(hue_deg)
    lab = np.stack([lightness, chroma * np.cos(hue), chroma * np.sin(hue)], axis=-1)
    return _oklab_to_linear_srgb(lab)


@lru_cache(maxsize=1)
def colour_map_table() -> NDArray[np.uint8]:
    """The ``(256, 3)`` uint8 sRGB look-up table of the heat-map colour map (built once)."""
    t = np.linspace(0.0, 1.0, COLOUR_MAP_SIZE)
    pos, light, chroma, hue = (np.array(column) for column in zip(*_ANCHORS, strict=True))
    lightness = np.interp(t, pos, light)
    target_chroma = np.interp(t, pos, chroma)
    hue_deg = np.interp(t, pos, hue)
    # Largest in-gamut chroma up to the target, by bisection per entry (hue and lightness kept).
    low, high = np.zeros_like(t), target_chroma.copy()
    in_gamut = _in_gamut(_lch_to_linear(lightness, high, hue_deg))
    low[in_gamut] = high[in_gamut]
    for _ in range(40):
        mid = 0.5 * (low + high)
        ok = _in_gamut(_lch_to_linear(lightness, mid, hue_deg))
        low = np.where(ok, mid, low)
        high = np.where(ok, high, mid)
    encoded = srgb_encode(_lch_to_linear(lightness, low, hue_deg))
    table = np.rint(encoded * 255.0).astype(np.uint8)
    table.setflags(write=False)
    return table


def _in_gamut(linear: NDArray[np.float64], eps: float = 1e-9) -> NDArray[np.bool_]:
    return ((linear >= -eps) & (linear <= 1.0 + eps)).all(axis=-1)


def colourise(values: NDArray[np.floating]) -> NDArray[np.uint8]:
    """Map values in [0, 1] (any shape) to RGB uint8 ``(..., 3)`` through the colour map."""
    index = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0) * np.float32(COLOUR_MAP_SIZE - 1)
    return colour_map_table()[np.rint(index).astype(np.intp)]


def overlay(grey: NDArray[np.floating], heat: NDArray[np.floating], alpha: float = 0.45) -> NDArray[np.uint8]:
    """Blend the coloured ``heat`` (H, W) in [0, 1] onto the ``grey`` image (H, W) in [0, 1].

    Each pixel gets weight ``alpha * heat``: 0 leaves the radiograph grey. Returns RGB uint8 (H, W, 3).
    The colour look-up and the blend run in Pillow (palette image, ``Image.composite``): 9 ms for a
    1024 x 1024 image where the same arithmetic in numpy float32 took 56 ms.
    """
    if not 0.0 <= alpha <= 1.0:
        raise CamInputError(f"overlay alpha={alpha!r}; expected a value in [0, 1]")
    base = np.asarray(grey, dtype=np.float32)
    hot = np.clip(np.asarray(heat, dtype=np.float32), 0.0, 1.0)
    if base.ndim != 2 or base.shape != hot.shape:
        raise CamInputError(
            f"grey image {base.shape} and heat map {hot.shape} must both be (H, W) of the same shape"
        )
    index = np.rint(hot * np.float32(COLOUR_MAP_SIZE - 1)).astype(np.uint8)
    mask = np.rint(hot * np.float32(255.0 * alpha)).astype(np.uint8)
    grey8 = np.rint(np.clip(base, 0.0, 1.0) * np.float32(255.0)).astype(np.uint8)
    colour = Image.fromarray(index)  # mode L; putpalette makes it P
    colour.putpalette(colour_map_table().tobytes())
    background = Image.fromarray(grey8).convert("RGB")
    blended = Image.composite(colour.convert("RGB"), background, Image.fromarray(mask))
    return np.asarray(blended, dtype=np.uint8)
