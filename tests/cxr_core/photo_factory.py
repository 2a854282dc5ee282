"""Simple photos of a film made with a Pillow perspective transform, for the capture tests.

Not the renderer of the photo study (training/data/photo_render.py): just enough of a light box, a
monitor or a window behind a known quad to exercise detection, rectification and each refusal.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFilter

from cxr_core.capture_geometry import homography


def phantom_film(seed: int = 0, size: int = 512) -> NDArray[np.uint8]:
    """A real phantom chest film (training.data.phantom), grey uint8."""
    from training.data.phantom import render_phantom

    return render_phantom(seed=seed, size=size).image


def quad_for(
    size: tuple[int, int], fill: float = 0.45, tilt: float = 0.0, shift: tuple[float, float] = (0.0, 0.0)
) -> NDArray[np.float64]:
    """A film quad covering about ``fill`` of a ``size`` frame, its top side shortened by ``tilt`` (share)."""
    width, height = size
    side = np.sqrt(fill * width * height)
    cx, cy = width / 2 + shift[0] * width, height / 2 + shift[1] * height
    half = side / 2
    top = half * (1.0 - tilt)
    return np.array(
        [
            [cx - top, cy - half * (1 - tilt / 2)],
            [cx + top, cy - half * (1 - tilt / 2) + 0.02 * side],
            [cx + half, cy + half],
            [cx - half, cy + half - 0.02 * side],
        ]
    )


def make_photo(
    film: NDArray[np.uint8],
    corners: NDArray[np.float64],
    size: tuple[int, int] = (1600, 1200),
    *,
    kind: str = "lightbox",
    cast: tuple[float, float, float] = (1.0, 1.0, 1.0),
    blur: float = 0.0,
    glare: tuple[float, float, float] | None = None,  # (x, y, radius) in photo pixels
    noise: float = 2.0,
    seed: int = 0,
    extra_films: tuple[NDArray[np.float64], ...] = (),
) -> NDArray[np.uint8]:
    """An RGB photo (H, W, 3) of ``film`` with its corners at ``corners`` (TL, TR, BR, BL)."""
    width, height = size
    rng = np.random.default_rng(seed)
    if kind == "lightbox":
        room, box, box_rect = 70, 235, (0.06, 0.05, 0.94, 0.95)
    elif kind == "monitor":
        room, box, box_rect = 150, 80, (0.05, 0.06, 0.95, 0.94)
    elif kind == "window":
        room, box, box_rect = 110, 245, (0.02, 0.02, 0.98, 0.98)
    else:
        room, box, box_rect = 120, 120, (0.0, 0.0, 1.0, 1.0)
    canvas = Image.new("L", size, room)
    draw = ImageDraw.Draw(canvas)
    x0, y0, x1, y1 = box_rect
    draw.rectangle([x0 * width, y0 * height, x1 * width, y1 * height], fill=box)
    for quad in (corners, *extra_films):
        h, w = film.shape
        film_rect = np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)
        coeffs = homography(np.asarray(quad), film_rect).ravel()[:8]
        source = Image.fromarray(film)
        if kind == "lightbox" or kind == "window":
            source = Image.fromarray((film.astype(np.float32) * (box / 255.0)).astype(np.uint8))
        warped = source.transform(size, Image.Transform.PERSPECTIVE, tuple(coeffs), Image.Resampling.BILINEAR)
        mask = Image.new("L", film.shape[::-1], 255).transform(
            size, Image.Transform.PERSPECTIVE, tuple(coeffs), Image.Resampling.BILINEAR
        )
        canvas.paste(warped, (0, 0), mask)
    grey = np.asarray(canvas, dtype=np.float32)
    if blur > 0:
        grey = np.asarray(
            Image.fromarray(grey.astype(np.uint8)).filter(ImageFilter.GaussianBlur(blur)), np.float32
        )
    rgb = grey[..., None] * np.array(cast, dtype=np.float32)[None, None, :]
    if glare is not None:
        gx, gy, radius = glare
        yy, xx = np.mgrid[0:height, 0:width]
        spot = np.exp(-(((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * (radius / 2) ** 2)))
        rgb = rgb + 400.0 * spot[..., None]
    rgb = rgb + rng.normal(0.0, noise, size=rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8)
