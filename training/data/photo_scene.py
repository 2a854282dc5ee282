"""The knobs of one phone photo of a film, and how they are drawn for a usable or a defective photo.

:class:`PhotoScene` says everything about the photo except the film's pixels: where the film is
(a light box, a monitor, a window), how it is held (tilt, roll, fill, position), what the camera
adds (blur, noise, colour cast, JPEG quality) and what the room adds (clutter, glare, moire).
:func:`sample_scene` draws one for a photo kind and, for a deliberately unusable photo, a defect.
The ranges of usable photos and of defects are kept well apart, so a quality check has a clear
line to find (e.g. tilt <= 15 degrees usable, >= 40 degrees a defect).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from training.data.synthetic_labels import SyntheticOptionError

KINDS: tuple[str, ...] = ("lightbox", "monitor", "window")
#: Deliberately unusable photos, each with the one defect that makes it so.
DEFECTS: tuple[str, ...] = ("glare", "tilt", "far", "blur", "cut_off", "two_films", "no_film")
#: Where the lungs are on a phantom film, as fractions (u0, v0, u1, v1) of its width and height: the
#: inner part of both lung fields for any phantom pose (training.data.phantom.sample_anatomy).
LUNG_BOX: tuple[float, float, float, float] = (0.24, 0.22, 0.76, 0.62)
#: Focal length as a fraction of the frame's long side (a phone's ~26 mm-equivalent main camera).
FOCAL = 0.8
USABLE_TILT_MAX = 15.0
DEFECT_TILT_MIN = 40.0
FAR_FILL_MAX = 0.10  # a film covering less than this share of the frame is "too far"
USABLE_FILL_MIN = 0.22


@dataclass(frozen=True)
class GlareSpot:
    """A specular reflection: centre (u, v) in film fractions, radius in film-width fractions."""

    u: float
    v: float
    radius: float
    strength: float  # added linear light at the centre; > 1 saturates the sensor
    elongation: float = 1.0  # >1: stretched along ``angle_deg``
    angle_deg: float = 0.0


@dataclass(frozen=True)
class PhotoScene:
    """Everything that makes one photo of a film (see the module docstring); plain numbers only."""

    kind: str  # "lightbox", "monitor" or "window"
    tilt_deg: float = 0.0  # angle between the film's normal and the camera axis
    tilt_axis_deg: float = 0.0  # direction of the in-plane axis the film is tilted about
    roll_deg: float = 0.0  # rotation about the camera axis
    fill: float = 0.4  # share of the frame's area the film covers
    position: tuple[float, float] = (0.5, 0.5)  # where in the free room of the frame, [0, 1]^2
    focal: float = FOCAL
    n_films: int = 1  # 0: no film, 2: a second film beside the first
    second_side: int = 1  # the second film is to the right (1) or left (-1) of the first
    cut_off: float = 0.0  # share of the film's extent pushed past ``cut_side``
    cut_side: str = "left"
    glare: tuple[GlareSpot, ...] = ()
    moire: float = 0.0  # amplitude of the screen's interference fringes (relative)
    moire_period_px: float = 6.0
    moire_angle_deg: float = 0.0
    blur_px: float = 0.0  # Gaussian sigma of the optical blur, photo pixels
    noise: float = 0.01  # sensor noise, relative to full scale
    colour_cast: tuple[float, float, float] = (1.0, 1.0, 1.0)  # r, g, b gains
    exposure: float = 0.9
    vignette: float = 0.2
    jpeg_quality: int = 90
    clutter: int = 6  # objects in the background
    surround: float = 0.15  # how far the light box / screen reaches beyond the film (film widths)
    fingers: bool = False  # thumbs holding the film (window photos)


def _check(kind: str, defect: str | None) -> None:
    if kind not in KINDS:
        raise SyntheticOptionError(f"photo kind {kind!r}; expected one of {list(KINDS)}")
    if defect is not None and defect not in DEFECTS:
        raise SyntheticOptionError(f"photo defect {defect!r}; expected None or one of {list(DEFECTS)}")


def _weak_glare(rng: np.random.Generator) -> tuple[GlareSpot, ...]:
    """A faint reflection somewhere on the film that a careful photographer would accept."""
    if rng.random() >= 0.35:
        return ()
    return (
        GlareSpot(
            float(rng.uniform(0.05, 0.95)),
            float(rng.uniform(0.05, 0.95)),
            float(rng.uniform(0.04, 0.09)),
            float(rng.uniform(0.02, 0.06)),
            float(rng.uniform(1.0, 2.0)),
            float(rng.uniform(0, 180)),
        ),
    )


def _lung_glare(rng: np.random.Generator, lung_box: tuple[float, float, float, float]) -> tuple:
    """One or two saturating reflections centred inside the lung fields."""
    u0, v0, u1, v1 = lung_box
    spots = []
    for _ in range(int(rng.integers(1, 3))):
        spots.append(
            GlareSpot(
                float(rng.uniform(u0 + 0.1 * (u1 - u0), u1 - 0.1 * (u1 - u0))),
                float(rng.uniform(v0 + 0.15 * (v1 - v0), v1 - 0.15 * (v1 - v0))),
                float(rng.uniform(0.07, 0.12)),
                float(rng.uniform(1.6, 3.0)),
                float(rng.uniform(1.0, 1.8)),
                float(rng.uniform(0, 180)),
            )
        )
    return tuple(spots)


def sample_scene(
    rng: np.random.Generator,
    kind: str,
    defect: str | None = None,
    size: tuple[int, int] = (1600, 1200),
    lung_box: tuple[float, float, float, float] = LUNG_BOX,
) -> PhotoScene:
    """Draw the knobs of one photo of ``kind``; usable when ``defect`` is None, else with that defect."""
    _check(kind, defect)
    u = rng.uniform
    scale = math.hypot(*size) / 2000.0  # blur and moire are sized for a 1600 x 1200 photo
    fill = float(u(USABLE_FILL_MIN, 0.55))
    if kind == "lightbox":
        cast = (u(0.92, 1.12), u(0.95, 1.05), u(0.85, 1.15))
    elif kind == "monitor":
        cast = (u(0.85, 1.0), u(0.95, 1.05), u(1.0, 1.2))
    else:
        cast = (u(0.9, 1.1), u(0.95, 1.05), u(0.95, 1.2))
    knobs: dict = {
        "kind": kind,
        "tilt_deg": float(u(0.0, 12.0)),
        "tilt_axis_deg": float(u(0.0, 360.0)),
        "roll_deg": float(u(-7.0, 7.0)),
        "fill": fill,
        "position": (float(u(0, 1)), float(u(0, 1))),
        "glare": _weak_glare(rng),
        "moire": float(u(0.03, 0.08)) if kind == "monitor" else 0.0,
        "moire_period_px": float(u(4.0, 12.0)) * scale,
        "moire_angle_deg": float(u(0, 180)),
        "blur_px": float(u(0.0, 1.0)) * scale,
        "noise": float(u(0.004, 0.02)),
        "colour_cast": tuple(float(c) for c in cast),
        "exposure": float(u(0.8, 0.95)),
        "vignette": float(u(0.05, 0.35)),
        "jpeg_quality": int(rng.integers(70, 96)),
        "clutter": int(rng.integers(3, 14)),
        "surround": float(u(0.06, 0.25)),
        "fingers": kind == "window" and bool(rng.random() < 0.6),
    }
    film_side = math.sqrt(fill * size[0] * size[1])
    if defect == "glare":
        knobs["glare"] = _lung_glare(rng, lung_box)
    elif defect == "tilt":
        knobs["tilt_deg"] = float(u(DEFECT_TILT_MIN + 2, 60.0))
        knobs["fill"] = float(u(0.3, 0.5))
    elif defect == "far":
        knobs["fill"] = float(u(0.025, FAR_FILL_MAX - 0.02))
    elif defect == "blur":
        knobs["blur_px"] = float(u(0.02, 0.035)) * film_side
    elif defect == "cut_off":
        knobs["cut_off"] = float(u(0.15, 0.4))
        knobs["cut_side"] = str(rng.choice(["left", "right", "top", "bottom"]))
        knobs["fill"] = float(u(0.3, 0.5))
    elif defect == "two_films":
        knobs["n_films"] = 2
        knobs["second_side"] = int(rng.choice([-1, 1]))
        knobs["fill"] = float(u(0.15, 0.24))
    elif defect == "no_film":
        knobs["n_films"] = 0
        knobs["glare"] = ()
    return PhotoScene(**knobs)
