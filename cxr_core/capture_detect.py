"""Find the film in a photo: four straight edges that close a quad around a radiograph.

:func:`detect_quad` works on a small grey working copy of the photo (:data:`WORK_LONG_SIDE` px on
the long side, made with Pillow's C box reduction, so a 12-megapixel photo costs a few ms):

1. **Edges.** Sobel gradients of the slightly smoothed copy, thinned to one pixel along the gradient
   (non-maximum suppression); a pixel is an edge above a threshold relative to the photo's strongest
   edges (and an absolute floor, so a blank photo has none).
2. **Lines.** An *oriented* Hough transform: each edge pixel votes, weighted by its gradient, for lines
   within 2 degrees of its own gradient direction, and the normal's direction says which side is
   brighter. The strongest :data:`MAX_LINES` lines are taken greedily with a window suppressed
   around each.
3. **Quads.** Every two pairs of roughly parallel lines (the pairs at least 45 degrees apart) close
   a quad; convex quads of plausible size and shape are kept.
4. **Support.** Each side is sampled at :data:`SIDE_SAMPLES` points (away from the corners); a sample
   supports the side when an edge crosses the side within 2 px of it, in either polarity: a film is
   darker than a light box or a window along most of its outline, but its bright abdomen may meet a
   darker surround, and on a monitor the radiograph's dark corners and bright abdomen both meet the
   viewer's grey background, so one side can change polarity on the way. A side that runs on past
   its corners (the edge of a light box, a window bar) in its main polarity costs the quad
   :data:`EXTENSION_PENALTY`. A quad's score is the mean of its sides' support shares averaged with
   the weakest side's (a film has four sides; three good ones and a guess do not make one).
5. **Which quad is the film.** Among the quads scoring at least :data:`MIN_SCORE` and within
   :data:`STRONG_SHARE` of the best: near-duplicates are merged (of two that score alike, the one
   whose sides hold one polarity better: the body's outline a few pixels inside a film's dark margin
   backs a twin quad too), a quad that holds another such quad
   is the light box, screen or window around the film and is dropped, and so is a quad with a blank
   inside (a window pane, an empty light box). Two film-sized quads left side by side are two films
   (refused: photograph one at a time); none is no film (refused). When no closed quad exists but one
   closes with the photo's border, the film runs out of the frame (refused: move back).
6. **Refinement.** Each side of the chosen quad is re-fitted by least squares to the edge pixels
   along it (sub-pixel), and the corners are the intersections of the fitted lines.

Everything is numpy and Pillow; on a 12-megapixel photo detection took 90-120 ms (reduction included)
on a shared 2-core machine (docs/photos.md).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageFilter

from cxr_core.capture_common import FilmQuad, PhotoRefusedError
from cxr_core.capture_geometry import quad_area

logger = logging.getLogger(__name__)

#: Long side of the working copy the film is found on.
WORK_LONG_SIDE = 512
#: Lines taken from the Hough accumulator.
MAX_LINES = 30
#: Points sampled along each side of a candidate quad.
SIDE_SAMPLES = 40
#: A film found with a lower score is compared with the quads closed by the photo's border: when one
#: of those scores better, the film runs out of the photo.
CLEAR_SCORE = 0.8
#: Refined corners may move at most this far (working-copy pixels) from the Hough quad's.
MAX_REFINE_SHIFT = 8.0
#: Quads scored in full after a coarse first pass over all of them.
COARSE_KEEP = 200
#: A quad's score loses this times the mean share of its sides' continuations backed by an edge.
EXTENSION_PENALTY = 0.5
#: A film's quad must score at least this (share of its outline backed by an edge, see the module).
MIN_SCORE = 0.55
#: Candidates within this share of the best score compete to be the film.
STRONG_SHARE = 0.75
#: A film covers at least this share of the working copy to be considered at all (smaller: no film).
MIN_AREA_SHARE = 0.01
#: Opposite sides of a film's quad are at most this far from parallel (degrees).
MAX_PAIR_ANGLE = 70.0
#: Sides of a quad meeting at less than this angle (degrees) are not a film's corner.
MIN_CORNER_ANGLE = 45.0
#: A quad side longer than this many times its opposite is no film (extreme perspective or a strip).
MAX_SIDE_RATIO = 2.5
#: Corners may lie this share of the frame outside it before the quad is not taken as a full film.
FRAME_SLACK = 0.01
#: An edge pixel's gradient is at least this share of the photo's strong edges (99.5th percentile) ...
EDGE_SHARE = 0.08
#: ... and at least this absolute Sobel magnitude (on 0..255 grey: a step of about 6 grey levels).
EDGE_FLOOR = 24.0
#: Inside a film at least this share of the (shrunk) quad's pixels are edge pixels; a blank pane has none.
MIN_INSIDE_EDGES = 0.004
#: A quad holding a film is its surround (light box, screen) when the ring between them has less than
#: this share of the film's edge density.
RING_SHARE = 0.35
#: ... and the film scores at least the holder's score less this.
NEST_MARGIN = 0.1
#: The longer pair of opposite sides is at most this many times the shorter pair (a strip is no film).
MAX_ASPECT = 3.0
#: Candidates overlapping more than this (intersection over union) are the same film found twice.
DUPLICATE_IOU = 0.85
#: Such twins score alike within this margin; the one whose sides hold one polarity better is kept
#: (a film's dark margin puts the body's outline a few pixels inside its edge: both back a twin).
TWIN_SCORE_MARGIN = 0.03
#: Two disjoint candidates both scoring at least this share of the best are two films ...
TWO_FILM_SCORE_SHARE = 0.85
#: ... when the smaller is at least this share of the larger's area.
TWO_FILM_AREA_SHARE = 0.3


@dataclass(frozen=True)
class WorkingCopy:
    """The grey working copy and how its pixels map to the photo's: ``photo = (work + 0.5) * f - 0.5``."""

    grey: NDArray[np.float32]  # (h, w), 0..255
    factor: float
    photo_size: tuple[int, int]  # (width, height)

    def to_photo(self, points: NDArray[np.float64]) -> NDArray[np.float64]:
        return (np.asarray(points, dtype=np.float64) + 0.5) * self.factor - 0.5

    def to_work(self, points: NDArray[np.float64]) -> NDArray[np.float64]:
        return (np.asarray(points, dtype=np.float64) + 0.5) / self.factor - 0.5


def working_copy(photo: Image.Image, long_side: int = WORK_LONG_SIDE) -> tuple[WorkingCopy, Image.Image]:
    """The grey working copy of ``photo`` (RGB) and the small RGB copy it was made from."""
    width, height = photo.size
    factor = max(1, int(round(max(width, height) / long_side)))
    small = photo.reduce(factor) if factor > 1 else photo
    grey = np.asarray(small.convert("L"), dtype=np.float32)
    return WorkingCopy(grey, float(factor), (width, height)), small


@dataclass(frozen=True)
class Edges:
    gx: NDArray[np.float32]
    gy: NDArray[np.float32]
    magnitude: NDArray[np.float32]
    mask: NDArray[np.bool_]  # thinned edge pixels
    threshold: float


def find_edges(grey: NDArray[np.float32]) -> Edges:
    """Sobel gradients of the smoothed copy and the thinned edge pixels (see the module)."""
    smooth = Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.0))
    a = np.pad(np.asarray(smooth, dtype=np.float32), 1, mode="edge")
    gx = (a[:-2, 2:] + 2 * a[1:-1, 2:] + a[2:, 2:]) - (a[:-2, :-2] + 2 * a[1:-1, :-2] + a[2:, :-2])
    gy = (a[2:, :-2] + 2 * a[2:, 1:-1] + a[2:, 2:]) - (a[:-2, :-2] + 2 * a[:-2, 1:-1] + a[:-2, 2:])
    magnitude = np.hypot(gx, gy).astype(np.float32)
    threshold = max(EDGE_FLOOR, EDGE_SHARE * float(np.percentile(magnitude, 99.5)))
    # Non-maximum suppression along the gradient direction, quantised to 4 directions.
    angle = np.arctan2(gy, gx)
    sector = (np.round(angle / (np.pi / 4)).astype(np.int64)) % 4
    m = np.pad(magnitude, 1)
    h, w = magnitude.shape
    offsets = ((0, 1), (1, 1), (1, 0), (1, -1))  # (dy, dx) along the gradient for sectors 0..3
    keep = np.zeros_like(magnitude, dtype=bool)
    for index, (dy, dx) in enumerate(offsets):
        ahead = m[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]
        behind = m[1 - dy : 1 - dy + h, 1 - dx : 1 - dx + w]
        keep |= (sector == index) & (magnitude >= ahead) & (magnitude >= behind)
    mask = keep & (magnitude >= threshold)
    return Edges(gx.astype(np.float32), gy.astype(np.float32), magnitude, mask, threshold)


def hough_lines(edges: Edges, max_lines: int = MAX_LINES) -> NDArray[np.float64]:
    """The strongest oriented lines as rows ``(theta, rho)``: ``x cos(theta) + y sin(theta) = rho``, the
    normal ``(cos, sin)`` pointing to the brighter side."""
    ys, xs = np.nonzero(edges.mask)
    if len(xs) == 0:
        return np.zeros((0, 2))
    weight = np.minimum(edges.magnitude[ys, xs], 4.0 * edges.threshold).astype(np.float64)
    theta_pix = np.arctan2(edges.gy[ys, xs], edges.gx[ys, xs])
    h, w = edges.mask.shape
    diag = int(math.ceil(math.hypot(h, w)))
    n_theta = 360
    votes = np.zeros(n_theta * (2 * diag + 1))
    for step in (-2, -1, 0, 1, 2):
        theta_bin = (np.round(np.degrees(theta_pix)).astype(np.int64) + step) % n_theta
        theta = np.radians(theta_bin)
        rho = np.round(xs * np.cos(theta) + ys * np.sin(theta)).astype(np.int64) + diag
        votes += np.bincount(theta_bin * (2 * diag + 1) + rho, weights=weight, minlength=votes.size)
    acc = votes.reshape(n_theta, 2 * diag + 1)
    lines = []
    for _ in range(max_lines):
        index = int(np.argmax(acc))
        t, r = divmod(index, 2 * diag + 1)
        if acc[t, r] <= 0:
            break
        lines.append((math.radians(t), float(r - diag)))
        rows = np.arange(t - 2, t + 3) % n_theta
        acc[rows, max(0, r - 4) : r + 5] = 0.0
    return np.array(lines, dtype=np.float64).reshape(-1, 2)


def _intersect(l1: NDArray[np.float64], l2: NDArray[np.float64]) -> NDArray[np.float64]:
    """Intersections of line arrays (..., 2) as (theta, rho); NaN where parallel."""
    c1, s1, r1 = np.cos(l1[..., 0]), np.sin(l1[..., 0]), l1[..., 1]
    c2, s2, r2 = np.cos(l2[..., 0]), np.sin(l2[..., 0]), l2[..., 1]
    det = c1 * s2 - s1 * c2
    with np.errstate(divide="ignore", invalid="ignore"):
        x = (r1 * s2 - s1 * r2) / det
        y = (c1 * r2 - r1 * c2) / det
    bad = np.abs(det) < 1e-6
    x = np.where(bad, np.nan, x)
    y = np.where(bad, np.nan, y)
    return np.stack([x, y], axis=-1)


def _axis_angle(theta: NDArray[np.float64]) -> NDArray[np.float64]:
    """Line direction modulo 180 degrees, in degrees."""
    return np.degrees(theta) % 180.0


def _angle_between(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    d = np.abs(a - b) % 180.0
    return np.minimum(d, 180.0 - d)


def candidate_quads(lines: NDArray[np.float64], size: tuple[int, int], slack: float) -> NDArray[np.float64]:
    """Convex quads (N, 4, 2), corners TL, TR, BR, BL, closed by two pairs of roughly parallel lines."""
    width, height = size
    n = len(lines)
    if n < 4:
        return np.zeros((0, 4, 2))
    axis = _axis_angle(lines[:, 0])
    i, j = np.triu_indices(n, 1)
    parallel = _angle_between(axis[i], axis[j]) < MAX_PAIR_ANGLE
    # The two lines of a pair must be apart (at the photo's centre) by a film's side at least.
    centre = np.array([width / 2.0, height / 2.0])
    dist = np.abs(
        (centre[0] * np.cos(lines[i, 0]) + centre[1] * np.sin(lines[i, 0]) - lines[i, 1])
        - (
            np.sign(np.cos(lines[i, 0] - lines[j, 0]))
            * (centre[0] * np.cos(lines[j, 0]) + centre[1] * np.sin(lines[j, 0]) - lines[j, 1])
        )
    )
    min_side = math.sqrt(MIN_AREA_SHARE * width * height) * 0.5
    pairs = np.stack([i, j], axis=1)[parallel & (dist > min_side)]
    if len(pairs) < 2:
        return np.zeros((0, 4, 2))
    pair_axis = _axis_angle(lines[pairs[:, 0], 0])
    a, b = np.triu_indices(len(pairs), 1)
    ok = _angle_between(pair_axis[a], pair_axis[b]) > 45.0
    a, b = a[ok], b[ok]
    if len(a) == 0:
        return np.zeros((0, 4, 2))
    p, q = pairs[a], pairs[b]
    # Corners: each line of pair p meets each line of pair q.
    pts = np.stack(
        [
            _intersect(lines[p[:, 0]], lines[q[:, 0]]),
            _intersect(lines[p[:, 0]], lines[q[:, 1]]),
            _intersect(lines[p[:, 1]], lines[q[:, 1]]),
            _intersect(lines[p[:, 1]], lines[q[:, 0]]),
        ],
        axis=1,
    )
    finite = np.isfinite(pts).all(axis=(1, 2))
    lo = -slack * np.array([width, height])
    hi = (1 + slack) * np.array([width, height])
    inside = ((pts >= lo) & (pts <= hi)).all(axis=(1, 2))
    return _plausible(pts[finite & inside], width * height)


def _plausible(pts: NDArray[np.float64], frame_area: float) -> NDArray[np.float64]:
    """The cyclic corner sets ``pts`` (N, 4, 2) that make a film's quad, ordered TL, TR, BR, BL."""
    if len(pts) == 0:
        return np.zeros((0, 4, 2))
    x, y = pts[..., 0], pts[..., 1]
    area = 0.5 * ((x * np.roll(y, -1, axis=1)).sum(axis=1) - (np.roll(x, -1, axis=1) * y).sum(axis=1))
    pts = np.where((area < 0)[:, None, None], pts[:, ::-1], pts)  # clockwise on screen
    start = np.argmin(pts[..., 0] + pts[..., 1], axis=1)
    index = (start[:, None] + np.arange(4)[None, :]) % 4
    pts = np.take_along_axis(pts, index[..., None], axis=1)
    edges = np.roll(pts, -1, axis=1) - pts
    cross = edges[..., 0] * np.roll(edges[..., 1], -1, axis=1) - edges[..., 1] * np.roll(
        edges[..., 0], -1, axis=1
    )
    convex = (cross > 0).all(axis=1)
    sides = np.linalg.norm(edges, axis=-1)
    ratio_ok = (sides[:, 0] <= MAX_SIDE_RATIO * sides[:, 2]) & (sides[:, 2] <= MAX_SIDE_RATIO * sides[:, 0])
    ratio_ok &= (sides[:, 1] <= MAX_SIDE_RATIO * sides[:, 3]) & (sides[:, 3] <= MAX_SIDE_RATIO * sides[:, 1])
    pair_ratio = (sides[:, 0] + sides[:, 2]) / np.maximum(sides[:, 1] + sides[:, 3], 1e-9)
    ratio_ok &= (pair_ratio <= MAX_ASPECT) & (pair_ratio >= 1.0 / MAX_ASPECT)
    # Interior angle at corner k between the incoming and outgoing sides.
    incoming = -np.roll(edges, 1, axis=1)
    cos = (incoming * edges).sum(axis=-1) / (np.roll(sides, 1, axis=1) * sides + 1e-12)
    angles = np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))
    big = np.abs(area) >= MIN_AREA_SHARE * frame_area
    keep = convex & ratio_ok & big & (angles.min(axis=1) >= MIN_CORNER_ANGLE)
    return np.ascontiguousarray(pts[keep])


def _hits(
    points: NDArray[np.float64], outward: NDArray[np.float64], edges: Edges, offsets: tuple[float, ...]
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Whether an edge crosses each sample point (N, 4, S, 2) brighter outside / brighter inside,
    within ``offsets`` px across the side; samples outside the frame have no edge."""
    h, w = edges.magnitude.shape
    hit_out = np.zeros(points.shape[:3], dtype=bool)
    hit_in = np.zeros(points.shape[:3], dtype=bool)
    for offset in offsets:
        probe = points + offset * outward[:, :, None, :]
        xr, yr = np.round(probe[..., 0]), np.round(probe[..., 1])
        valid = (xr >= 0) & (xr <= w - 1) & (yr >= 0) & (yr <= h - 1)
        x = np.clip(xr, 0, w - 1).astype(np.int64)
        y = np.clip(yr, 0, h - 1).astype(np.int64)
        across = edges.gx[y, x] * outward[:, :, None, 0] + edges.gy[y, x] * outward[:, :, None, 1]
        hit_out |= valid & (across >= edges.threshold)
        hit_in |= valid & (-across >= edges.threshold)
    return hit_out, hit_in


def side_support(
    quads: NDArray[np.float64],
    edges: Edges,
    samples: int = SIDE_SAMPLES,
    offsets: tuple[float, ...] = (-2.0, -1.0, 0.0, 1.0, 2.0),
) -> tuple[NDArray[np.float64], NDArray[np.int64], NDArray[np.float64], NDArray[np.float64]]:
    """Per quad and side (N, 4): the share of samples backed by an edge of the side's better polarity;
    that polarity (+1: brighter outside, -1: brighter inside); the share of samples on the side's
    continuation past both corners (2-8% of its length) backed by an edge of that polarity (a film's
    side stops at its corners); and the share backed by an edge of either polarity."""
    if len(quads) == 0:
        empty = np.zeros((0, 4))
        return empty, np.zeros((0, 4), dtype=np.int64), empty, empty
    start = quads
    end = np.roll(quads, -1, axis=1)
    direction = end - start
    length = np.linalg.norm(direction, axis=-1, keepdims=True) + 1e-12
    # Corners are clockwise on screen (y down): the outward normal of side (dx, dy) is (dy, -dx).
    outward = np.stack([direction[..., 1], -direction[..., 0]], axis=-1) / length  # (N,4,2)
    t = np.linspace(0.08, 0.92, samples)
    points = start[:, :, None, :] + direction[:, :, None, :] * t[None, None, :, None]  # (N,4,S,2)
    hit_out, hit_in = _hits(points, outward, edges, offsets)
    out_share = hit_out.mean(axis=2)
    in_share = hit_in.mean(axis=2)
    # Each side takes its own polarity: a film is darker than a light box along most of its outline,
    # but its bright abdomen may reach the bottom edge over a darker surround.
    polarity = np.where(out_share >= in_share, 1, -1)
    support = np.maximum(out_share, in_share)
    beyond = np.r_[np.linspace(-0.08, -0.02, 4), np.linspace(1.02, 1.08, 4)]
    ext_points = start[:, :, None, :] + direction[:, :, None, :] * beyond[None, None, :, None]
    ext_out, ext_in = _hits(ext_points, outward, edges, (-1.0, 0.0, 1.0))
    extension = np.where(polarity == 1, ext_out.mean(axis=2), ext_in.mean(axis=2))
    return support, polarity, extension, (hit_out | hit_in).mean(axis=2)


def _combine(support: NDArray[np.float64]) -> NDArray[np.float64]:
    """A quad's score from its sides' support: the mean averaged with the weakest side."""
    return 0.5 * support.mean(axis=-1) + 0.5 * support.min(axis=-1)


def _inside_masks(quads: NDArray[np.float64], xs: NDArray[np.float64], ys: NDArray[np.float64]) -> NDArray:
    """(N, P) whether each point lies inside each clockwise quad."""
    start = quads[:, :, None, :]
    end = np.roll(quads, -1, axis=1)[:, :, None, :]
    cross = (end[..., 0] - start[..., 0]) * (ys[None, None, :] - start[..., 1]) - (
        end[..., 1] - start[..., 1]
    ) * (xs[None, None, :] - start[..., 0])
    return (cross >= 0).all(axis=1)


def _shrunk(quad: NDArray[np.float64], share: float) -> NDArray[np.float64]:
    centre = quad.mean(axis=0)
    return centre + (quad - centre) * (1.0 - share)


@dataclass(frozen=True)
class _Scored:
    quads: NDArray[np.float64]  # (N, 4, 2) work coordinates
    scores: NDArray[np.float64]  # from each side's edges of either polarity
    consistent: NDArray[np.float64]  # the same from each side's better polarity only
    polarity: NDArray[np.int64]  # (N, 4) per side


def _score(quads: NDArray[np.float64], edges: Edges) -> _Scored:
    """Score each quad by the edges along its sides, of either polarity: a film's side may be darker
    than its surround along one stretch and brighter along another (on a monitor, the dark corners of
    the radiograph and its bright abdomen both meet the viewer's grey background)."""
    if len(quads) > COARSE_KEEP:  # a cheap first pass keeps the most promising quads
        _, _, _, coarse = side_support(quads, edges, 12, (-1.0, 0.0, 1.0))
        quads = quads[np.argsort(-_combine(coarse))[:COARSE_KEEP]]
    support, polarity, extension, either = side_support(quads, edges)
    if not len(quads):
        return _Scored(quads, np.zeros(0), np.zeros(0), polarity)
    penalty = EXTENSION_PENALTY * extension.mean(axis=1)
    return _Scored(quads, _combine(either) - penalty, _combine(support) - penalty, polarity)


def _sample_grid(quad: NDArray[np.float64], edges: Edges) -> tuple[NDArray[np.intp], NDArray[np.intp]] | None:
    """Every second pixel (x, y) of ``quad``'s bounding box clipped to the edge map, or None when empty."""
    x0, y0 = np.floor(quad.min(axis=0)).astype(int)
    x1, y1 = np.ceil(quad.max(axis=0)).astype(int)
    h, w = edges.mask.shape
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w - 1), min(y1, h - 1)
    if x1 <= x0 or y1 <= y0:
        return None
    yy, xx = np.mgrid[y0 : y1 + 1 : 2, x0 : x1 + 1 : 2]
    return xx.ravel(), yy.ravel()


def _inside_edge_share(quad: NDArray[np.float64], edges: Edges) -> float:
    """Share of the quad's inner 80% (by side) that are edge pixels: a film has structure inside."""
    inner = _shrunk(quad, 0.1)
    grid = _sample_grid(inner, edges)
    if grid is None:
        return 0.0
    xs, ys = grid
    inside = _inside_masks(inner[None], xs.astype(float), ys.astype(float))[0]
    if not inside.any():
        return 0.0
    return float(edges.mask[ys[inside], xs[inside]].mean())


def _ring_edge_share(outer: NDArray[np.float64], inner: NDArray[np.float64], edges: Edges) -> float:
    """Share of edge pixels between ``outer`` and ``inner`` (bands along both outlines left out)."""
    shrunk = _shrunk(outer, 0.04)
    grown = inner.mean(axis=0) + (inner - inner.mean(axis=0)) * 1.06
    grid = _sample_grid(shrunk, edges)
    if grid is None:
        return 0.0
    xs, ys = grid
    masks = _inside_masks(np.stack([shrunk, grown]), xs.astype(float), ys.astype(float))
    ring = masks[0] & ~masks[1]
    if ring.sum() < 20:
        return 0.0
    return float(edges.mask[ys[ring], xs[ring]].mean())


def _overlaps(quads: NDArray[np.float64], size: tuple[int, int]) -> tuple[NDArray, NDArray]:
    """Pairwise intersection areas (N, N) and areas (N,) of quads, on a coarse grid of the frame."""
    width, height = size
    gx, gy = np.meshgrid(np.linspace(0, width, 64), np.linspace(0, height, 48))
    masks = _inside_masks(quads, gx.ravel(), gy.ravel()).astype(np.float64)
    inter = masks @ masks.T
    return inter, np.diag(inter).copy()


def _select(scored: _Scored, edges: Edges, size: tuple[int, int], source: str) -> int:
    """Index of the film's quad among ``scored`` (see the module, step 5); refuses two films."""
    order = [int(k) for k in np.argsort(-scored.scores) if scored.scores[k] >= MIN_SCORE][:60]
    if not order:
        return -1
    quads = scored.quads[order]
    inter, area = _overlaps(quads, size)
    # Merge near-duplicates (the same edges found twice, a light box's housing and its panel): keep the
    # inner one when they score alike.
    kept: list[int] = []
    for a in range(len(order)):
        twins = [
            i
            for i, k in enumerate(kept)
            if inter[a, k] / max(area[a] + area[k] - inter[a, k], 1.0) > DUPLICATE_IOU
        ]
        if not twins:
            kept.append(a)
            continue
        i = twins[0]
        # (``a`` scores no better than its twin: candidates come best first.) A twin that scores alike
        # (:data:`TWIN_SCORE_MARGIN`) wins when its sides hold one polarity better: an edge inside the
        # film (the body's outline) next to a side backs a quad in the other polarity as well as the
        # film's side does. Alike in that too, the inner one wins.
        if scored.scores[order[a]] < scored.scores[order[kept[i]]] - TWIN_SCORE_MARGIN:
            continue
        mine, theirs = scored.consistent[order[a]], scored.consistent[order[kept[i]]]
        if mine > theirs + 0.01 or (mine >= theirs - 0.01 and area[a] < area[kept[i]]):
            kept[i] = a
    filmish = [a for a in kept if _inside_edge_share(quads[a], edges) >= MIN_INSIDE_EDGES]
    # A quad that holds another candidate with a plain ring between the two is the light box, screen
    # or window around the film; a quad whose ring has structure is a film holding part of itself.
    density = {a: _inside_edge_share(quads[a], edges) for a in filmish}
    inner = [
        a
        for a in filmish
        if not any(
            b != a
            and area[b] < 0.85 * area[a]
            and inter[a, b] >= 0.9 * area[b]
            and scored.scores[order[b]] >= scored.scores[order[a]] - NEST_MARGIN
            and _ring_edge_share(quads[a], quads[b], edges) < RING_SHARE * density[b]
            for b in filmish
        )
    ]
    if not inner:
        return -1
    inner.sort(key=lambda a: -scored.scores[order[a]])
    top = inner[0]
    best = scored.scores[order[top]]
    # Two films: two strong, similar-sized, film-like quads side by side (whichever quad came first:
    # the outline around both films can score as well as either film).
    strong = [a for a in filmish if scored.scores[order[a]] >= TWO_FILM_SCORE_SHARE * best]
    for i, a in enumerate(strong):
        for b in strong[i + 1 :]:
            disjoint = inter[a, b] <= 0.1 * min(area[a], area[b])
            similar = min(area[a], area[b]) >= TWO_FILM_AREA_SHARE * max(area[a], area[b])
            if disjoint and similar:
                raise PhotoRefusedError(
                    source,
                    "two_films",
                    "the photo shows two films (or two film-like rectangles)",
                    "photograph one film at a time, with nothing else on the light box",
                    {"confidence": float(best), "second_confidence": float(scored.scores[order[b]])},
                )
    return order[top]


def _border_lines(size: tuple[int, int]) -> NDArray[np.float64]:
    width, height = size
    return np.array([[0.0, 0.0], [0.0, width - 1.0], [math.pi / 2, 0.0], [math.pi / 2, height - 1.0]])


def _cut_off(lines: NDArray[np.float64], edges: Edges, size: tuple[int, int]) -> float:
    """Best score of a film-like quad closed partly by the photo's border (0 when none): the film runs
    out of the frame. Border sides are not scored; the others must be backed by edges."""
    width, height = size
    quads = candidate_quads(np.vstack([lines, _border_lines(size)]), size, 0.002)
    if len(quads) == 0:
        return 0.0
    start, end = quads, np.roll(quads, -1, axis=1)
    on_border = np.zeros(quads.shape[:2], dtype=bool)
    for axis, value in ((0, 0.0), (0, width - 1.0), (1, 0.0), (1, height - 1.0)):
        on_border |= (np.abs(start[..., axis] - value) < 1.5) & (np.abs(end[..., axis] - value) < 1.5)
    count = on_border.sum(axis=1)
    pick = (count >= 1) & (count <= 2)
    if not pick.any():
        return 0.0
    quads, on_border = quads[pick], on_border[pick]
    _, _, _, support = side_support(quads, edges)  # either polarity, as the film's score (_score)
    real = np.where(on_border, np.inf, support).min(axis=1)
    mean = np.where(on_border, 0.0, support).sum(axis=1) / (~on_border).sum(axis=1)
    score = 0.5 * real + 0.5 * mean
    area = np.array([quad_area(q) for q in quads]) / (width * height)
    best = 0.0
    for k in np.argsort(-score)[:10]:
        if score[k] >= 0.7 and area[k] >= 0.1 and _inside_edge_share(quads[k], edges) >= MIN_INSIDE_EDGES:
            best = max(best, float(score[k]))
    return best


def _fit_side(p: NDArray, q: NDArray, outward: NDArray, polarity: int, edges: Edges) -> NDArray | None:
    """Least-squares line ``(point, direction)`` through the edge pixels along side ``p -> q``."""
    h, w = edges.mask.shape
    lo = np.floor(np.minimum(p, q) - 4).astype(int)
    hi = np.ceil(np.maximum(p, q) + 4).astype(int)
    x0, y0 = max(lo[0], 0), max(lo[1], 0)
    x1, y1 = min(hi[0], w - 1), min(hi[1], h - 1)
    if x1 <= x0 or y1 <= y0:
        return None
    sub = edges.mask[y0 : y1 + 1, x0 : x1 + 1]
    ys, xs = np.nonzero(sub)
    xs = xs + x0
    ys = ys + y0
    direction = (q - p) / (np.linalg.norm(q - p) + 1e-12)
    rel = np.c_[xs - p[0], ys - p[1]]
    along = rel @ direction
    across = rel @ outward
    length = float(np.linalg.norm(q - p))
    gx, gy = edges.gx[ys, xs], edges.gy[ys, xs]
    normal_grad = (gx * outward[0] + gy * outward[1]) * polarity
    mag = edges.magnitude[ys, xs] + 1e-6
    near = (np.abs(across) <= 3.0) & (along > 0.05 * length) & (along < 0.95 * length)
    aligned = normal_grad >= 0.9 * mag  # gradient within ~25 degrees of the side's normal
    use = near & aligned
    if use.sum() < 8:
        return None
    pts = np.c_[xs[use], ys[use]].astype(np.float64)
    weight = mag[use]
    centre = (pts * weight[:, None]).sum(axis=0) / weight.sum()
    cov = ((pts - centre) * weight[:, None]).T @ (pts - centre) / weight.sum()
    _, vectors = np.linalg.eigh(cov)
    fitted = vectors[:, 1]
    return np.array([centre, fitted if np.dot(fitted, direction) >= 0 else -fitted])


def refine(quad: NDArray[np.float64], polarity: NDArray[np.int64], edges: Edges) -> NDArray[np.float64]:
    """Corners from least-squares lines fitted to each side's edge pixels (step 6); unchanged where a
    side has too few edge pixels or the refit moves a corner by more than :data:`MAX_REFINE_SHIFT`."""
    lines = []
    for k in range(4):
        p, q = quad[k], quad[(k + 1) % 4]
        direction = (q - p) / (np.linalg.norm(q - p) + 1e-12)
        outward = np.array([direction[1], -direction[0]])
        fitted = _fit_side(p, q, outward, int(polarity[k]), edges)
        lines.append(fitted if fitted is not None else np.array([p, direction]))
    corners = []
    for k in range(4):
        (p1, d1), (p2, d2) = lines[k - 1], lines[k]
        matrix = np.array([d1, -d2]).T
        if abs(np.linalg.det(matrix)) < 1e-9:
            return quad
        s = np.linalg.solve(matrix, p2 - p1)
        corners.append(p1 + s[0] * d1)
    refined = np.array(corners)
    if np.max(np.linalg.norm(refined - quad, axis=1)) > MAX_REFINE_SHIFT:
        return quad
    return refined


def detect_quad(photo: Image.Image, source: str = "photo", work: WorkingCopy | None = None) -> FilmQuad:
    """The film's quad in ``photo`` (RGB), in photo pixels; raises :class:`PhotoRefusedError` for no film,
    two films, or a film running out of the frame. ``work``: its working copy, when already made."""
    if work is None:
        work, _ = working_copy(photo)
    edges = find_edges(work.grey)
    h, w = work.grey.shape
    lines = hough_lines(edges)
    quads = candidate_quads(lines, (w, h), FRAME_SLACK)
    scored = _score(quads, edges)
    index = _select(scored, edges, (w, h), source)
    weak = index < 0 or scored.scores[index] < CLEAR_SCORE
    if weak:
        cut = _cut_off(lines, edges, (w, h))
        if cut > (scored.scores[index] if index >= 0 else 0.0):
            raise PhotoRefusedError(
                source,
                "cut_off",
                "the film runs out of the photo (part of it is cut off)",
                "move back so that the whole film, with its four corners, is in the photo",
                {"confidence": cut},
            )
    if index < 0:
        best = float(scored.scores.max()) if len(scored.scores) else 0.0
        raise PhotoRefusedError(
            source,
            "no_film",
            "no film found in the photo (no four straight edges around a radiograph)",
            "photograph the whole film flat on a light box, a window or a screen, with its four corners "
            "in view",
            {"confidence": best},
        )
    quad = refine(scored.quads[index], scored.polarity[index], edges)
    return FilmQuad(work.to_photo(quad), float(scored.scores[index]))
