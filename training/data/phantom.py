"""Draw one synthetic chest radiograph phantom: anatomy, findings, pose, exposure and noise.

:func:`render_phantom` is the entry point. It samples a patient's anatomy, lets each requested
finding adjust it (cardiomegaly widens the heart, emphysema flattens the domes), draws the frontal
(PA/AP) or lateral anatomy as a density image in patient coordinates, draws each finding's sign
(``training.data.phantom_signs``), applies a slight rotation/shift/magnification and maps density to
8-bit grey with a random exposure and noise. Everything is vectorised numpy and Pillow.

Randomness comes from independent streams of one ``SeedSequence``: the anatomy, the textures,
the noise and each finding have their own, so the same seed with and without a finding gives
the same patient, and the difference between the two images is the finding's sign alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from training.data import phantom_lateral, phantom_signs
from training.data.phantom_canvas import (
    SIDES,
    Anatomy,
    Box,
    Canvas,
    FloatArray,
    Scene,
    bezier,
    blur,
    smoothstep,
)
from training.data.synthetic_labels import SyntheticOptionError

VIEWS: tuple[str, ...] = ("PA", "AP", "LATERAL")
#: Every finding :func:`render_phantom` can draw: the 14 ChestX-ray14 findings, then the extra
#: CheXpert observations with a sign of their own.
DRAWABLE_FINDINGS: tuple[str, ...] = phantom_signs.SIGN_ORDER


@dataclass(frozen=True)
class PhantomGeometry:
    """What was drawn where, in patient coordinates (fractions of the image side), plus the pose."""

    size: int
    view: str
    heart_width: float
    thorax_width: float
    cx: float
    boxes: dict[str, Box]  # finding -> box (u0, v0, u1, v1) where its sign was drawn
    rotation: float  # degrees
    shift: tuple[float, float]
    scale: float

    @property
    def ctr(self) -> float:
        """Cardiothoracic ratio as drawn."""
        return self.heart_width / self.thorax_width

    def to_pixels(self, u: float, v: float) -> tuple[float, float]:
        """Pixel position (x, y) in the final image of the patient point (u, v)."""
        half = self.size / 2.0
        a = math.radians(self.rotation)
        du, dv = (u * self.size - half) * self.scale, (v * self.size - half) * self.scale
        x = half + self.shift[0] * self.size + du * math.cos(a) - dv * math.sin(a)
        y = half + self.shift[1] * self.size + du * math.sin(a) + dv * math.cos(a)
        return x, y

    def pixel_box(self, box: Box) -> tuple[int, int, int, int]:
        """Pixel bounding box (x0, y0, x1, y1), clipped to the image, of a patient-coordinate box."""
        corners = [self.to_pixels(u, v) for u in (box[0], box[2]) for v in (box[1], box[3])]
        xs, ys = [c[0] for c in corners], [c[1] for c in corners]
        clip = lambda t: int(min(max(t, 0), self.size))  # noqa: E731
        return clip(min(xs)), clip(min(ys)), clip(math.ceil(max(xs))), clip(math.ceil(max(ys)))


@dataclass(frozen=True)
class Phantom:
    """An 8-bit grey radiograph phantom and the geometry it was drawn with."""

    image: NDArray[np.uint8]
    geometry: PhantomGeometry


def child_seed(seed: np.random.SeedSequence, *key: int) -> np.random.SeedSequence:
    """The sub-stream ``key`` of ``seed``; the same (seed, key) gives the same stream in any process."""
    return np.random.SeedSequence(seed.entropy, spawn_key=tuple(seed.spawn_key) + tuple(key))


def _rng(seed: np.random.SeedSequence, *key: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(child_seed(seed, *key)))


def _seed_sequence(seed: int | np.random.SeedSequence) -> np.random.SeedSequence:
    """``seed`` as a ``SeedSequence`` (an int becomes ``SeedSequence(seed)``; a sequence is used as is)."""
    return seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)


def sample_anatomy(rng: np.random.Generator, view: str, female: bool, age: int) -> Anatomy:
    """A normal patient: thorax size, diaphragm, heart, lungs, pose and exposure for ``view``."""
    ap = view == "AP"
    child = age < 16
    u = rng.uniform
    half_width = u(0.31, 0.355) * (0.97 if female else 1.0)
    apex = u(0.1, 0.14)
    dome_r = u(0.6, 0.66) - (0.03 if ap else 0.0)
    dome_l = dome_r + u(0.01, 0.035)
    ctr = u(0.38, 0.46) * (1.06 if ap else 1.0)
    dome_mean = 0.5 * (dome_r + dome_l)
    return Anatomy(
        view=view,
        female=female,
        cx=0.5 + u(-0.01, 0.01),
        half_width=half_width,
        apex_v=apex,
        dome_v=(dome_r, dome_l),
        dome_rise=u(0.05, 0.075),
        ctr=min(ctr, 0.49),
        heart_angle=u(0.25, 0.45),
        mediastinum=u(0.045, 0.06),
        hilum_v=apex + u(0.38, 0.44) * (dome_mean - apex),
        soft_tissue=u(0.62, 0.72) + (0.03 if female else 0.0),
        lung_air=u(0.44, 0.5),
        markings=u(0.1, 0.15),
        marking_reach=u(0.9, 1.05),
        rib_spacing=(dome_mean - apex) / u(8.3, 9.3),
        clavicle_v=apex + u(0.015, 0.045) - (0.02 if ap else 0.0),
        rotation=float(np.clip(rng.normal(0.0, 2.5 if ap else 1.5), -5, 5)),
        shift=(u(-0.025, 0.025), u(-0.025, 0.025)),
        scale=u(0.8, 0.9) if child else u(0.9, 1.04),
        gamma=u(0.85, 1.2),
        contrast=u(0.9, 1.1) * (0.85 if ap else 1.0),
        brightness=u(-0.04, 0.04) + (0.03 if ap else 0.0),
        noise=u(0.008, 0.022),
    )


# -- frontal anatomy ---------------------------------------------------------------------------
def _draw_body(scene: Scene) -> None:
    """Soft tissue of the torso, shoulders and neck, thicker in the middle; abdomen below the domes."""
    cv, an = scene.canvas, scene.anatomy
    du, dv = np.abs(cv.u - an.cx) / (an.half_width * 1.4), np.abs(cv.v - 0.64) / (0.64 - an.apex_v + 0.1)
    torso = smoothstep((1.0 - (du**3 + dv**3) ** (1 / 3)) * 40.0 + 0.5)  # boxy: square shoulders
    neck = cv.ellipse(an.cx, 0.0, 0.085, 0.14, edge=0.008)
    body = np.maximum(torso, neck)
    thickness = 0.72 + 0.28 * np.sqrt(np.clip(1.0 - ((cv.u - an.cx) / (an.half_width * 1.45)) ** 2, 0, 1))
    cv.density += an.soft_tissue * body * thickness
    if an.female:  # breast shadows over the lower zones
        for side in SIDES:
            cv.add_ellipse(
                cv.density,
                an.cx + side * an.half_width * 0.7,
                an.dome_v[0] + 0.02,
                0.13,
                0.09,
                0.12,
                edge=0.03,
            )


def _draw_centre(scene: Scene) -> tuple[FloatArray, FloatArray]:
    """Mediastinum, aortic knob, heart, trachea and hila; returns the mediastinum and heart masks."""
    cv, an = scene.canvas, scene.anatomy
    dome_mid = 0.5 * (an.dome_v[0] + an.dome_v[1])
    hu, hv, hru, hrv, angle = an.heart_ellipse()
    med = np.clip((an.mediastinum - np.abs(cv.u - an.cx)) / 0.006 + 0.5, 0, 1) * (cv.v < hv)
    knob_v = an.apex_v + 0.16
    med = np.maximum(med, cv.ellipse(an.cx + an.mediastinum, knob_v, 0.032, 0.028, edge=0.005))
    heart = cv.ellipse(hu, hv, hru, hrv, angle=angle, edge=0.004)
    dome_line = np.where(cv.u < an.cx, an.dome(-1, cv.u), an.dome(1, cv.u))
    abdomen = np.clip((cv.v - np.minimum(dome_line, dome_mid + 0.03)) / 0.012 + 0.5, 0, 1)
    abdomen *= np.clip((an.half_width * 1.05 - np.abs(cv.u - an.cx)) / 0.06, 0, 1)
    cv.density += 0.26 * np.maximum(np.maximum(med, heart), abdomen)
    carina = (an.cx + 0.004, an.hilum_v - 0.05)
    airway = cv.lines(
        [
            ([(an.cx, 0.0), carina], 0.02, 1.0),
            ([carina, (an.cx - 0.06, an.hilum_v - 0.01)], 0.013, 1.0),
            ([carina, (an.cx + 0.065, an.hilum_v + 0.005)], 0.013, 1.0),
        ]
    )
    cv.density -= 0.22 * blur(airway, cv.size / 300)
    for side in SIDES:
        cv.add_ellipse(cv.density, an.cx + side * 0.075, an.hilum_v, 0.03, 0.055, 0.12, edge=0.025)
    return med, heart


def _make_lungs(scene: Scene, med: FloatArray, heart: FloatArray, rng: np.random.Generator) -> None:
    """Soft masks of both lung fields, cut by the domes, the mediastinum and the heart; subtract air."""
    cv, an = scene.canvas, scene.anatomy
    outside = (1.0 - med) * (1.0 - heart)
    lungs = []
    for side in SIDES:
        cu, cvv, ru, rv = an.lung_ellipse(side)
        shape = cv.ellipse(cu, cvv, ru, rv, edge=0.004)
        above = np.clip((an.dome(side, cv.u) - cv.v) / 0.005 + 0.5, 0, 1)
        lungs.append((shape * above * outside).astype(np.float32))
    scene.lungs = (lungs[0], lungs[1])
    scene.keep = np.ones_like(cv.density)
    hilar = np.exp(-(((cv.u - an.cx) / 0.2) ** 2) - ((cv.v - an.hilum_v) / 0.22) ** 2)
    texture = 1.0 - 0.25 * hilar + 0.06 * cv.low_frequency_noise(rng, 8)
    cv.density -= an.lung_air * texture * (lungs[0] + lungs[1])


def _vessel_strokes(rng: np.random.Generator, an: Anatomy, side: int) -> list:
    strokes: list = []
    start = (an.cx + side * 0.07, an.hilum_v)
    stack = [
        (start, math.radians(a), 0.075 * an.marking_reach, 0.011, 4)
        for a in (-70, -40, -10, 20, 50, 80)
        if rng.random() < 0.9
    ]
    while stack:
        (u0, v0), angle, length, width, depth = stack.pop()
        end = (u0 + side * length * math.cos(angle), v0 + length * math.sin(angle))
        strokes.append(([(u0, v0), end], width, min(1.0, width / 0.008)))
        if depth > 0:
            for turn in (-1, 1):
                new_angle = angle + turn * rng.uniform(0.25, 0.55)
                stack.append((end, new_angle, length * rng.uniform(0.65, 0.85), width * 0.68, depth - 1))
    return strokes


def _draw_markings(scene: Scene, rng: np.random.Generator) -> None:
    """Branching lung vessels from the hila, fading to the periphery, only inside the lungs."""
    cv, an = scene.canvas, scene.anatomy
    layer = cv.lines(_vessel_strokes(rng, an, -1) + _vessel_strokes(rng, an, 1))
    layer = blur(layer, cv.size / 350)
    scene.markings = an.markings * layer * (scene.lungs[0] + scene.lungs[1]) * scene.keep
    cv.density += scene.markings


def _rib_strokes(an: Anatomy, rng: np.random.Generator) -> tuple[list, list]:
    """Posterior rib centrelines (side, points) and the fainter anterior ribs, as strokes."""
    ribs, anterior = [], []
    for side in SIDES:
        for i in range(10):
            v0 = an.apex_v + 0.005 + i * an.rib_spacing
            reach = an.half_width * (0.55 + 0.5 * min(1.0, 0.35 + 0.22 * i))
            jitter = rng.uniform(-0.004, 0.004)
            p0 = (an.cx + side * 0.03, v0 + jitter)
            p1 = (an.cx + side * (0.03 + 0.7 * reach), v0 - 0.03 + jitter)
            p2 = (an.cx + side * (0.04 + reach), v0 + 0.05 + 0.004 * i)
            ribs.append((side, bezier(p0, p1, p2)))
            q0 = (p2[0] - side * 0.01, p2[1] + 0.005)
            q2 = (an.cx + side * 0.09, q0[1] + 0.11 + 0.005 * i)
            if i < 7:
                anterior.append(([q0, (0.5 * (q0[0] + q2[0]), q0[1] + 0.045), q2], 0.011, 0.5))
    return ribs, anterior


def _draw_bones(scene: Scene, rng: np.random.Generator) -> None:
    """Ribs (with brighter cortices), clavicles, humeral heads and, on AP films, scapulae; spine."""
    cv, an = scene.canvas, scene.anatomy
    ribs, anterior = _rib_strokes(an, rng)
    scene.ribs = ribs
    width = 0.017
    strokes = [(pts, width, 1.0) for _, pts in ribs] + [(pts, width * 0.55, 0.55) for _, pts in ribs]
    for side in SIDES:
        c0 = (an.cx + side * 0.035, an.clavicle_v + 0.03)
        c1 = (an.cx + side * 0.15, an.clavicle_v + (0.0 if an.view == "AP" else 0.01))
        c2 = (an.cx + side * an.half_width * 0.95, an.clavicle_v - (0.0 if an.view == "AP" else 0.03))
        strokes.append((bezier(c0, c1, c2), 0.022, 1.2))
    bone = cv.lines(anterior + strokes)
    for side in SIDES:
        if an.view == "AP":
            tip = (an.cx + side * an.half_width * 0.8, an.apex_v + 0.3)
            top = [
                (an.cx + side * an.half_width * 0.6, an.apex_v + 0.04),
                (an.cx + side * an.half_width * 1.05, an.apex_v + 0.01),
                tip,
            ]
            bone += 0.35 * blur(cv.polygons([(top, 1.0)]), cv.size / 150)
    spine = np.clip((0.032 - np.abs(cv.u - an.cx)) / 0.004, 0, 1)
    discs = 0.75 + 0.25 * np.abs(np.sin(np.pi * (cv.v - an.apex_v) / an.rib_spacing))
    bone += 0.4 * spine * discs
    below = 0.5 * (an.dome_v[0] + an.dome_v[1]) + an.dome_rise + 0.06
    # A new array, not in place: at some sizes blur() hands back a read-only array.
    scene.bone = blur(bone, cv.size / 400) * np.clip((below - cv.v) / 0.04, 0.3, 1.0)  # ribs fade below


def _gastric_bubble(scene: Scene) -> None:
    cv, an = scene.canvas, scene.anatomy
    cu = an.cx + an.half_width * 0.5
    top = float(an.dome(1, cu)) + 0.025
    win = cv.window(cu - 0.06, top - 0.01, cu + 0.06, top + 0.06)
    bubble = cv.ellipse(cu, top + 0.03, 0.05, 0.03, edge=0.01, window=win)
    level = cv.v[win[0], :] < top + 0.03
    cv.density[win] -= 0.35 * bubble * level


# -- exposure ----------------------------------------------------------------------------------
def _finish(density: FloatArray, an: Anatomy, rng: np.random.Generator) -> NDArray[np.uint8]:
    """Pose (rotation, shift, magnification), density -> grey, exposure variation, noise, 8 bits."""
    size = density.shape[0]
    a = math.radians(an.rotation)
    c, s = math.cos(a) / an.scale, math.sin(a) / an.scale
    half = size / 2.0
    tx, ty = half + an.shift[0] * size, half + an.shift[1] * size
    coeffs = (c, s, half - c * tx - s * ty, -s, c, half + s * tx - c * ty)
    img = Image.fromarray(np.ascontiguousarray(density, dtype=np.float32))
    warped = np.asarray(
        img.transform((size, size), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR),
        dtype=np.float32,
    )
    k = 1.6
    grey = (1.0 - np.exp(-k * warped)) / (1.0 - math.exp(-k * 1.3))
    grey = np.clip(grey, 0.0, 1.0) ** np.float32(an.gamma)
    grey = (grey - 0.5) * an.contrast + 0.5 + an.brightness
    canvas = Canvas(size)
    grey *= 1.0 + 0.06 * (canvas.v - 0.5) * rng.uniform(-1, 1)  # heel effect
    grey += 0.02 * canvas.low_frequency_noise(rng, 6)
    grey += an.noise * rng.standard_normal((size, size), dtype=np.float32)
    return np.clip(grey * 255.0 + 0.5, 0, 255).astype(np.uint8)


def check_findings(findings: Iterable[str]) -> tuple[str, ...]:
    """The findings in drawing order; raises ``ValueError`` naming an unknown one and the valid names."""
    wanted = set(findings)
    unknown = sorted(wanted - set(DRAWABLE_FINDINGS))
    if unknown:
        raise SyntheticOptionError(
            f"unknown phantom finding(s) {unknown}; expected names from {list(DRAWABLE_FINDINGS)}"
        )
    return tuple(f for f in DRAWABLE_FINDINGS if f in wanted)


def draw_scene(
    findings: Iterable[str] = (),
    *,
    seed: int | np.random.SeedSequence = 0,
    size: int = 512,
    view: str = "PA",
    female: bool = False,
    age: int = 50,
) -> Scene:
    """Draw the density image (patient coordinates, before pose and exposure) and its masks.

    :func:`render_phantom` turns it into the radiograph; tests inspect it (lung masks, the
    marking layer, the boxes of the signs).
    """
    if view not in VIEWS:
        raise SyntheticOptionError(f"view={view!r}; expected one of {list(VIEWS)}")
    if size < 32:
        raise SyntheticOptionError(f"size={size}; expected at least 32 pixels")
    ordered = check_findings(findings)
    ss = _seed_sequence(seed)
    sign_rngs = {name: _rng(ss, 3 + DRAWABLE_FINDINGS.index(name)) for name in ordered}
    anatomy = sample_anatomy(_rng(ss, 0), view, female, age)
    notes: dict[str, dict] = {}
    for name in ordered:
        anatomy = phantom_signs.modify_anatomy(name, anatomy, sign_rngs[name], notes)
    scene = Scene(Canvas(size), anatomy, notes=notes)
    texture = _rng(ss, 1)
    if view == "LATERAL":
        phantom_lateral.draw_lateral(scene, texture, ordered, sign_rngs)
    else:
        _draw_frontal(scene, texture, ordered, sign_rngs)
    return scene


def render_phantom(
    findings: Iterable[str] = (),
    *,
    seed: int | np.random.SeedSequence = 0,
    size: int = 512,
    view: str = "PA",
    female: bool = False,
    age: int = 50,
) -> Phantom:
    """Draw one phantom radiograph with the signs of ``findings`` (names of :data:`DRAWABLE_FINDINGS`).

    ``view`` is PA, AP (magnified heart, lower contrast, scapulae, less inspiration) or LATERAL
    (a side silhouette; only some findings have a lateral sign). Same arguments, same pixels.
    """
    ss = _seed_sequence(seed)
    scene = draw_scene(findings, seed=ss, size=size, view=view, female=female, age=age)
    anatomy = scene.anatomy
    image = _finish(scene.canvas.density, anatomy, _rng(ss, 2))
    geometry = PhantomGeometry(
        size,
        view,
        anatomy.heart_width,
        anatomy.thorax_width,
        anatomy.cx,
        dict(scene.boxes),
        anatomy.rotation,
        anatomy.shift,
        anatomy.scale,
    )
    return Phantom(image, geometry)


def _draw_frontal(
    scene: Scene,
    texture: np.random.Generator,
    ordered: tuple[str, ...],
    sign_rngs: dict[str, np.random.Generator],
) -> None:
    def phase(name: str) -> None:
        for finding in ordered:
            box = phantom_signs.draw_sign(finding, name, scene, sign_rngs[finding])
            if box is not None:
                scene.boxes[finding] = box

    _draw_body(scene)
    med, heart = _draw_centre(scene)
    _make_lungs(scene, med, heart, texture)
    _gastric_bubble(scene)
    phase("pre")
    _draw_markings(scene, texture)
    phase("opacity")
    _draw_bones(scene, texture)
    phase("bone")
    scene.canvas.density += 0.17 * scene.bone
    phase("overlay")


__all__ = [
    "DRAWABLE_FINDINGS",
    "VIEWS",
    "Phantom",
    "PhantomGeometry",
    "check_findings",
    "child_seed",
    "draw_scene",
    "render_phantom",
    "sample_anatomy",
]
