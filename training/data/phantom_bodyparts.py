"""Radiograph phantoms of other body parts (hand, knee, skull, pelvis), drawn like the chest phantoms.

They are out-of-distribution images for a chest model: real-looking projection radiographs (bone
and soft tissue over air, the same exposure curve, heel effect and quantum noise as
:func:`training.data.phantom.render_phantom`) of anatomy the model never saw. The input-gate study
(``benchmarks/ood_corpus.py``) measures whether a bundle refuses them; nothing trains on them.

Same :class:`~training.data.phantom_canvas.Canvas` primitives and patient coordinates (``u`` left to
right, ``v`` top to bottom, both in [0, 1]); numpy and Pillow only. Deterministic for a seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from cxr_core.errors import CxrEdgeError
from training.data.phantom_canvas import Canvas, FloatArray, bezier, blur

#: The body parts :func:`render_body_part` draws.
BODY_PARTS: tuple[str, ...] = ("hand", "knee", "skull", "pelvis")


class BodyPartError(CxrEdgeError, ValueError):
    """An unknown body part or an unusable size was asked for."""


def _bone(cv: Canvas, strokes: list, rng: np.random.Generator) -> FloatArray:
    """Bones as strokes: a cortex (bright rim) around a less dense medulla, softly blurred."""
    outer = cv.lines([(pts, width, 1.0) for pts, width in strokes])
    inner = cv.lines([(pts, width * 0.55, 1.0) for pts, width in strokes])
    texture = 1.0 + 0.08 * cv.low_frequency_noise(rng, 24)
    return blur(np.clip(outer - 0.45 * inner, 0.0, 1.0) * texture, cv.size / 500)


def _hand(cv: Canvas, rng: np.random.Generator) -> None:
    """A PA hand: palm and five fingers of soft tissue; carpals, metacarpals, phalanges, radius, ulna."""
    u = rng.uniform
    tilt = u(-0.25, 0.25)
    wrist = (0.5 + u(-0.03, 0.03), 0.92)
    spread = u(0.1, 0.16)
    soft = cv.lines([([(wrist[0], 1.05), (wrist[0], 0.62)], 0.36, 1.0)])
    strokes: list = [
        ([(wrist[0] - 0.07, 1.05), (wrist[0] - 0.06, 0.8)], 0.06),  # radius
        ([(wrist[0] + 0.07, 1.05), (wrist[0] + 0.065, 0.81)], 0.04),  # ulna
    ]
    for i in range(5):
        angle = tilt + (i - 2) * spread - (0.45 if i == 0 else 0.0)
        base = (wrist[0] + (i - 2) * 0.05, 0.7 + (0.08 if i == 0 else 0.0))
        lengths = [0.2, 0.12, 0.08, 0.06] if i else [0.12, 0.1, 0.07]
        lengths = [x * u(0.9, 1.1) for x in lengths]
        point, segments = base, []
        for length in lengths:
            nxt = (point[0] - length * math.sin(-angle), point[1] - length * math.cos(angle))
            segments.append((point, nxt))
            point = (nxt[0] + 0.004 * math.sin(angle), nxt[1] - 0.006)
        soft = np.maximum(soft, cv.lines([([base, point], 0.085, 1.0)]))
        for k, (a, b) in enumerate(segments):
            strokes.append(([a, b], (0.035 if k < 2 else 0.028) * u(0.9, 1.1)))
    cv.density += 0.55 * blur(soft, cv.size / 120)
    for row in range(2):  # carpal bones
        for col in range(4):
            cv.add_ellipse(
                cv.density, wrist[0] - 0.06 + col * 0.04, 0.76 + row * 0.05, 0.018, 0.022, 0.5, edge=0.004
            )
    cv.density += 0.9 * _bone(cv, strokes, rng)


def _knee(cv: Canvas, rng: np.random.Generator) -> None:
    """An AP knee: the leg's soft tissue, femur with condyles, tibial plateau, fibula, patella."""
    u = rng.uniform
    cx = 0.5 + u(-0.04, 0.04)
    joint = u(0.45, 0.55)
    soft = cv.lines([([(cx, -0.05), (cx, 1.05)], u(0.46, 0.56), 1.0)])
    cv.density += 0.6 * blur(soft, cv.size / 60)
    strokes: list = [
        ([(cx, -0.05), (cx, joint - 0.12)], 0.15),  # femoral shaft
        ([(cx, joint + 0.1), (cx + 0.01, 1.05)], 0.13),  # tibial shaft
        ([(cx + 0.15, joint + 0.08), (cx + 0.14, 1.05)], 0.035),  # fibula
    ]
    bone = _bone(cv, strokes, rng)
    for side in (-1, 1):  # condyles and plateau
        cv.add_ellipse(bone, cx + side * 0.07, joint - 0.06, 0.085, 0.07, 0.8, edge=0.01)
        cv.add_ellipse(bone, cx + side * 0.075, joint + 0.07, 0.1, 0.045, 0.8, edge=0.01)
    cv.add_ellipse(bone, cx + u(-0.02, 0.02), joint - 0.1, 0.06, 0.07, 0.35, edge=0.015)  # patella
    cv.density += 0.9 * np.clip(bone, 0.0, 1.2)


def _skull(cv: Canvas, rng: np.random.Generator) -> None:
    """A PA skull: vault, orbits, nasal cavity and sinuses, maxilla with teeth, mandible, cervical spine."""
    u = rng.uniform
    cx, cy = 0.5 + u(-0.03, 0.03), 0.45 + u(-0.03, 0.03)
    rx, ry = u(0.32, 0.36), u(0.36, 0.4)
    cv.add_ellipse(cv.density, cx, cy, rx + 0.03, ry + 0.03, 0.45, edge=0.01)  # scalp
    vault = cv.rings([(cx, cy, rx, 0.025)], 1.0)
    vault = vault * np.clip((0.72 - cv.v) / 0.05, 0.0, 1.0)
    bone = blur(vault, cv.size / 300) * (1.0 + 0.1 * cv.low_frequency_noise(rng, 16))
    cv.add_ellipse(bone, cx, cy, rx - 0.01, ry - 0.02, 0.35, edge=0.03)  # diploe over the brain
    for side in (-1, 1):
        cv.add_ellipse(bone, cx + side * 0.12, cy + 0.08, 0.075, 0.06, -0.3, edge=0.008)  # orbits
        cv.add_ellipse(bone, cx + side * 0.11, cy + 0.2, 0.06, 0.05, -0.2, edge=0.01)  # maxillary sinus
    cv.add_ellipse(bone, cx, cy + 0.18, 0.03, 0.07, -0.25, edge=0.008)  # nasal cavity
    teeth = [(cx + (i - 7.5) * 0.022, cy + 0.3) for i in range(16)]
    for tu, tv in teeth:
        cv.add_ellipse(bone, tu, tv, 0.009, 0.025, 0.7, edge=0.003)
    jaw = bezier((cx - rx * 0.85, cy + 0.15), (cx, cy + 0.6), (cx + rx * 0.85, cy + 0.15), 16)
    bone += blur(cv.lines([(jaw, 0.03, 1.0)]), cv.size / 300)
    bone += 0.5 * cv.lines([([(cx, cy + 0.45), (cx, 1.05)], 0.06, 1.0)])  # cervical spine
    cv.density += 0.85 * np.clip(bone, 0.0, 1.3)


def _pelvis(cv: Canvas, rng: np.random.Generator) -> None:
    """An AP pelvis: iliac wings, sacrum, pubic rami around the obturator foramina, hips, lumbar spine."""
    u = rng.uniform
    cx = 0.5 + u(-0.03, 0.03)
    top = u(0.22, 0.3)
    cv.density += 0.55 * blur(cv.lines([([(cx, -0.1), (cx, 1.1)], 0.95, 1.0)]), cv.size / 40)
    bone = np.zeros_like(cv.density)
    for side in (-1, 1):
        wing = [
            (cx + side * 0.06, top + 0.05),
            (cx + side * u(0.33, 0.38), top - 0.02),
            (cx + side * 0.36, top + 0.1),
            (cx + side * 0.2, top + 0.32),
            (cx + side * 0.08, top + 0.3),
        ]
        bone += 0.7 * blur(cv.polygons([(wing, 1.0)]), cv.size / 200)
        hip = (cx + side * 0.22, top + 0.42)
        cv.add_ellipse(bone, *hip, 0.065, 0.065, 0.9, edge=0.006)  # femoral head
        neck = [hip, (hip[0] + side * 0.05, hip[1] + 0.08), (hip[0] + side * 0.06, 1.1)]
        bone += blur(cv.lines([(neck, 0.1, 0.8)]), cv.size / 300)
        ramus = bezier((cx + side * 0.02, top + 0.52), (cx + side * 0.16, top + 0.62), hip, 12)
        bone += blur(cv.lines([(ramus, 0.04, 0.9)]), cv.size / 300)
        cv.add_ellipse(bone, cx + side * 0.11, top + 0.5, 0.05, 0.04, -0.5, edge=0.006)  # obturator
    sacrum = [
        (cx - 0.08, top + 0.02),
        (cx + 0.08, top + 0.02),
        (cx + 0.02, top + 0.33),
        (cx - 0.02, top + 0.33),
    ]
    bone += 0.8 * blur(cv.polygons([(sacrum, 1.0)]), cv.size / 250)
    for level in range(3):  # lumbar vertebrae
        cv.add_ellipse(bone, cx, top - 0.05 - level * 0.1, 0.06, 0.035, 0.8, edge=0.006)
    bone *= 1.0 + 0.08 * cv.low_frequency_noise(rng, 20)
    cv.density += 0.8 * np.clip(bone, 0.0, 1.3)


_RENDERERS: dict[str, Callable[[Canvas, np.random.Generator], None]] = {
    "hand": _hand,
    "knee": _knee,
    "skull": _skull,
    "pelvis": _pelvis,
}


def _expose(density: FloatArray, rng: np.random.Generator) -> NDArray[np.uint8]:
    """Density -> grey like the chest phantoms: a small pose change, exposure curve, heel effect, noise."""
    size = density.shape[0]
    angle = math.radians(rng.uniform(-6, 6))
    img = Image.fromarray(np.ascontiguousarray(density, dtype=np.float32))
    warped = np.asarray(img.rotate(math.degrees(angle), Image.Resampling.BILINEAR), dtype=np.float32)
    k = 1.6
    grey = (1.0 - np.exp(-k * np.maximum(warped, 0.0))) / (1.0 - math.exp(-k * 1.3))
    grey = np.clip(grey, 0.0, 1.0) ** np.float32(rng.uniform(0.85, 1.2))
    grey = (grey - 0.5) * rng.uniform(0.9, 1.1) + 0.5 + rng.uniform(-0.04, 0.04)
    canvas = Canvas(size)
    grey *= 1.0 + 0.06 * (canvas.v - 0.5) * rng.uniform(-1, 1)
    grey += 0.02 * canvas.low_frequency_noise(rng, 6)
    grey += rng.uniform(0.008, 0.022) * rng.standard_normal((size, size), dtype=np.float32)
    return np.clip(grey * 255.0 + 0.5, 0, 255).astype(np.uint8)


def render_body_part(
    part: str, *, seed: int | np.random.SeedSequence = 0, size: int = 512
) -> NDArray[np.uint8]:
    """A ``size`` x ``size`` 8-bit radiograph phantom of ``part`` (one of :data:`BODY_PARTS`).

    Same arguments, same pixels.
    """
    if part not in _RENDERERS:
        raise BodyPartError(f"body part {part!r}; expected one of {list(BODY_PARTS)}")
    if size < 32:
        raise BodyPartError(f"size={size}; expected at least 32 pixels")
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
    # Children by key, not ss.spawn(), which would change a SeedSequence the caller reuses.
    shape_rng, exposure_rng = (
        np.random.default_rng(np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, k)))
        for k in (0, 1)
    )
    canvas = Canvas(size)
    _RENDERERS[part](canvas, shape_rng)
    return _expose(canvas.density, exposure_rng)


__all__ = ["BODY_PARTS", "BodyPartError", "render_body_part"]
