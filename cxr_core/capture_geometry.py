"""Plane geometry of a photographed film: homographies, the film's aspect ratio and the camera tilt.

* :func:`homography` maps 4 source points onto 4 destination points (the 8x8 direct linear solve).
* :func:`film_aspect` estimates the film's true width / height from its photographed quad with the
  rectangle-from-perspective method of Zhang & He ("Whiteboard scanning and image enhancement",
  2007): the quad's vanishing geometry gives the camera's focal length, which undoes the
  foreshortening. When the quad is nearly fronto-parallel the focal length is undetermined and the
  mean lengths of opposite sides are used instead.
* :func:`tilt_degrees` is the angle between the camera's axis and the film's normal, from the
  homography and a phone camera's typical focal length (:data:`PHONE_FOCAL_SHARE` of the photo's
  long side; about a 70 degree horizontal field of view, the main camera of most phones).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from cxr_core.capture_common import CaptureInputError

#: A phone main camera's focal length as a share of the photo's long side (70 degree field of view).
PHONE_FOCAL_SHARE = 0.714


def homography(src: NDArray[np.float64], dst: NDArray[np.float64]) -> NDArray[np.float64]:
    """The 3x3 ``H`` with ``dst ~ H @ [src, 1]`` for 4 point pairs (``H[2, 2] = 1``)."""
    rows = []
    rhs = []
    for (x, y), (u, v) in zip(np.asarray(src, float), np.asarray(dst, float), strict=True):
        rows.append([x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y])
        rows.append([0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y])
        rhs += [u, v]
    try:
        solution = np.linalg.solve(np.array(rows), np.array(rhs))
    except np.linalg.LinAlgError as exc:
        raise CaptureInputError(f"corners {np.asarray(src).tolist()} are degenerate (3 in a line?)") from exc
    return np.append(solution, 1.0).reshape(3, 3)


def apply_homography(h: NDArray[np.float64], points: NDArray[np.float64]) -> NDArray[np.float64]:
    """``points`` (N, 2) mapped by ``h``."""
    pts = np.asarray(points, dtype=np.float64)
    mapped = np.c_[pts, np.ones(len(pts))] @ h.T
    return mapped[:, :2] / mapped[:, 2:3]


def quad_area(corners: NDArray[np.float64]) -> float:
    """Signed shoelace area (positive for the clockwise-on-screen order TL, TR, BR, BL, y down)."""
    x, y = corners[:, 0], corners[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y))


def is_convex(corners: NDArray[np.float64]) -> bool:
    """True when the quad turns the same way at every corner (no bow tie, no dent)."""
    edges = np.roll(corners, -1, axis=0) - corners
    cross = edges[:, 0] * np.roll(edges[:, 1], -1) - edges[:, 1] * np.roll(edges[:, 0], -1)
    return bool(np.all(cross > 0) or np.all(cross < 0))


def order_corners(points: NDArray[np.float64]) -> NDArray[np.float64]:
    """4 points of a convex quad in the order TL, TR, BR, BL (clockwise on screen, top-left first).

    Sorted by angle around the centroid; the corner nearest the top-left of the quad's bounding box
    comes first, so a film photographed upright keeps its reading order.
    """
    pts = np.asarray(points, dtype=np.float64)
    centre = pts.mean(axis=0)
    angles = np.arctan2(pts[:, 1] - centre[1], pts[:, 0] - centre[0])
    pts = pts[np.argsort(angles)]  # clockwise on screen (y down), starting anywhere
    start = int(np.argmin(pts[:, 0] + pts[:, 1]))
    return np.roll(pts, -start, axis=0)


def side_lengths(corners: NDArray[np.float64]) -> NDArray[np.float64]:
    """Lengths of the top, right, bottom and left sides."""
    return np.linalg.norm(np.roll(corners, -1, axis=0) - corners, axis=1)


def film_aspect(corners: NDArray[np.float64], photo_size: tuple[int, int]) -> float:
    """The film's width / height estimated from its quad in a photo of ``photo_size`` (width, height)."""
    top, right, bottom, left = side_lengths(corners)
    fallback = (top + bottom) / max(left + right, 1e-9)
    centre = np.array([photo_size[0] / 2.0, photo_size[1] / 2.0])
    tl, tr, br, bl = (np.append(p - centre, 1.0) for p in corners)
    m1, m2, m3, m4 = tl, tr, bl, br  # Zhang & He's numbering
    k2 = np.dot(np.cross(m1, m4), m3) / np.dot(np.cross(m2, m4), m3)
    k3 = np.dot(np.cross(m1, m4), m2) / np.dot(np.cross(m3, m4), m2)
    n2 = k2 * m2 - m1
    n3 = k3 * m3 - m1
    if abs(n2[2] * n3[2]) < 1e-9:
        return float(fallback)
    f2 = -(n2[0] * n3[0] + n2[1] * n3[1]) / (n2[2] * n3[2])
    long_side = float(max(photo_size))
    if not (0.1 * long_side) ** 2 < f2 < (10.0 * long_side) ** 2:  # nearly fronto-parallel: unreliable
        return float(fallback)
    num = (n2[0] ** 2 + n2[1] ** 2) / f2 + n2[2] ** 2
    den = (n3[0] ** 2 + n3[1] ** 2) / f2 + n3[2] ** 2
    if not (num > 0 and den > 0):
        return float(fallback)
    ratio = math.sqrt(num / den)
    # Guard against a wild estimate from a badly conditioned quad: stay near the side-length ratio.
    return float(min(max(ratio, fallback / 1.5), fallback * 1.5))


def tilt_degrees(corners: NDArray[np.float64], photo_size: tuple[int, int]) -> float:
    """Angle in degrees between the camera axis and the film's normal (0 = phone parallel to the film)."""
    width, height = photo_size
    focal = PHONE_FOCAL_SHARE * max(width, height)
    k = np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])
    unit = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    h = np.linalg.solve(k, homography(unit, corners))
    r1 = h[:, 0] / np.linalg.norm(h[:, 0])
    r2 = h[:, 1] / np.linalg.norm(h[:, 1])
    normal = np.cross(r1, r2)
    normal /= np.linalg.norm(normal)
    return float(math.degrees(math.acos(min(1.0, abs(float(normal[2]))))))
