"""Render a phone photo of a phantom film: on a light box, on a monitor, or held against a window.

:func:`render_photo` takes an 8-bit grey film (a phantom from :mod:`training.data.phantom`) and a
random generator and returns a :class:`RenderedPhoto`: the RGB photograph, the ground-truth corners
of the film in it, the :class:`~training.data.photo_scene.PhotoScene` it was drawn with, and, for
a deliberately unusable photo, its defect. The pipeline follows the light:

1. the room (a wall or desk with clutter), and what lights the film: a light box panel, a
   monitor (bezel, a grey viewer around the image), or the sky through a window;
2. the film warped by a pinhole camera's homography (:mod:`training.data.photo_geometry`) and
   lit from behind (light box, window) or shown on the screen (monitor), thumbs over its edges;
3. specular glare, the screen's moire fringes, the exposure, a colour cast and vignetting;
4. the camera: optical blur, sensor noise, JPEG compression.

Everything is linear light in float32 until the sRGB encoding; the heavy per-pixel work is
Pillow (warp, blur, JPEG) or whole-array numpy. Deterministic: the same film, generator state
and arguments give the same bytes. Corners are continuous pixel coordinates (see
:mod:`training.data.photo_geometry`): top-left, top-right, bottom-right, bottom-left of the film
as it is read; a photo with no film has NaN corners.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFilter

from training.data.photo_geometry import Placement, apply, film_corners, place_films
from training.data.photo_scene import DEFECTS, KINDS, LUNG_BOX, PhotoScene, sample_scene
from training.data.synthetic_labels import SyntheticOptionError

FloatImage = NDArray[np.float32]
GAMMA = 2.2
MIN_FILM_SIDE = 16
SIZE_RANGE = (64, 8000)

__all__ = ["DEFECTS", "KINDS", "LUNG_BOX", "PhotoScene", "RenderedPhoto", "render_photo", "render_scene"]


@dataclass(frozen=True)
class RenderedPhoto:
    """A rendered photo of a film and its ground truth."""

    rgb: NDArray[np.uint8]  # H x W x 3, the photograph (decoded from ``jpeg``)
    corners: NDArray[np.float64]  # (4, 2) TL, TR, BR, BL of the film; NaN when there is no film
    scene: PhotoScene
    usable: bool  # False for deliberately unusable photos
    defect: str | None  # one of photo_scene.DEFECTS, or None
    jpeg: bytes = b""  # the photo as the camera saved it (write these bytes, do not re-encode)
    homography: NDArray[np.float64] | None = None  # film pixels -> photo pixels (None: no film)
    lung_box: tuple[float, float, float, float] = LUNG_BOX  # lung fields in film fractions


def _check_inputs(film: np.ndarray, size: tuple[int, int]) -> None:
    if not isinstance(film, np.ndarray) or film.ndim != 2 or film.dtype != np.uint8:
        shape = getattr(film, "shape", None)
        dtype = getattr(film, "dtype", type(film).__name__)
        raise SyntheticOptionError(
            f"film with shape {shape} and dtype {dtype}; expected a 2-D uint8 grey image (H x W)"
        )
    if min(film.shape) < MIN_FILM_SIDE:
        raise SyntheticOptionError(f"film of {film.shape}; expected at least {MIN_FILM_SIDE} px a side")
    if len(size) != 2 or not all(SIZE_RANGE[0] <= int(s) <= SIZE_RANGE[1] for s in size):
        raise SyntheticOptionError(
            f"photo size {size}; expected (width, height) of {SIZE_RANGE[0]} to {SIZE_RANGE[1]} px each"
        )


# -- small helpers ------------------------------------------------------------------------------
def _smooth_field(rng: np.random.Generator, size: tuple[int, int], lo: float, hi: float) -> FloatImage:
    """A low-frequency random field in [lo, hi] (a coarse grid upsampled bicubically)."""
    coarse = rng.uniform(0.0, 1.0, (3, 4)).astype(np.float32)
    field = np.asarray(Image.fromarray(coarse, "F").resize(size, Image.Resampling.BICUBIC))
    return (lo + (hi - lo) * np.clip(field, 0.0, 1.0)).astype(np.float32)


def _to_linear(rgb: NDArray[np.uint8]) -> FloatImage:
    return _DECODE[rgb]


def _polygon_mask(size: tuple[int, int], quad: NDArray[np.float64]) -> FloatImage:
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).polygon([tuple(p) for p in quad.tolist()], fill=255)
    return np.asarray(mask, dtype=np.float32) / 255.0


def _warp(image: Image.Image, h: NDArray[np.float64], size: tuple[int, int]) -> Image.Image:
    """``image`` (its pixel coordinates) seen through the homography ``h`` in a photo of ``size``."""
    inverse = np.linalg.inv(h)
    inverse /= inverse[2, 2]
    return image.transform(
        size, Image.Transform.PERSPECTIVE, tuple(inverse.ravel()[:8]), Image.Resampling.BICUBIC, fillcolor=0
    )


def _plane_quad(placement: Placement, margins: tuple[float, float, float, float]) -> NDArray[np.float64]:
    """Corners in the photo of the films' bounding rectangle in their plane, grown by ``margins``."""
    w, h = placement.film_size
    xs = [c[0] for c in placement.offsets]
    left, top, right, bottom = margins
    x0, x1 = min(xs) - w / 2 - left * w, max(xs) + w / 2 + right * w
    y0, y1 = -h / 2 - top * h, h / 2 + bottom * h
    return apply(placement.plane, np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]))


def _box_corners(rx: float, ry: float) -> list[tuple[float, float]]:
    return [(-rx, -ry), (rx, -ry), (rx, ry), (-rx, ry)]


# -- the room -----------------------------------------------------------------------------------
ROOM_SIDE = 800  # the room behind the film is drawn at most this large and scaled up (it is out of focus)


def _room(rng: np.random.Generator, size: tuple[int, int], scene: PhotoScene) -> FloatImage:
    """A wall or desk with clutter (linear light)."""
    scale = min(1.0, ROOM_SIDE / max(size))
    small = (max(8, round(size[0] * scale)), max(8, round(size[1] * scale)))
    width, height = small
    tint = rng.uniform(0.75, 1.0, 3)
    base = np.stack([_smooth_field(rng, small, 0.15, 0.55) * g for g in tint], axis=-1)
    room = Image.fromarray((base * 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(room)
    side = min(width, height)
    for _ in range(scene.clutter):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        rx, ry = rng.uniform(0.02, 0.14) * side, rng.uniform(0.02, 0.14) * side
        colour = tuple(int(c) for c in np.clip(rng.uniform(20, 170) * rng.uniform(0.7, 1.3, 3), 0, 255))
        shape = rng.integers(0, 3)
        if shape == 0:
            draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=colour)
        elif shape == 1:
            a = rng.uniform(0, math.pi)
            ca, sa = math.cos(a), math.sin(a)
            pts = [(cx + px * ca - py * sa, cy + px * sa + py * ca) for px, py in _box_corners(rx, ry)]
            draw.polygon(pts, fill=colour)
        else:
            x1, y1 = cx + rng.uniform(-0.3, 0.3) * side, cy + rng.uniform(-0.3, 0.3) * side
            draw.line((cx, cy, x1, y1), fill=colour, width=int(max(2, rng.uniform(0.004, 0.02) * side)))
    room = room.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.5, 2.5)) * side / 1200))
    if small != size:
        room = room.resize(size, Image.Resampling.BILINEAR)
    return _to_linear(np.asarray(room))


def _sky(rng: np.random.Generator, size: tuple[int, int]) -> FloatImage:
    """Daylight through a window: bright, bluish, brighter at the top (linear light)."""
    width, height = size
    ramp = np.linspace(1.0, rng.uniform(0.7, 0.9), height, dtype=np.float32)[:, None]
    field = _smooth_field(rng, size, 0.75, 1.0) * ramp
    tint = np.array([rng.uniform(0.7, 0.9), rng.uniform(0.85, 0.95), 1.0], np.float32)
    return field[..., None] * tint


def _background(
    rng: np.random.Generator, size: tuple[int, int], scene: PhotoScene, placement: Placement
) -> tuple[FloatImage, FloatImage, FloatImage]:
    """The photo without the film, the light behind the film, and the screen mask (monitor)."""
    room = _room(rng, size, scene)
    s = scene.surround
    margins = tuple(float(s * rng.uniform(0.6, 1.4)) for _ in range(4))
    screen = np.zeros(size[::-1], np.float32)
    if scene.kind == "lightbox":
        light = _smooth_field(rng, size, 0.82, 1.0)[..., None] * np.array([1.0, 1.0, 1.0], np.float32)
        housing = _polygon_mask(size, _plane_quad(placement, tuple(m + 0.05 for m in margins)))[..., None]
        panel = _polygon_mask(size, _plane_quad(placement, margins))[..., None]
        grey = np.float32(rng.uniform(0.08, 0.3))
        out = room * (1 - housing) + grey * housing
        out = out * (1 - panel) + light * panel
    elif scene.kind == "monitor":
        level = np.float32(rng.uniform(0.6, 0.9))
        light = np.full((*size[::-1], 3), level, np.float32) * np.array([0.95, 1.0, 1.05], np.float32)
        bezel = _polygon_mask(size, _plane_quad(placement, tuple(m + 0.06 for m in margins)))[..., None]
        screen = _polygon_mask(size, _plane_quad(placement, margins))
        viewer = np.float32(rng.uniform(0.06, 0.16))  # a grey viewer background around the image
        out = room * (1 - bezel) + np.float32(rng.uniform(0.004, 0.02)) * bezel
        out = out * (1 - screen[..., None]) + (light * viewer) * screen[..., None]
    else:
        light = _sky(rng, size)
        out = light.copy()
        mullion = Image.new("L", size, 0)
        draw = ImageDraw.Draw(mullion)
        side = min(size)
        for _ in range(int(rng.integers(1, 3))):
            thick = rng.uniform(0.02, 0.05) * side
            if rng.random() < 0.5:
                x = rng.uniform(0, size[0])
                draw.rectangle((x, 0, x + thick, size[1]), fill=255)
            else:
                y = rng.uniform(0, size[1])
                draw.rectangle((0, y, size[0], y + thick), fill=255)
        bars = np.asarray(mullion, np.float32)[..., None] / 255.0
        out = out * (1 - bars) + room * bars
    return out.astype(np.float32), light.astype(np.float32), screen


# -- the film -----------------------------------------------------------------------------------
def _film_layer(
    film: NDArray[np.uint8], h: NDArray[np.float64], size: tuple[int, int]
) -> tuple[FloatImage, FloatImage]:
    """The film's linear transmission and its coverage, both warped into the photo."""
    linear = (film.astype(np.float32) / 255.0) ** GAMMA
    warped = np.asarray(_warp(Image.fromarray(linear, "F"), h, size), np.float32)
    cover = np.asarray(_warp(Image.new("L", film.shape[::-1], 255), h, size), np.float32) / 255.0
    return np.clip(warped, 0.0, 1.0), cover


def _composite_film(
    out: FloatImage,
    light: FloatImage,
    film: NDArray[np.uint8],
    h: NDArray[np.float64],
    size: tuple[int, int],
    kind: str,
) -> None:
    transmission, cover = _film_layer(film, h, size)
    if kind == "monitor":
        radiance = light * (0.004 + 0.95 * transmission)[..., None]
    else:  # backlit: a film base with a faint blue tint lets a little light through everywhere
        base = np.array([0.93, 0.97, 1.0], np.float32)
        radiance = light * (0.012 + 0.9 * transmission)[..., None] * base
    out *= 1 - cover[..., None]
    out += radiance * cover[..., None]


def _film_width(h: NDArray[np.float64], shape: tuple[int, int]) -> float:
    """Length in the photo of the film's horizontal midline."""
    height, width = shape
    ends = apply(h, np.array([[0.0, height / 2], [float(width), height / 2]]))
    return float(np.linalg.norm(ends[1] - ends[0]))


def _fingers(
    out: FloatImage, rng: np.random.Generator, h: NDArray[np.float64], shape: tuple[int, int], size
) -> None:
    """Two thumbs holding the film by its left and right edges (front-lit skin, darker than the sky)."""
    height, width = shape
    layer = Image.new("L", size, 0)
    draw = ImageDraw.Draw(layer)
    film_width = _film_width(h, shape)
    for u in (0.0, width):
        v = rng.uniform(0.35, 0.65) * height
        x, y = apply(h, np.array([[u, v]]))[0]
        r = rng.uniform(0.035, 0.05) * film_width
        dx = -0.6 * r if u == 0 else 0.6 * r
        draw.ellipse((x + dx - r, y - 1.6 * r, x + dx + r, y + 1.6 * r), fill=255)
    mask = np.asarray(layer, np.float32)[..., None] / 255.0
    skin = np.array([0.32, 0.2, 0.14], np.float32) * np.float32(rng.uniform(0.7, 1.2))
    out *= 1 - mask
    out += skin * mask


def _glare(out: FloatImage, scene: PhotoScene, h: NDArray[np.float64], shape: tuple[int, int]) -> None:
    """Add each glare spot: a (possibly elongated) Gaussian of white light centred on the film."""
    height, width = shape
    hh, ww = out.shape[:2]
    film_width = _film_width(h, shape)
    for spot in scene.glare:
        cx, cy = apply(h, np.array([[spot.u * width, spot.v * height]]))[0]
        r = spot.radius * film_width
        reach = 2.5 * r * spot.elongation
        x0, x1 = int(max(0, cx - reach)), int(min(ww, cx + reach + 1))
        y0, y1 = int(max(0, cy - reach)), int(min(hh, cy + reach + 1))
        if x0 >= x1 or y0 >= y1:
            continue
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        a = math.radians(spot.angle_deg)
        along = ((xs - cx) * math.cos(a) + (ys - cy) * math.sin(a)) / spot.elongation
        across = -(xs - cx) * math.sin(a) + (ys - cy) * math.cos(a)
        blob = np.float32(spot.strength) * np.exp(-2.0 * (along**2 + across**2) / (r * r))
        out[y0:y1, x0:x1] += blob[..., None] * np.array([1.0, 0.98, 0.95], np.float32)


def _moire(out: FloatImage, scene: PhotoScene, screen: FloatImage, rng: np.random.Generator) -> None:
    """Interference fringes of the screen's pixel grid with the sensor's, coloured per channel."""
    if scene.moire <= 0 or not screen.any():
        return
    hh, ww = out.shape[:2]
    ys, xs = np.mgrid[0:hh, 0:ww].astype(np.float32)
    a = math.radians(scene.moire_angle_deg)
    phase = (xs * math.cos(a) + ys * math.sin(a)) * np.float32(2 * math.pi / scene.moire_period_px)
    beat = 0.6 + 0.4 * np.cos(
        (xs * math.sin(a) - ys * math.cos(a)) * np.float32(2 * math.pi / (9.0 * scene.moire_period_px))
    )
    for c, shift in enumerate(rng.uniform(0, 2 * math.pi, 3)):
        out[..., c] *= 1 + np.float32(scene.moire) * screen * beat * np.cos(phase + np.float32(shift))


#: sRGB encoding of linear light quantised to 4096 levels (a table lookup instead of a power).
_ENCODE = (np.linspace(0.0, 1.0, 4096) ** (1.0 / GAMMA) * 255.0 + 0.5).astype(np.uint8)
#: sRGB byte -> linear light.
_DECODE = ((np.arange(256) / 255.0) ** GAMMA).astype(np.float32)


def _camera(out: FloatImage, scene: PhotoScene, rng: np.random.Generator) -> tuple[NDArray[np.uint8], bytes]:
    """Exposure, colour cast, vignetting, sRGB, optical blur, sensor noise and JPEG."""
    hh, ww = out.shape[:2]
    ys = np.linspace(-1.0, 1.0, hh, dtype=np.float32)[:, None]
    xs = np.linspace(-1.0, 1.0, ww, dtype=np.float32)[None, :]
    falloff = 1.0 - np.float32(scene.vignette) * (xs * xs + ys * ys) / 2.0
    gains = np.asarray(scene.colour_cast, np.float32) * np.float32(scene.exposure) * np.float32(4095.0)
    out *= falloff[..., None]
    out *= gains
    np.clip(out, 0.0, 4095.0, out=out)
    image = Image.fromarray(_ENCODE[out.astype(np.uint16)], "RGB")
    if scene.blur_px > 0.3:
        image = image.filter(ImageFilter.GaussianBlur(scene.blur_px))
    pixels = np.asarray(image)
    # shot noise grows with the square root of the signal; part of it is shared by the channels
    sigma = (np.float32(scene.noise * 255.0) * np.sqrt(np.arange(256, dtype=np.float32) / 255.0 + 0.02))[
        pixels
    ]
    noise = rng.standard_normal(pixels.shape, dtype=np.float32)
    noise *= 0.6
    noise += rng.standard_normal(pixels.shape[:2], dtype=np.float32)[..., None] * np.float32(0.8)
    noise *= sigma
    noise += pixels
    noise += 0.5
    np.clip(noise, 0.0, 255.0, out=noise)
    buffer = io.BytesIO()
    Image.fromarray(noise.astype(np.uint8), "RGB").save(
        buffer, format="JPEG", quality=int(scene.jpeg_quality)
    )
    data = buffer.getvalue()
    with Image.open(io.BytesIO(data)) as decoded:
        rgb = np.asarray(decoded.convert("RGB")).copy()
    return rgb, data


def _second_film(film: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Another film of the same patient for the "two films" defect: mirrored, exposed differently."""
    return np.clip((film[:, ::-1].astype(np.float32) / 255.0) ** 0.85 * 255.0, 0, 255).astype(np.uint8)


def render_scene(
    film: NDArray[np.uint8],
    scene: PhotoScene,
    rng: np.random.Generator,
    *,
    size: tuple[int, int] = (1600, 1200),
    defect: str | None = None,
    lung_box: tuple[float, float, float, float] = LUNG_BOX,
) -> RenderedPhoto:
    """Render ``film`` photographed as ``scene`` says (see :func:`render_photo`)."""
    _check_inputs(film, size)
    size = (int(size[0]), int(size[1]))
    placement = place_films(
        film.shape,
        size,
        tilt_deg=scene.tilt_deg,
        tilt_axis_deg=scene.tilt_axis_deg,
        roll_deg=scene.roll_deg,
        fill=scene.fill,
        position=scene.position,
        focal=scene.focal,
        n_films=max(1, scene.n_films),
        second_side=scene.second_side,
        cut_off=scene.cut_off,
        cut_side=scene.cut_side,
    )
    out, light, screen = _background(rng, size, scene, placement)
    films = [film, _second_film(film)][: scene.n_films]
    for image, h in zip(films, placement.films, strict=False):
        _composite_film(out, light, image, h, size, scene.kind)
    main = placement.films[0]
    if scene.n_films > 0:
        if scene.fingers:
            _fingers(out, rng, main, film.shape, size)
        _glare(out, scene, main, film.shape)
    _moire(out, scene, screen, rng)
    rgb, data = _camera(out, scene, rng)
    if scene.n_films > 0:
        corners = apply(main, film_corners(film.shape))
        homography = main / main[2, 2]
    else:
        corners, homography = np.full((4, 2), np.nan), None
    return RenderedPhoto(rgb, corners, scene, defect is None, defect, data, homography, lung_box)


def render_photo(
    film: NDArray[np.uint8],
    rng: np.random.Generator,
    *,
    kind: str,
    defect: str | None = None,
    size: tuple[int, int] = (1600, 1200),
    lung_box: tuple[float, float, float, float] = LUNG_BOX,
) -> RenderedPhoto:
    """A phone photo of ``film`` (H x W uint8 grey) of ``kind`` ("lightbox", "monitor", "window").

    ``defect`` None draws a usable photo; one of :data:`DEFECTS` draws a deliberately unusable one
    with that defect ("glare" over ``lung_box``, "tilt", "far", "blur", "cut_off", "two_films",
    "no_film"). ``size`` is (width, height) in pixels; 4000 x 3000 gives a 12-megapixel photo.
    The same film, generator state and arguments give the same photo, byte for byte.
    """
    _check_inputs(film, size)
    scene = sample_scene(rng, kind, defect, (int(size[0]), int(size[1])), lung_box)
    return render_scene(film, scene, rng, size=size, defect=defect, lung_box=lung_box)
