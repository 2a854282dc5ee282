"""Where a film lands in a phone photo: a pinhole camera looking at a tilted flat film.

The film is a rectangle in a plane in front of the camera; the plane is tilted by ``tilt_deg``
about an in-plane axis at ``tilt_axis_deg`` and rolled by ``roll_deg`` about the camera axis. Its
distance is chosen so that the film covers ``fill`` of the frame's area, then it is shifted
(across the optical axis, so the perspective stays that of a real camera) to where the scene
asks. The result is a 3x3 homography from film pixel coordinates to photo pixel coordinates.

Coordinates are continuous: pixel ``(x, y)`` covers ``[x, x + 1) x [y, y + 1)``, so a film of
``W x H`` pixels spans ``(0, 0)`` to ``(W, H)`` and its corners map to the photo corners exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Matrix = NDArray[np.float64]


@dataclass(frozen=True)
class Placement:
    """The homographies (film pixels -> photo pixels) of every film in a photo, and their plane's pose."""

    films: tuple[Matrix, ...]  # one per film; the first is the film the ground truth describes
    plane: Matrix  # (3, 3): world plane coordinates (X, Y, 1) -> photo pixels (homogeneous)
    film_size: tuple[float, float]  # (w, h) of one film in world units (the long side is 1)
    offsets: tuple[tuple[float, float], ...]  # world centre of each film in the plane


def rotation(tilt_deg: float, axis_deg: float, roll_deg: float) -> Matrix:
    """Rotation of the film plane: a tilt about the in-plane axis at ``axis_deg``, then a roll."""
    a, t, r = math.radians(axis_deg), math.radians(tilt_deg), math.radians(roll_deg)
    k = np.array([math.cos(a), math.sin(a), 0.0])
    cross = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    tilt = np.eye(3) + math.sin(t) * cross + (1 - math.cos(t)) * cross @ cross  # Rodrigues
    roll = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return roll @ tilt


def apply(h: Matrix, points: NDArray[np.float64]) -> NDArray[np.float64]:
    """``points`` (N, 2) mapped through the homography ``h``."""
    p = np.c_[points, np.ones(len(points))] @ h.T
    return p[:, :2] / p[:, 2:3]


def film_corners(shape: tuple[int, int]) -> NDArray[np.float64]:
    """The corners of a film of ``shape`` (H, W) in its own pixel coordinates: TL, TR, BR, BL."""
    height, width = shape
    return np.array([[0.0, 0.0], [width, 0.0], [width, height], [0.0, height]])


def quad_area(quad: NDArray[np.float64]) -> float:
    """Area of a polygon (shoelace)."""
    x, y = quad[:, 0], quad[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def _plane_to_photo(rot: Matrix, t: NDArray[np.float64], focal: float, size: tuple[int, int]) -> Matrix:
    k = np.array([[focal, 0, size[0] / 2.0], [0, focal, size[1] / 2.0], [0, 0, 1.0]])
    return k @ np.c_[rot[:, 0], rot[:, 1], t]


def _film_homography(plane: Matrix, shape: tuple[int, int], w: float, h: float, centre: tuple) -> Matrix:
    """Film pixels -> world plane (scaled and centred at ``centre``) -> photo pixels."""
    height, width = shape
    to_plane = np.array([[w / width, 0, centre[0] - w / 2], [0, h / height, centre[1] - h / 2], [0, 0, 1.0]])
    return plane @ to_plane


def place_films(
    shape: tuple[int, int],
    size: tuple[int, int],
    *,
    tilt_deg: float,
    tilt_axis_deg: float,
    roll_deg: float,
    fill: float,
    position: tuple[float, float],
    focal: float,
    n_films: int = 1,
    second_side: int = 1,
    cut_off: float = 0.0,
    cut_side: str = "left",
    margin: float = 0.02,
) -> Placement:
    """Place ``n_films`` films of ``shape`` (H, W) side by side in a photo of ``size`` (W, H).

    ``fill``: the area share of the frame the first film covers (reduced if the films would not
    fit); ``position`` in [0, 1]^2: where in the room left inside the frame the films go;
    ``focal``: focal length as a fraction of the frame's long side. ``cut_off`` > 0 instead
    pushes the films past the ``cut_side`` edge by that share of their extent.
    """
    width, height = size
    rot = rotation(tilt_deg, tilt_axis_deg, roll_deg)
    f = focal * max(width, height)
    long_side = max(shape)
    w, h = shape[1] / long_side, shape[0] / long_side
    gap = 0.08 * w
    if n_films == 2:
        offsets = ((-second_side * (w + gap) / 2, 0.0), (second_side * (w + gap) / 2, 0.0))
    else:
        offsets = ((0.0, 0.0),)

    def layout(t: NDArray[np.float64]) -> tuple[Matrix, tuple[Matrix, ...], NDArray[np.float64]]:
        plane = _plane_to_photo(rot, t, f, size)
        films = tuple(_film_homography(plane, shape, w, h, c) for c in offsets)
        points = np.concatenate([apply(hm, film_corners(shape)) for hm in films])
        return plane, films, points

    t = np.array([0.0, 0.0, 3.0])
    target = max(fill, 1e-4) * width * height
    for _ in range(4):  # area ~ 1 / distance^2; a few rounds absorb the perspective
        _, films, _ = layout(t)
        t[2] *= math.sqrt(quad_area(apply(films[0], film_corners(shape))) / target)
    pad_x, pad_y = margin * width, margin * height
    for _ in range(80):  # back off until everything fits inside the frame (the margin kept)
        _, _, pts = layout(t)
        span = pts.max(axis=0) - pts.min(axis=0)
        if span[0] <= width - 2 * pad_x and span[1] <= height - 2 * pad_y:
            break
        t[2] *= 1.05
    plane, films, pts = layout(t)
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    if cut_off > 0:
        span = hi - lo
        shift = np.array(
            [
                (width - span[0]) * position[0] - lo[0],
                (height - span[1]) * position[1] - lo[1],
            ]
        )
        axis = 0 if cut_side in ("left", "right") else 1
        limit = (width, height)[axis]
        if cut_side in ("left", "top"):
            shift[axis] = -lo[axis] - cut_off * span[axis]
        else:
            shift[axis] = limit - hi[axis] + cut_off * span[axis]
    else:
        room_lo = np.array([pad_x, pad_y]) - lo
        room_hi = np.array([width - pad_x, height - pad_y]) - hi
        shift = room_lo + (room_hi - room_lo) * np.asarray(position, dtype=float)
    for _ in range(30):  # a shift across the axis moves the quad by about shift * f / distance
        moved = t.copy()
        moved[:2] += shift * t[2] / f
        plane, films, pts = layout(moved)
        inside = (pts.min(axis=0) >= [pad_x / 2, pad_y / 2]).all() and (
            pts.max(axis=0) <= [width - pad_x / 2, height - pad_y / 2]
        ).all()
        if cut_off > 0 or inside:
            t = moved
            break
        shift *= 0.8
    else:
        plane, films, pts = layout(t)
    return Placement(films, plane, (w, h), offsets)
