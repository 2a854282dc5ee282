"""Signs of the CheXpert-only observations: support devices, a rib fracture, a widened mediastinum.

Used by the CheXpert-layout generator (and available to any caller of ``render_phantom``); the
ChestX-ray14 set has no labels for them. Same conventions as :mod:`training.data.phantom_signs`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from training.data.phantom_canvas import Anatomy, Box, Scene, bezier, blur


def modify_mediastinum(an: Anatomy, rng: np.random.Generator, note: dict) -> Anatomy:
    """Enlarged cardiomediastinum: the upper mediastinum 1.6-2.1 times wider."""
    return dataclasses.replace(an, mediastinum=an.mediastinum * rng.uniform(1.6, 2.1))


def sign_mediastinum(scene: Scene, rng: np.random.Generator) -> Box:
    """Where the widened mediastinum is (drawn by the anatomy itself)."""
    an = scene.anatomy
    return (an.cx - an.mediastinum, an.apex_v, an.cx + an.mediastinum + 0.03, an.hilum_v)


def sign_fracture(scene: Scene, rng: np.random.Generator) -> Box | None:
    """A rib discontinuity: a gap across a lateral rib with a small step-off (edits the rib layer)."""
    if not scene.ribs:
        return None
    cv = scene.canvas
    side, pts = (
        scene.ribs[int(rng.integers(4, min(len(scene.ribs), 9)))]
        if rng.random() < 0.5
        else scene.ribs[10 + int(rng.integers(2, 8))]
    )
    i = int(rng.integers(6, 10))
    (u0, v0), (u1, v1) = pts[i], pts[i + 1]
    du, dv = u1 - u0, v1 - v0
    norm = math.hypot(du, dv) or 1.0
    box = (u0 - 0.03, v0 - 0.03, u0 + 0.03, v0 + 0.03)
    win = cv.window(*box)
    along = ((cv.u[:, win[1]] - u0) * du + (cv.v[win[0], :] - v0) * dv) / norm
    gap = np.clip((0.006 - np.abs(along)) / 0.002, 0, 1)
    shift = int(round(rng.uniform(0.008, 0.014) * cv.size))
    segment = scene.bone[win] * (along > 0)
    scene.bone[win] = scene.bone[win] * (along <= 0) + np.roll(segment, shift, axis=0)
    scene.bone[win] *= 1.0 - gap
    if rng.random() < 0.5:  # healing callus
        cv.add_ellipse(scene.bone, u0, v0 + 0.004, 0.012, 0.016, 0.8, edge=0.006)
    return box


def sign_support_devices(scene: Scene, rng: np.random.Generator) -> Box | None:
    """Radio-opaque devices: endotracheal tube, central line, nasogastric tube, pacemaker, electrodes."""
    cv, an = scene.canvas, scene.anatomy
    carina_v = an.hilum_v - 0.05
    choices = rng.choice(5, size=int(rng.integers(1, 4)), replace=False)
    strokes, layer = [], np.zeros_like(cv.density)
    for choice in choices:
        if choice == 0:  # endotracheal tube
            strokes.append(([(an.cx, 0.0), (an.cx + 0.003, carina_v - rng.uniform(0.03, 0.06))], 0.012, 0.8))
        elif choice == 1:  # central venous catheter from the right subclavian vein
            start = (an.cx - an.half_width * 0.8, an.clavicle_v + 0.02)
            strokes.append(
                (
                    bezier(start, (an.cx - 0.05, an.clavicle_v - 0.01), (an.cx - 0.03, carina_v + 0.05)),
                    0.005,
                    1.0,
                )
            )
        elif choice == 2:  # nasogastric tube to the stomach
            stomach = (an.cx + an.half_width * 0.5, an.dome_v[1] + 0.08)
            strokes.append((bezier((an.cx - 0.005, 0.0), (an.cx - 0.01, an.dome_v[1]), stomach), 0.007, 0.9))
        elif choice == 3:  # pacemaker generator with leads to the heart
            gu, gv = an.cx + an.half_width * 0.7, an.clavicle_v + 0.05
            cv.add_ellipse(layer, gu, gv, 0.045, 0.032, 1.6, edge=0.004)
            hu, hv, _, _, _ = an.heart_ellipse()
            strokes.append((bezier((gu, gv), (an.cx + 0.02, an.hilum_v - 0.05), (hu, hv + 0.03)), 0.005, 1.0))
        else:  # ECG electrodes
            rings = [(an.cx + rng.uniform(-0.3, 0.3), rng.uniform(0.15, 0.7), 0.013, 0.005) for _ in range(3)]
            layer = np.maximum(layer, cv.rings(rings, 1.2))
    layer = np.maximum(layer, cv.lines(strokes))
    cv.density += blur(layer, cv.size / 600)
    return scene.box_of(layer, 0.3)
