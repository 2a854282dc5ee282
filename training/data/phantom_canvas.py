"""Vectorised drawing primitives for the radiograph phantoms (numpy + Pillow, no per-pixel loops).

A :class:`Canvas` is a square float32 *density* image in patient coordinates: ``u`` runs left to
right and ``v`` top to bottom, both in [0, 1] of the image side, so every size and position in the
phantom code is resolution independent. Density is attenuation in arbitrary units (0 = air,
about 1 = soft tissue); :func:`training.data.phantom.render_phantom` turns it into grey levels.
Local shapes are computed inside their bounding window only, which keeps a 512 px phantom cheap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw

FloatArray = NDArray[np.float32]
Point = tuple[float, float]
#: A box ``(u0, v0, u1, v1)`` in patient coordinates.
Box = tuple[float, float, float, float]
#: Image direction of each side: index 0 is the patient's right (image left on a PA/AP film).
SIDES: tuple[int, int] = (-1, 1)


def smoothstep(x: FloatArray) -> FloatArray:
    """0 below 0, 1 above 1, a smooth cubic in between (soft mask edges)."""
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def blur(image: FloatArray, sigma_px: float) -> FloatArray:
    """Approximate Gaussian blur of a float image.

    Small radii use a separable 3-tap kernel in numpy; larger ones downsample with a box filter and
    upsample bicubically in Pillow, which costs about a millisecond at 512 px whatever the radius.
    """
    if sigma_px <= 0.3:
        return image
    if sigma_px < 1.5:
        w = min(0.33, 0.5 * sigma_px * sigma_px)  # the kernel [w, 1 - 2w, w] has variance 2w
        out = image * (1 - 2 * w)
        out[1:, :] += w * image[:-1, :]
        out[:-1, :] += w * image[1:, :]
        out[0, :] += w * image[0, :]
        out[-1, :] += w * image[-1, :]
        tmp = out.copy()
        out *= 1 - 2 * w
        out[:, 1:] += w * tmp[:, :-1]
        out[:, :-1] += w * tmp[:, 1:]
        out[:, 0] += w * tmp[:, 0]
        out[:, -1] += w * tmp[:, -1]
        return out
    h, w_ = image.shape
    factor = max(2.0, 1.6 * sigma_px)
    small = (max(1, round(w_ / factor)), max(1, round(h / factor)))
    img = Image.fromarray(np.ascontiguousarray(image, dtype=np.float32))
    down = img.resize(small, Image.Resampling.BOX)
    return np.asarray(down.resize((w_, h), Image.Resampling.BICUBIC), dtype=np.float32)


class Canvas:
    """A square density image with broadcastable coordinate grids ``u`` (1, S) and ``v`` (S, 1)."""

    def __init__(self, size: int) -> None:
        self.size = size
        centres = (np.arange(size, dtype=np.float32) + 0.5) / size
        self.u: FloatArray = centres[None, :]
        self.v: FloatArray = centres[:, None]
        self.density: FloatArray = np.zeros((size, size), dtype=np.float32)

    # -- windows -------------------------------------------------------------------------------
    def window(self, u0: float, v0: float, u1: float, v1: float) -> tuple[slice, slice]:
        """Row and column slices of the pixels covering the box [u0, u1] x [v0, v1] (clipped)."""
        s = self.size
        c0, c1 = max(0, int(np.floor(u0 * s))), min(s, int(np.ceil(u1 * s)) + 1)
        r0, r1 = max(0, int(np.floor(v0 * s))), min(s, int(np.ceil(v1 * s)) + 1)
        return slice(r0, max(r0, r1)), slice(c0, max(c0, c1))

    def ellipse(
        self,
        cu: float,
        cv: float,
        ru: float,
        rv: float,
        *,
        edge: float = 0.006,
        angle: float = 0.0,
        window: tuple[slice, slice] | None = None,
    ) -> FloatArray:
        """Soft mask (1 inside) of a rotated ellipse, on the whole canvas or inside ``window``."""
        u = self.u if window is None else self.u[:, window[1]]
        v = self.v if window is None else self.v[window[0], :]
        du, dv = u - cu, v - cv
        if angle:
            ca, sa = np.float32(np.cos(angle)), np.float32(np.sin(angle))
            du, dv = du * ca + dv * sa, dv * ca - du * sa
        r = np.sqrt((du / ru) ** 2 + (dv / rv) ** 2)
        return smoothstep((1.0 - r) * (min(ru, rv) / max(edge, 1e-4)) + 0.5)

    def add_ellipse(
        self,
        target: FloatArray,
        cu: float,
        cv: float,
        ru: float,
        rv: float,
        amount: float,
        *,
        edge: float = 0.006,
        angle: float = 0.0,
    ) -> tuple[float, float, float, float]:
        """Add ``amount`` times a soft ellipse to ``target`` inside its bounding window; returns the box."""
        reach = max(ru, rv) + 2 * edge
        box = (cu - reach, cv - reach, cu + reach, cv + reach)
        win = self.window(*box)
        target[win] += amount * self.ellipse(cu, cv, ru, rv, edge=edge, angle=angle, window=win)
        return box

    # -- lines (Pillow) ------------------------------------------------------------------------
    def lines(self, strokes: Sequence[tuple[Sequence[Point], float, float]]) -> FloatArray:
        """Draw polylines ``(points in (u, v), width in u units, value)`` into a new layer.

        Later strokes overwrite earlier ones where they cross (Pillow semantics); callers blur the
        layer afterwards for soft edges.
        """
        s = self.size
        layer = Image.new("F", (s, s), 0.0)
        draw = ImageDraw.Draw(layer)
        for points, width, value in strokes:
            xy = [(p[0] * s, p[1] * s) for p in points]
            draw.line(xy, fill=float(value), width=max(1, round(width * s)), joint="curve")
        return np.asarray(layer, dtype=np.float32).copy()

    def polygons(self, shapes: Sequence[tuple[Sequence[Point], float]]) -> FloatArray:
        """Filled polygons ``(points in (u, v), value)`` in a new layer."""
        s = self.size
        layer = Image.new("F", (s, s), 0.0)
        draw = ImageDraw.Draw(layer)
        for points, value in shapes:
            draw.polygon([(p[0] * s, p[1] * s) for p in points], fill=float(value))
        return np.asarray(layer, dtype=np.float32).copy()

    def rings(self, circles: Sequence[tuple[float, float, float, float]], value: float) -> FloatArray:
        """Circle outlines ``(cu, cv, radius, line width)`` in a new layer (honeycomb, bullae)."""
        s = self.size
        layer = Image.new("F", (s, s), 0.0)
        draw = ImageDraw.Draw(layer)
        for cu, cv, r, width in circles:
            box = [(cu - r) * s, (cv - r) * s, (cu + r) * s, (cv + r) * s]
            draw.ellipse(box, outline=float(value), width=max(1, round(width * s)))
        return np.asarray(layer, dtype=np.float32).copy()

    def low_frequency_noise(self, rng: np.random.Generator, cells: int) -> FloatArray:
        """Smooth random field in about [-1, 1] with ``cells`` blobs across the image."""
        grid = rng.standard_normal((cells, cells)).astype(np.float32)
        img = Image.fromarray(grid).resize((self.size, self.size), Image.Resampling.BICUBIC)
        return np.asarray(img, dtype=np.float32)


def bezier(p0: Point, p1: Point, p2: Point, n: int = 12) -> list[Point]:
    """Points of a quadratic Bezier curve (ribs, clavicles, tubes)."""
    t = np.linspace(0.0, 1.0, n)
    a, b, c = (1 - t) ** 2, 2 * (1 - t) * t, t**2
    return [
        (float(a[i] * p0[0] + b[i] * p1[0] + c[i] * p2[0]), float(a[i] * p0[1] + b[i] * p1[1] + c[i] * p2[1]))
        for i in range(n)
    ]


@dataclass(frozen=True)
class Anatomy:
    """Everything that shapes one patient's normal frontal (or lateral) radiograph.

    Lengths are fractions of the image side in patient coordinates (before the pose is applied).
    Findings change some fields (a cardiomegaly sets ``ctr``, emphysema lowers the domes) with
    :func:`dataclasses.replace` before anything is drawn.
    """

    view: str  # "PA", "AP" or "LATERAL"
    female: bool
    cx: float  # midline
    half_width: float  # half the internal thoracic width at its widest
    apex_v: float  # top of the lung apices
    dome_v: tuple[float, float]  # top of the right and left hemidiaphragm domes
    dome_rise: float  # how far the costophrenic angles lie below the domes (flat in emphysema)
    ctr: float  # cardiothoracic ratio (heart width / thoracic width)
    heart_angle: float  # radians; the apex points down to the patient's left
    mediastinum: float  # half width of the upper mediastinum
    hilum_v: float
    soft_tissue: float  # density of the body wall
    lung_air: float  # density removed by aerated lung
    markings: float  # vascular marking amplitude
    marking_reach: float  # how far vessels reach towards the periphery (1 normal, less when pruned)
    rib_spacing: float
    clavicle_v: float
    rotation: float  # degrees
    shift: tuple[float, float]
    scale: float
    gamma: float
    contrast: float
    brightness: float
    noise: float

    @property
    def thorax_width(self) -> float:
        return 2.0 * self.half_width

    @property
    def heart_width(self) -> float:
        return self.ctr * self.thorax_width

    def lung_ellipse(self, side: int) -> tuple[float, float, float, float]:
        """``(cu, cv, ru, rv)`` of the ellipse bounding one lung (side -1: image left)."""
        ru = (self.half_width - 0.02) / 2.0
        cu = self.cx + side * (0.02 + ru)
        cv = self.dome_v[0 if side < 0 else 1] + 0.6 * self.dome_rise
        return cu, cv, ru, cv - self.apex_v

    def dome(self, side: int, u: FloatArray | float) -> FloatArray | float:
        """Height ``v`` of the hemidiaphragm of ``side`` at horizontal position ``u``."""
        cu, _, ru, _ = self.lung_ellipse(side)
        top = self.dome_v[0 if side < 0 else 1]
        t = (u - cu) / ru
        return top + self.dome_rise * t * t * np.where(side * t > 0, 1.0, 0.35)  # shallow medially

    def heart_ellipse(self) -> tuple[float, float, float, float, float]:
        """``(cu, cv, ru, rv, angle)`` of the heart, sized so its horizontal extent is ``heart_width``."""
        width = self.heart_width
        aspect = 0.86
        c, s = math.cos(self.heart_angle), math.sin(self.heart_angle)
        ru = 0.5 * width / math.sqrt(c * c + (aspect * s) ** 2)
        rv = aspect * ru
        cu = self.cx + 0.14 * width
        floor = 0.5 * (self.dome_v[0] + self.dome_v[1]) + 0.03
        half_height = math.sqrt((ru * s) ** 2 + (rv * c) ** 2)
        return cu, floor - 0.45 * half_height, ru, rv, self.heart_angle


@dataclass
class Scene:
    """A canvas being drawn, with the masks that signs need (lungs, where markings may go)."""

    canvas: Canvas
    anatomy: Anatomy
    lungs: tuple[FloatArray, FloatArray] = field(
        default_factory=lambda: (np.zeros(0, np.float32), np.zeros(0, np.float32))
    )
    keep: FloatArray = field(default_factory=lambda: np.zeros(0, np.float32))  # lung markings allowed
    bone: FloatArray = field(default_factory=lambda: np.zeros(0, np.float32))  # ribs before adding
    markings: FloatArray = field(default_factory=lambda: np.zeros(0, np.float32))  # lung vessels as drawn
    ribs: list[tuple[int, list[Point]]] = field(default_factory=list)  # (side, centreline) of ribs
    boxes: dict[str, Box] = field(default_factory=dict)  # where each finding was drawn
    notes: dict[str, dict] = field(default_factory=dict)  # choices a finding made while adjusting anatomy

    def box_of(self, mask: FloatArray, threshold: float = 0.3) -> Box | None:
        """Bounding box (patient coordinates) of the pixels where ``mask`` exceeds ``threshold``."""
        rows, cols = np.nonzero(mask > threshold)
        if rows.size == 0:
            return None
        s = self.canvas.size
        return (cols.min() / s, rows.min() / s, (cols.max() + 1) / s, (rows.max() + 1) / s)

    def lung(self, side: int) -> FloatArray:
        return self.lungs[0 if side < 0 else 1]

    def add_in_lung(self, layer: FloatArray, fill: float, side: int | None = None) -> None:
        """An air-space opacity: replace the fraction ``fill`` x ``layer`` of the lung air by fluid/tissue."""
        mask = self.lungs[0] + self.lungs[1] if side is None else self.lung(side)
        amount = np.float32(fill * self.anatomy.lung_air)
        self.canvas.density += amount * np.minimum(layer, 1.0) * mask
