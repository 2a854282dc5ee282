"""The lateral phantom: a side silhouette of the chest (patient facing image left).

Simpler than the frontal phantom but unmistakably different: one overlapping lung field, the heart
anterior and inferior, the retrosternal clear space, the sternum in front, vertebral bodies behind,
both hemidiaphragms. Findings with a lateral sign: Effusion (posterior costophrenic meniscus),
Cardiomegaly (heart filling the retrosternal space), Emphysema (low flat domes, via the anatomy),
Nodule, Mass, Consolidation, Pneumonia, Infiltration, Edema, Hernia (retrocardiac air-fluid level)
and Support Devices. The others (Pneumothorax, Atelectasis, Fibrosis, Pleural_Thickening, Fracture,
Enlarged Cardiomediastinum) are not drawn on the lateral view; as in CheXpert the study's labels
still apply to it.
"""

from __future__ import annotations

import math

import numpy as np

from training.data.phantom_canvas import Box, Scene, blur, smoothstep

ANTERIOR = 0.22  # u of the anterior chest wall (sternum)
POSTERIOR = 0.76  # u of the vertebral bodies


def _dome(scene: Scene, which: int) -> np.ndarray:
    an = scene.anatomy
    top = an.dome_v[which]
    return top + an.dome_rise * 1.3 * ((scene.canvas.u - 0.42) / 0.3) ** 2


def _draw_anatomy(scene: Scene, rng: np.random.Generator) -> None:
    cv, an = scene.canvas, scene.anatomy
    du, dv = np.abs(cv.u - 0.52) / (an.half_width * 1.05), np.abs(cv.v - 0.62) / (0.62 - an.apex_v + 0.08)
    body = smoothstep((1.0 - (du**3 + dv**3) ** (1 / 3)) * 40.0 + 0.5)
    body = np.maximum(body, cv.ellipse(0.5, 0.0, 0.12, 0.16))
    cv.density += an.soft_tissue * 1.3 * body
    low_dome = np.maximum(_dome(scene, 0), _dome(scene, 1))
    lung = cv.ellipse(0.53, an.dome_v[1] + 0.05, 0.27, an.dome_v[1] + 0.05 - an.apex_v, edge=0.006)
    lung *= np.clip((low_dome - cv.v) / 0.005 + 0.5, 0, 1)
    hu, hv = 0.37, an.dome_v[1] - 0.06
    heart = cv.ellipse(hu, hv, 0.14 * an.ctr / 0.43, 0.12, angle=-0.4, edge=0.006)
    lung *= 1.0 - heart
    scene.lungs = (lung.astype(np.float32), np.zeros_like(lung))
    scene.keep = np.ones_like(lung)
    cv.density -= an.lung_air * lung
    upper_dome = np.clip(1.0 - np.abs(np.minimum(_dome(scene, 0), _dome(scene, 1)) - cv.v) / 0.004, 0, 1)
    cv.density += 0.12 * upper_dome * lung
    airway = cv.lines([([(0.44, 0.0), (0.5, an.hilum_v)], 0.022, 1.0)])
    cv.density -= 0.25 * blur(airway, cv.size / 300)
    cv.add_ellipse(cv.density, 0.53, an.hilum_v + 0.02, 0.04, 0.05, 0.18, edge=0.02)
    vessels = [
        ([(0.53, an.hilum_v), (0.53 + r * math.cos(a), an.hilum_v + r * math.sin(a))], 0.005, 1.0)
        for a, r in zip(rng.uniform(0, 2 * math.pi, 16), rng.uniform(0.06, 0.15, 16), strict=True)
    ]
    cv.density += 0.7 * an.markings * blur(cv.lines(vessels), cv.size / 300) * lung
    bone = np.zeros_like(cv.density)
    n = int((0.98 - an.apex_v) / an.rib_spacing)
    for i in range(n):  # vertebral bodies with disc spaces
        v = an.apex_v + i * an.rib_spacing
        cv.add_ellipse(bone, POSTERIOR, v + 0.5 * an.rib_spacing, 0.04, 0.4 * an.rib_spacing, 1.0, edge=0.004)
    sternum = cv.lines(
        [([(ANTERIOR - 0.01, an.apex_v + 0.06), (ANTERIOR + 0.015, an.hilum_v + 0.1)], 0.016, 1.0)]
    )
    ribs = cv.lines(
        [
            (
                [
                    (POSTERIOR - 0.02, an.apex_v + 0.03 + i * an.rib_spacing),
                    (POSTERIOR - 0.2, an.apex_v + 0.09 + i * an.rib_spacing),
                ],
                0.012,
                0.3,
            )
            for i in range(9)
        ]
    )
    scene.bone = bone + sternum + ribs
    cv.density += 0.3 * blur(scene.bone, cv.size / 400)


def _blob(
    scene: Scene,
    rng: np.random.Generator,
    zone: tuple[float, float],
    radius: tuple[float, float],
    fill: float,
    edge: float,
) -> Box:
    an, cv = scene.anatomy, scene.canvas
    u = rng.uniform(0.42, 0.68)
    v = an.apex_v + rng.uniform(*zone) * (an.dome_v[1] - an.apex_v)
    r = rng.uniform(*radius)
    layer = np.zeros_like(cv.density)
    box = cv.add_ellipse(layer, u, v, r, r * rng.uniform(0.8, 1.2), 1.0, edge=edge * r)
    scene.add_in_lung(layer, fill)
    return box


def _effusion(scene: Scene, rng: np.random.Generator) -> Box:
    cv, an = scene.canvas, scene.anatomy
    height = rng.uniform(0.05, 0.12)
    t = np.clip((cv.u - 0.45) / 0.35, 0, 1)
    surface = an.dome_v[1] + an.dome_rise - height * t**2
    layer = np.clip((cv.v - surface) / 0.02, 0, 1) * (cv.u > 0.45)
    scene.add_in_lung(layer, 1.0)
    return (0.45, an.dome_v[1] - height, 0.82, an.dome_v[1] + 2 * an.dome_rise)


def _hernia(scene: Scene, rng: np.random.Generator) -> Box:
    cv, an = scene.canvas, scene.anatomy
    r = rng.uniform(0.045, 0.065)
    u, v = 0.56, an.dome_v[1] - 0.04
    box = (u - r, v - r, u + r, v + r)
    win = cv.window(*box)
    sac = cv.ellipse(u, v, r, r, edge=0.006, window=win)
    air = sac * (cv.v[win[0], :] < v - 0.2 * r)
    cv.density[win] += 0.5 * sac - 0.5 * air
    return box


def _devices(scene: Scene, rng: np.random.Generator) -> Box:
    cv, an = scene.canvas, scene.anatomy
    layer = cv.lines([([(0.44, 0.0), (0.49, an.hilum_v - 0.05)], 0.01, 0.8)])
    cv.density += blur(layer, cv.size / 600)
    return (0.42, 0.0, 0.52, an.hilum_v)


def draw_lateral(
    scene: Scene,
    texture: np.random.Generator,
    ordered: tuple[str, ...],
    sign_rngs: dict[str, np.random.Generator],
) -> None:
    """Draw the lateral anatomy and the lateral signs of ``ordered`` findings into ``scene``."""
    _draw_anatomy(scene, texture)
    hv = scene.anatomy.dome_v[1] - 0.08
    for name in ordered:
        rng = sign_rngs[name]
        box: Box | None = None
        if name == "Effusion":
            box = _effusion(scene, rng)
        elif name == "Cardiomegaly":
            box = (0.25, hv - 0.12, 0.55, hv + 0.12)
        elif name == "Nodule":
            box = _blob(scene, rng, (0.2, 0.75), (0.017, 0.03), 1.2, 0.15)
        elif name == "Mass":
            box = _blob(scene, rng, (0.2, 0.7), (0.045, 0.08), 1.2, 0.1)
        elif name == "Consolidation":
            box = _blob(scene, rng, (0.5, 0.85), (0.08, 0.12), 0.95, 0.3)
        elif name == "Pneumonia":
            box = _blob(scene, rng, (0.5, 0.85), (0.05, 0.08), 0.8, 0.6)
        elif name == "Infiltration":
            box = _blob(scene, rng, (0.3, 0.7), (0.07, 0.1), 0.4, 0.9)
        elif name == "Edema":
            box = scene.canvas.add_ellipse(
                scene.canvas.density, 0.53, scene.anatomy.hilum_v + 0.03, 0.13, 0.13, 0.3, edge=0.07
            )
        elif name == "Hernia":
            box = _hernia(scene, rng)
        elif name == "Support Devices":
            box = _devices(scene, rng)
        if box is not None:
            scene.boxes[name] = box
