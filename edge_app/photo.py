"""The photo flow's geometry and text, without Kivy: corners, their checks, and what the screens say.

A phone photo of a film (on a light box, a monitor, against a window) is not scored as it is:
``cxr_core.capture`` finds the film's four corners, the clinician confirms or drags them on the
confirm screen, and only then is the photo scored (``Predictor.predict_photo(path, corners=...)``).

Corners are always in the ORIGINAL photo's pixel coordinates (x right, y down, float), in the order
top-left, top-right, bottom-right, bottom-left of the film *as it should be read* (docs of
``cxr_core.capture``). The confirm screen shows a display-sized copy of the photo; it converts with
:attr:`PhotoView.scale` (display pixels per photo pixel).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cxr_core.errors import CxrEdgeError

#: Longest side of the photo shown on the confirm screen (a 12 MP photo is 4000 x 3000).
PHOTO_DISPLAY_SIDE = 1600
#: Longest side of the rectified preview drawn while the corners are dragged, and of the photo copy it
#: is cut from (``cxr_core.capture.rectify`` took ~35 ms at these sizes on 2 loaded cores, ~62 ms at
#: 384 from 768: the preview runs on the UI thread, so it is kept small).
PREVIEW_SIDE = 320
PREVIEW_SOURCE_SIDE = 512
#: The corners a clinician starts from when no film was found: this fraction of each side inside.
HAND_INSET = 0.12
#: A quad whose shortest side is below this fraction of the photo's shorter side is not a film.
MIN_SIDE_FRACTION = 0.08
CORNER_NAMES = ("top-left", "top-right", "bottom-right", "bottom-left")


class CornerError(CxrEdgeError, ValueError):
    """Corners that cannot outline a film: wrong shape, crossing sides, outside the photo."""


def as_corners(corners: Any, what: str = "corners") -> NDArray[np.float64]:
    """``corners`` as a (4, 2) float64 array; :class:`CornerError` naming the shape received otherwise."""
    array = np.asarray(corners, dtype=np.float64)
    if array.shape != (4, 2) or not np.all(np.isfinite(array)):
        raise CornerError(
            f"{what}: expected 4 (x, y) points (top-left, top-right, bottom-right, bottom-left), "
            f"got an array of shape {array.shape}"
        )
    return array


def inset_corners(width: int, height: int, inset: float = HAND_INSET) -> NDArray[np.float64]:
    """The photo's rectangle shrunk by ``inset`` of each side: where hand placement starts."""
    dx, dy = width * inset, height * inset
    return np.array(
        [[dx, dy], [width - dx, dy], [width - dx, height - dy], [dx, height - dy]], dtype=np.float64
    )


def rotate_reading(corners: Any) -> NDArray[np.float64]:
    """The same quad read a quarter turn clockwise: the old bottom-left becomes the top-left."""
    array = as_corners(corners)
    return np.roll(array, 1, axis=0)


def clamp_corner(x: float, y: float, width: float, height: float) -> tuple[float, float]:
    """A dragged corner kept inside the photo."""
    return float(min(max(x, 0.0), width)), float(min(max(y, 0.0), height))


def quad_problem(corners: Any, width: float, height: float) -> str | None:
    """Why these corners cannot be a film (plain words for the confirm screen), or None when they can.

    The quad must be convex, its corners in clockwise order on screen (top-left, top-right,
    bottom-right, bottom-left: the sides must not cross) and not tiny.
    """
    quad = as_corners(corners)
    edges = np.roll(quad, -1, axis=0) - quad
    following = np.roll(edges, -1, axis=0)
    cross = edges[:, 0] * following[:, 1] - edges[:, 1] * following[:, 0]
    # y points down, so a clockwise quad on screen has positive cross products.
    if np.any(cross <= 0):
        return (
            "the corners do not outline the film: drag them so they go top-left, top-right, "
            "bottom-right, bottom-left around it, without crossing sides"
        )
    shortest = float(np.min(np.hypot(edges[:, 0], edges[:, 1])))
    if shortest < MIN_SIDE_FRACTION * min(width, height):
        return "the outlined area is too small to be the film: drag the corners to the film's corners"
    return None


def max_shift(before: Any, after: Any) -> float:
    """The largest distance any corner moved, in photo pixels."""
    delta = as_corners(after) - as_corners(before)
    return float(np.max(np.hypot(delta[:, 0], delta[:, 1])))


def corners_list(corners: Any) -> list[list[float]]:
    """Corners as JSON-ready ``[[x, y], ...]`` (photo pixels, 2 decimals)."""
    return [[round(float(x), 2), round(float(y), 2)] for x, y in as_corners(corners)]


def preview_pixels(rectified: NDArray[Any]) -> NDArray[np.uint8]:
    """A rectified grey film (``cxr_core.capture.rectify``: float, [0, 1] or [0, 255]) as RGB uint8."""
    grey = np.asarray(rectified, dtype=np.float32)
    if grey.ndim == 3:
        grey = grey.mean(axis=2)
    top = 255.0 if float(grey.max(initial=0.0)) > 1.0 + 1e-6 else 1.0
    unit = np.clip(grey / np.float32(top), 0.0, 1.0)
    rgb8 = np.rint(unit * np.float32(255.0)).astype(np.uint8)
    return np.repeat(rgb8[..., None], 3, axis=2)


@dataclass(frozen=True, eq=False)  # holds arrays: identity, not value, equality
class PhotoView:
    """A photo ready for the confirm screen (made on the worker thread, see ``worker.PhotoLoaded``).

    ``display``: the photo downsized to :data:`PHOTO_DISPLAY_SIDE` (RGB uint8, first row on top);
    ``scale``: display pixels per photo pixel; ``corners``: the detected film (photo pixels), or the
    inset rectangle when none was found; ``detected``: whether ``corners`` came from detection;
    ``refusal``/``fix``: why detection found no usable film and what to do (empty when it did).
    """

    source: str
    display: NDArray[np.uint8] = field(repr=False)
    photo_size: tuple[int, int]  # (width, height) of the original photo
    scale: float
    corners: NDArray[np.float64] = field(repr=False)
    detected: bool
    confidence: float = 0.0
    refusal: str = ""
    fix: str = ""

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) of :attr:`display`, as Kivy sizes go."""
        return int(self.display.shape[1]), int(self.display.shape[0])

    def preview_source(self, side: int = PREVIEW_SOURCE_SIDE) -> tuple[NDArray[np.uint8], float]:
        """A smaller copy of :attr:`display` for the live preview, and its pixels per photo pixel."""
        from edge_app.display import fit_for_display

        small = fit_for_display(self.display, side)
        return small, self.scale * small.shape[1] / self.display.shape[1]

    def to_display(self, corners: Any) -> NDArray[np.float64]:
        return as_corners(corners) * self.scale

    def to_photo(self, corners: Any) -> NDArray[np.float64]:
        return as_corners(corners) / self.scale


def refusal_lines(reason: str, fix: str) -> list[str]:
    """The refusal screen's lines for a photo: the reason, then what to do."""
    lines = [reason] if reason else []
    if fix:
        lines.append(f"What to do: {fix}")
    return lines


def quality_line(measures: dict[str, Any]) -> str:
    """The photo's quality figures on one line (``PhotoQuality.to_dict()`` or a refusal's measures)."""
    parts = []
    for key, value in measures.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        parts.append(f"{key.replace('_', ' ')} {float(value):.3g}")
    return ", ".join(parts)
