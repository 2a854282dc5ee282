"""Radiographic signs of each finding on a frontal phantom, drawn where the real sign appears.

Each finding may adjust the anatomy before drawing (``MODIFIERS``: a cardiomegaly sets the
cardiothoracic ratio to 0.55-0.68, emphysema lowers and flattens the domes) and draws its sign
in one phase of the frontal drawing (``SIGNS``): ``pre`` (before the lung markings, so a
pneumothorax can clear them), ``opacity`` (air-space and interstitial opacities), ``bone``
(edits the rib layer: a fracture) and ``overlay`` (radio-opaque devices). Sizes, positions and
intensities vary at random, but every sign stays large and dense enough to survive a 512 -> 128
downsampling. Each drawing function returns the box (patient coordinates) it drew into.
The CheXpert-only signs (devices, fracture, widened mediastinum) live in
:mod:`training.data.phantom_extras` and are registered here.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np

from training.data import phantom_extras
from training.data.phantom_canvas import SIDES, Anatomy, Box, FloatArray, Point, Scene, bezier, blur

#: Drawing order of every finding with a sign; also fixes each finding's random stream.
SIGN_ORDER: tuple[str, ...] = (
    "Emphysema",
    "Cardiomegaly",
    "Atelectasis",
    "Fibrosis",
    "Enlarged Cardiomediastinum",
    "Pneumothorax",
    "Effusion",
    "Infiltration",
    "Edema",
    "Pneumonia",
    "Consolidation",
    "Mass",
    "Nodule",
    "Pleural_Thickening",
    "Hernia",
    "Fracture",
    "Support Devices",
)


def _union(boxes: list[Box]) -> Box:
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def _lung_height(an: Anatomy, side: int) -> tuple[float, float]:
    """Top (apex) and bottom (dome) of one lung."""
    return an.apex_v, an.dome_v[0 if side < 0 else 1]


def _point_in_lung(
    scene: Scene,
    rng: np.random.Generator,
    side: int,
    zone: tuple[float, float],
    lateral: tuple[float, float] = (-0.75, 0.75),
) -> Point:
    """A point well inside ``side``'s lung, at a height fraction in ``zone`` (0 apex, 1 dome)."""
    an = scene.anatomy
    cu, _, ru, _ = an.lung_ellipse(side)
    top, bottom = _lung_height(an, side)
    s = scene.canvas.size
    best: Point = (cu, top + 0.5 * (bottom - top))
    for _ in range(30):
        u = cu + side * ru * rng.uniform(*lateral)
        v = top + rng.uniform(*zone) * (bottom - top)
        r, c = min(s - 1, int(v * s)), min(s - 1, int(u * s))
        if scene.lung(side)[r, c] > 0.95:
            return (u, v)
    return best


# -- anatomy modifiers -------------------------------------------------------------------------
def _mod_cardiomegaly(an: Anatomy, rng: np.random.Generator, note: dict) -> Anatomy:
    ctr = rng.uniform(0.55, 0.66) + (0.03 if an.view == "AP" else 0.0)
    return dataclasses.replace(an, ctr=ctr)


def _mod_emphysema(an: Anatomy, rng: np.random.Generator, note: dict) -> Anatomy:
    drop = rng.uniform(0.05, 0.08)
    return dataclasses.replace(
        an,
        dome_v=(an.dome_v[0] + drop, an.dome_v[1] + drop),
        dome_rise=an.dome_rise * 0.3,
        lung_air=min(0.85, an.lung_air * rng.uniform(1.15, 1.25)),
        markings=an.markings * 0.4,
        marking_reach=an.marking_reach * 0.65,
        ctr=an.ctr * 0.85,
        rib_spacing=an.rib_spacing * 1.12,
    )


def _mod_atelectasis(an: Anatomy, rng: np.random.Generator, note: dict) -> Anatomy:
    side = int(rng.choice(SIDES))
    note["side"] = side
    rise = rng.uniform(0.03, 0.05)
    domes = (an.dome_v[0] - rise, an.dome_v[1]) if side < 0 else (an.dome_v[0], an.dome_v[1] - rise)
    return dataclasses.replace(an, dome_v=domes)


def _mod_fibrosis(an: Anatomy, rng: np.random.Generator, note: dict) -> Anatomy:
    rise = rng.uniform(0.015, 0.03)  # volume loss
    return dataclasses.replace(an, dome_v=(an.dome_v[0] - rise, an.dome_v[1] - rise))


MODIFIERS: dict[str, Callable[[Anatomy, np.random.Generator, dict], Anatomy]] = {
    "Cardiomegaly": _mod_cardiomegaly,
    "Emphysema": _mod_emphysema,
    "Atelectasis": _mod_atelectasis,
    "Fibrosis": _mod_fibrosis,
    "Enlarged Cardiomediastinum": phantom_extras.modify_mediastinum,
}


def modify_anatomy(name: str, anatomy: Anatomy, rng: np.random.Generator, notes: dict[str, dict]) -> Anatomy:
    """Let finding ``name`` change the anatomy; choices it makes go to ``notes[name]``."""
    modifier = MODIFIERS.get(name)
    if modifier is None:
        return anatomy
    return modifier(anatomy, rng, notes.setdefault(name, {}))


# -- signs that only record where they are ------------------------------------------------------
def _sign_cardiomegaly(scene: Scene, rng: np.random.Generator) -> Box:
    hu, hv, ru, rv, _ = scene.anatomy.heart_ellipse()
    w = scene.anatomy.heart_width / 2
    return (hu - w, hv - rv, hu + w, hv + rv)


# -- pre-marking signs ------------------------------------------------------------------------
def _sign_pneumothorax(scene: Scene, rng: np.random.Generator) -> Box | None:
    """Lucent rim between the chest wall and a collapsed lung edge (pleural line); no markings in it."""
    cv, an = scene.canvas, scene.anatomy
    side = int(rng.choice(SIDES))
    cu, cvv, ru, rv = an.lung_ellipse(side)
    k = rng.uniform(0.68, 0.85)
    anchor = (an.cx + side * 0.04, an.dome_v[0 if side < 0 else 1])
    iu, iv = anchor[0] + k * (cu - anchor[0]), anchor[1] + k * (cvv - anchor[1])
    r = np.sqrt(((cv.u - iu) / (k * ru)) ** 2 + ((cv.v - iv) / (k * rv)) ** 2)
    lung = scene.lung(side)
    rim = np.clip((r - 1.0) * (k * ru) / 0.004 + 0.5, 0, 1) * lung
    line = np.clip(1.0 - np.abs(r - 1.0) * (k * ru) / 0.003, 0, 1) * lung
    cv.density -= rng.uniform(0.16, 0.22) * rim
    cv.density += 0.22 * line
    scene.keep *= 1.0 - rim
    return scene.box_of(rim, 0.5)


def _sign_emphysema(scene: Scene, rng: np.random.Generator) -> Box:
    """Bullae (thin-walled lucent rings, no markings) in the upper zones of the hyperinflated lungs."""
    cv, an = scene.canvas, scene.anatomy
    for _ in range(rng.integers(1, 4)):
        side = int(rng.choice(SIDES))
        u, v = _point_in_lung(scene, rng, side, (0.1, 0.4))
        r = rng.uniform(0.025, 0.045)
        inside = np.zeros_like(cv.density)
        cv.add_ellipse(inside, u, v, r, r, 1.0, edge=0.003)
        inside *= scene.lung(side)
        cv.density -= 0.08 * inside
        scene.keep *= 1.0 - inside
        cv.density += 0.12 * cv.rings([(u, v, r, 0.004)], 1.0) * scene.lung(side)
    boxes = [_lung_box(an, s) for s in SIDES]
    return _union(boxes)


def _lung_box(an: Anatomy, side: int) -> Box:
    cu, _, ru, _ = an.lung_ellipse(side)
    top, bottom = _lung_height(an, side)
    return (cu - ru, top, cu + ru, bottom + an.dome_rise)


# -- opacities ----------------------------------------------------------------------------------
def _sign_effusion(scene: Scene, rng: np.random.Generator) -> Box | None:
    """Basal fluid with a meniscus rising laterally: the costophrenic angle is blunted."""
    cv, an = scene.canvas, scene.anatomy
    sides = list(SIDES) if rng.random() < 0.3 else [int(rng.choice(SIDES))]
    layer_total = np.zeros_like(cv.density)
    for side in sides:
        cu, _, ru, _ = an.lung_ellipse(side)
        angle_v = float(an.dome(side, cu + side * ru))
        height = rng.uniform(0.08, 0.17)
        t = np.clip(side * (cv.u - (cu - side * ru)) / (2 * ru), 0, 1)
        surface = angle_v - height * (0.3 + 0.7 * t**2)
        layer = np.clip((cv.v - surface) / 0.02, 0, 1)
        scene.add_in_lung(layer, 1.0, side)
        layer_total += layer * scene.lung(side)
    return scene.box_of(layer_total)


def _blob_layer(
    scene: Scene,
    rng: np.random.Generator,
    centres: list[Point],
    radius: tuple[float, float],
    edge: float,
    fill: tuple[float, float],
) -> FloatArray:
    layer = np.zeros_like(scene.canvas.density)
    for u, v in centres:
        r = rng.uniform(*radius)
        scene.canvas.add_ellipse(
            layer,
            u,
            v,
            r * rng.uniform(0.8, 1.2),
            r,
            rng.uniform(*fill),
            edge=edge * r,
            angle=rng.uniform(0, math.pi),
        )
    return layer


def _sign_infiltration(scene: Scene, rng: np.random.Generator) -> Box | None:
    """Ill-defined hazy opacities, often in both lungs, mid and upper zones."""
    sides = list(SIDES) if rng.random() < 0.5 else [int(rng.choice(SIDES))]
    centres = [_point_in_lung(scene, rng, s, (0.2, 0.7)) for s in sides for _ in range(rng.integers(1, 3))]
    layer = _blob_layer(scene, rng, centres, (0.06, 0.1), 0.9, (0.35, 0.5))
    layer *= 0.75 + 0.25 * scene.canvas.low_frequency_noise(rng, 24)
    scene.add_in_lung(layer, 1.0)
    return scene.box_of(layer * (scene.lungs[0] + scene.lungs[1]), 0.1)


def _sign_edema(scene: Scene, rng: np.random.Generator) -> Box | None:
    """Perihilar 'bat-wing' haze in both lungs with Kerley B lines at the lateral bases."""
    cv, an = scene.canvas, scene.anatomy
    layer = np.zeros_like(cv.density)
    fill = rng.uniform(0.5, 0.65)
    strokes = []
    for side in SIDES:
        cv.add_ellipse(
            layer,
            an.cx + side * 0.11,
            an.hilum_v + 0.02,
            rng.uniform(0.1, 0.13),
            rng.uniform(0.12, 0.16),
            fill,
            edge=0.07,
        )
        cu, _, ru, _ = an.lung_ellipse(side)
        edge_u = cu + side * ru
        bottom = an.dome_v[0 if side < 0 else 1]
        for _ in range(rng.integers(5, 9)):
            v = bottom - rng.uniform(0.0, 0.12)
            strokes.append(([(edge_u, v), (edge_u - side * rng.uniform(0.025, 0.04), v)], 0.005, 1.0))
    layer = np.maximum(layer, blur(cv.lines(strokes), cv.size / 400))
    scene.add_in_lung(layer, 1.0)
    return scene.box_of(layer * (scene.lungs[0] + scene.lungs[1]), 0.1)


def _sign_pneumonia(scene: Scene, rng: np.random.Generator) -> Box | None:
    """Patchy, mottled air-space opacity: a cluster of fuzzy blobs, usually in a lower zone."""
    sides = list(SIDES) if rng.random() < 0.25 else [int(rng.choice(SIDES))]
    centres: list[Point] = []
    for side in sides:
        cu, cvv = _point_in_lung(scene, rng, side, (0.45, 0.85))
        for _ in range(rng.integers(8, 16)):
            centres.append((cu + rng.normal(0, 0.035), cvv + rng.normal(0, 0.035)))
    layer = _blob_layer(scene, rng, centres, (0.014, 0.03), 0.6, (0.55, 0.9))
    layer = blur(layer, scene.canvas.size / 250)
    scene.add_in_lung(layer, 1.0)
    return scene.box_of(layer * (scene.lungs[0] + scene.lungs[1]), 0.2)


_LOBES: dict[str, tuple[int, str]] = {
    "RUL": (-1, "upper"),
    "RML": (-1, "middle"),
    "RLL": (-1, "lower"),
    "LUL": (1, "upper"),
    "LLL": (1, "lower"),
}


def _sign_consolidation(scene: Scene, rng: np.random.Generator) -> Box | None:
    """Dense homogeneous lobar opacity, sharp at the fissure, with air bronchograms."""
    cv, an = scene.canvas, scene.anatomy
    side, part = _LOBES[str(rng.choice(list(_LOBES)))]
    fissure = an.hilum_v + rng.uniform(-0.01, 0.03)
    if part == "upper":
        region = np.clip((fissure - cv.v) / 0.004 + 0.5, 0, 1)
    elif part == "middle":
        region = np.clip((cv.v - fissure) / 0.004 + 0.5, 0, 1) * np.clip(
            (0.17 - np.abs(cv.u - an.cx)) / 0.03, 0, 1
        )
    else:
        region = np.clip((cv.v - fissure - 0.02) / 0.04, 0, 1)
    u, v = _point_in_lung(
        scene,
        rng,
        side,
        (0.25, 0.4) if part == "upper" else (0.6, 0.8),
        (-0.6, 0.2) if part == "middle" else (-0.75, 0.75),
    )
    extent = cv.ellipse(u, v, rng.uniform(0.14, 0.2), rng.uniform(0.14, 0.2), edge=0.05)
    layer = region * extent * (0.85 + 0.15 * cv.low_frequency_noise(rng, 16))
    scene.add_in_lung(layer, rng.uniform(0.85, 1.0), side)
    hilum = (an.cx + side * 0.08, an.hilum_v)
    strokes = []
    for _ in range(rng.integers(3, 6)):
        end = (u + rng.normal(0, 0.05), v + rng.normal(0, 0.05))
        mid = (
            0.5 * (hilum[0] + end[0]) + rng.normal(0, 0.02),
            0.5 * (hilum[1] + end[1]) + rng.normal(0, 0.02),
        )
        strokes.append((bezier(hilum, mid, end, 8), 0.007, 1.0))
    bronchi = blur(cv.lines(strokes), cv.size / 500)
    cv.density -= 0.45 * an.lung_air * bronchi * np.clip(layer - 0.4, 0, 1) * scene.lung(side)
    return scene.box_of(layer * scene.lung(side), 0.4)


def _sign_mass(scene: Scene, rng: np.random.Generator) -> Box:
    """Large (> 3 cm) round, slightly lobulated opacity."""
    side = int(rng.choice(SIDES))
    u, v = _point_in_lung(scene, rng, side, (0.2, 0.7), (-0.6, 0.6))
    r = rng.uniform(0.045, 0.08)
    lobes = [(u, v)] + [
        (u + 0.5 * r * math.cos(a), v + 0.5 * r * math.sin(a)) for a in rng.uniform(0, 2 * math.pi, 2)
    ]
    layer = np.zeros_like(scene.canvas.density)
    for i, (lu, lv) in enumerate(lobes):
        rr = r if i == 0 else r * rng.uniform(0.5, 0.7)
        layer = np.maximum(
            layer, np.minimum(1.0, _blob_layer(scene, rng, [(lu, lv)], (rr, rr), 0.08, (1.0, 1.0)))
        )
    scene.add_in_lung(layer, 1.0)
    scene.canvas.density += 0.08 * layer
    return (u - 1.6 * r, v - 1.6 * r, u + 1.6 * r, v + 1.6 * r)


def _sign_nodule(scene: Scene, rng: np.random.Generator) -> Box:
    """One or two small (< 3 cm) round, well-defined opacities."""
    boxes = []
    for _ in range(1 if rng.random() < 0.75 else 2):
        side = int(rng.choice(SIDES))
        u, v = _point_in_lung(scene, rng, side, (0.15, 0.8), (-0.7, 0.7))
        r = rng.uniform(0.017, 0.03)
        layer = _blob_layer(scene, rng, [(u, v)], (r, r), 0.15, (1.0, 1.0))
        scene.add_in_lung(layer, 1.0)
        scene.canvas.density += 0.1 * layer
        boxes.append((u - 1.3 * r, v - 1.3 * r, u + 1.3 * r, v + 1.3 * r))
    return _union(boxes)


def _sign_atelectasis(scene: Scene, rng: np.random.Generator) -> Box | None:
    """Plate-like band opacities above a raised hemidiaphragm; sometimes a collapsed upper lobe wedge."""
    cv, an = scene.canvas, scene.anatomy
    side = scene.notes.get("Atelectasis", {}).get("side", int(rng.choice(SIDES)))
    strokes = []
    for _ in range(rng.integers(1, 3)):
        u, v = _point_in_lung(scene, rng, side, (0.65, 0.92), (-0.5, 0.5))
        half, tilt = rng.uniform(0.06, 0.1), rng.uniform(-0.25, 0.25)
        a, b = (
            (u - half * math.cos(tilt), v - half * math.sin(tilt)),
            (u + half * math.cos(tilt), v + half * math.sin(tilt)),
        )
        strokes.append(([a, b], rng.uniform(0.018, 0.03), 1.0))
    layer = blur(cv.lines(strokes), cv.size / 300)
    if rng.random() < 0.3:
        cu, _, ru, _ = an.lung_ellipse(side)
        wedge = [(an.cx + side * 0.06, an.hilum_v), (cu + side * ru, an.apex_v + 0.08), (cu, an.apex_v)]
        layer = np.maximum(layer, blur(cv.polygons([(wedge, 1.0)]), cv.size / 250))
    scene.add_in_lung(layer, 1.0, side)
    return scene.box_of(layer * scene.lung(side), 0.3)


def _sign_fibrosis(scene: Scene, rng: np.random.Generator) -> Box | None:
    """Reticular (honeycomb) pattern in the basal and peripheral lung."""
    cv, an = scene.canvas, scene.anatomy
    sides = list(SIDES) if rng.random() < 0.8 else [int(rng.choice(SIDES))]
    circles, weight = [], np.zeros_like(cv.density)
    for side in sides:
        cu, _, ru, _ = an.lung_ellipse(side)
        top, bottom = _lung_height(an, side)
        lateral = np.clip(side * (cv.u - cu) / ru + 0.2, 0, 1)
        low = np.clip((cv.v - (top + 0.45 * (bottom - top))) / (0.3 * (bottom - top)), 0, 1)
        weight += np.maximum(lateral, 0.3) * low * (scene.lung(side) > 0)
        for _ in range(int(rng.integers(45, 75))):
            u = cu + side * ru * rng.uniform(-0.5, 1.0)
            v = top + rng.uniform(0.5, 1.0) * (bottom - top)
            circles.append((u, v, rng.uniform(0.009, 0.017), 0.0045))
    layer = blur(cv.rings(circles, 1.0), cv.size / 600)
    scene.add_in_lung(np.clip(0.2 + layer, 0, 1) * weight, 0.85)
    return scene.box_of(weight * (scene.lungs[0] + scene.lungs[1]), 0.3)


def _sign_pleural_thickening(scene: Scene, rng: np.random.Generator) -> Box | None:
    """A thick pleural band along the lateral chest wall or over the apex."""
    cv, an = scene.canvas, scene.anatomy
    side = int(rng.choice(SIDES))
    cu, cvv, ru, rv = an.lung_ellipse(side)
    thick = rng.uniform(0.018, 0.032)
    r = np.sqrt(((cv.u - cu) / (ru - thick)) ** 2 + ((cv.v - cvv) / (rv - thick)) ** 2)
    band = np.clip((r - 1.0) * (ru - thick) / 0.004 + 0.5, 0, 1)
    top, bottom = _lung_height(an, side)
    if rng.random() < 0.7:  # lateral wall
        v0 = top + rng.uniform(0.2, 0.4) * (bottom - top)
        v1 = v0 + rng.uniform(0.3, 0.45) * (bottom - top)
        keep = (
            np.clip((cv.v - v0) / 0.02, 0, 1) * np.clip((v1 - cv.v) / 0.02, 0, 1) * (side * (cv.u - cu) > 0)
        )
    else:  # apical cap
        keep = np.clip((top + 0.13 - cv.v) / 0.02, 0, 1) * np.ones_like(cv.u)
    band = band * keep
    scene.add_in_lung(band, 1.0, side)
    band *= scene.lung(side)
    cv.density += 0.2 * band
    return scene.box_of(band, 0.4)


def _sign_hernia(scene: Scene, rng: np.random.Generator) -> Box:
    """Hiatal hernia: a rounded retrocardiac opacity with an air-fluid level, seen through the heart."""
    cv, an = scene.canvas, scene.anatomy
    r = rng.uniform(0.045, 0.07)
    u = an.cx + rng.uniform(-0.01, 0.05)
    v = 0.5 * (an.dome_v[0] + an.dome_v[1]) - rng.uniform(0.02, 0.05)
    box = (u - r - 0.01, v - r - 0.01, u + r + 0.01, v + r + 0.01)
    win = cv.window(*box)
    sac = cv.ellipse(u, v, r, r * 0.9, edge=0.006, window=win)
    level = v - r * rng.uniform(0.0, 0.4)
    air = sac * np.clip((level - cv.v[win[0], :]) / 0.003 + 0.5, 0, 1)
    cv.density[win] += 0.25 * sac - 0.6 * air
    return box


SIGNS: dict[str, tuple[str, Callable[[Scene, np.random.Generator], Box | None]]] = {
    "Cardiomegaly": ("pre", _sign_cardiomegaly),
    "Enlarged Cardiomediastinum": ("pre", phantom_extras.sign_mediastinum),
    "Pneumothorax": ("pre", _sign_pneumothorax),
    "Emphysema": ("pre", _sign_emphysema),
    "Effusion": ("opacity", _sign_effusion),
    "Infiltration": ("opacity", _sign_infiltration),
    "Edema": ("opacity", _sign_edema),
    "Pneumonia": ("opacity", _sign_pneumonia),
    "Consolidation": ("opacity", _sign_consolidation),
    "Mass": ("opacity", _sign_mass),
    "Nodule": ("opacity", _sign_nodule),
    "Atelectasis": ("opacity", _sign_atelectasis),
    "Fibrosis": ("opacity", _sign_fibrosis),
    "Pleural_Thickening": ("opacity", _sign_pleural_thickening),
    "Hernia": ("opacity", _sign_hernia),
    "Fracture": ("bone", phantom_extras.sign_fracture),
    "Support Devices": ("overlay", phantom_extras.sign_support_devices),
}


def draw_sign(name: str, phase: str, scene: Scene, rng: np.random.Generator) -> Box | None:
    """Draw finding ``name``'s frontal sign if it belongs to ``phase``; returns where it was drawn."""
    entry = SIGNS.get(name)
    if entry is None or entry[0] != phase:
        return None
    return entry[1](scene, rng)
