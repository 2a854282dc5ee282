"""Image-quality checks of the input gate: is the picture itself fit to be read? (numpy + Pillow only)

Each check measures one thing on a small working copy of the decoded image (128 px, and 64 px for
the template) and refuses only clear cases, with what is wrong in plain words and the fix:

* ``exposure``: share of the frame at pure black or pure white (mostly blank or saturated);
* ``contrast``: spread of grey levels between the 5th and 95th percentiles (almost no contrast);
* ``polarity``: how much better the image fits the mean training image (the *template*) than its
  negative does (bones dark and lungs bright: inverted);
* ``orientation``: how much better the image fits the template as it is than turned by 90, 180
  or 270 degrees (rotated);
* ``sharpness``: high-frequency energy (mean absolute Laplacian) per unit of contrast (blurred);
* ``framing``: share of the frame the picture fills once large uniform borders are set aside
  (a film pasted into a screenshot, a letterbox, a flat frame around a smaller image).

The template and every threshold come from in-distribution data at export
(``quantize/quality_fit.py``): the template is the mean of the training split's working copies,
each threshold the looser of an extreme-value floor set on the validation split and a fixed
"clear case" bound, so an in-distribution image is essentially never refused (docs/input-gate.md,
"Image-quality checks"). A bundle without the quality record has no quality checks.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from cxr_core.errors import CxrEdgeError

if TYPE_CHECKING:
    from cxr_core.bundle import Bundle
    from cxr_core.gate_signals import SignalDecision
    from cxr_core.imaging_common import DecodedImage

logger = logging.getLogger(__name__)

#: Side of the working copy every check but the template ones measures (the image is squeezed to it).
WORK_SIZE = 128
#: Side of the template and of the copy correlated with it.
TEMPLATE_SIZE = 64
#: Pixels of the 64 px copy left out at each edge when it is correlated with the template.
CENTRE_MARGIN = 5
#: A working-copy pixel this close to 0 or 1 counts as pure black / pure white.
EXTREME_TOLERANCE = 2.0 / 255.0
#: A line of the working copy is uniform when this share of its pixels lies within
#: :data:`UNIFORM_TOLERANCE` of the line's median.
UNIFORM_SHARE = 0.95
UNIFORM_TOLERANCE = 4.0 / 255.0
#: ... or within this share of the image's grey-level spread, when that is smaller (a faint image).
UNIFORM_CONTRAST_SHARE = 0.02
#: Uniform lines at most this many (of the 64 px copy) inside the picture do not split it.
GAP_LINES = 2
#: A border thinner than this share of the side is ignored (collimation, padding, a scanner's margin).
THIN_SHARE = 0.08
#: A border counts only when this share of the picture's first line differs from it (a straight edge).
STRAIGHT_SHARE = 0.8
#: How many of the picture's first lines (of the 64 px copy) the straight-edge test looks at.
EDGE_LINES = 3

#: The checks, in the order they run and report.
CHECKS: tuple[str, ...] = ("exposure", "contrast", "polarity", "orientation", "sharpness", "framing")
#: Not a check: the correlation with the template of the image in its best orientation and polarity.
#: Below its threshold the picture is not chest-like in any orientation, so polarity and orientation
#: are not judged ("rotate the image" would be wrong advice for a photograph); the learned signals
#: answer for it.
TEMPLATE_FIT = "template_fit"
#: Checks refused when the score is above the threshold (the others refuse below it).
REFUSE_ABOVE: frozenset[str] = frozenset({"exposure"})
#: "Clear case" bounds: a threshold is never tighter than these, whatever the validation images say.
#: Real films have black backgrounds, faint exposures, a few degrees of tilt and collimation borders
#: that phantoms lack; only pictures clearly broken in one way are refused.
CLEAR_BOUNDS: dict[str, float] = {
    "exposure": 0.6,  # more than 60% of the frame pure black or white
    "contrast": 0.08,  # 5th-95th percentile spread under 8% of the grey range (about 20 levels)
    "polarity": -0.15,  # the negative fits the template clearly better than the image
    "orientation": -0.1,  # another quarter turn fits the template clearly better
    "framing": 0.65,  # the picture fills less than 65% of the frame
    TEMPLATE_FIT: 0.5,  # polarity and orientation are judged from this correlation up (or a lower floor)
}
#: Checks whose in-distribution floor is scaled down by this margin (no absolute clear bound exists:
#: sharpness depends on the resolution and texture of the training images).
RELATIVE_MARGIN: dict[str, float] = {"sharpness": 0.5, "contrast": 0.5}
#: Checks whose statistic is positive and skewed: their floor is fitted on the logarithm.
LOG_FITTED: frozenset[str] = frozenset({"sharpness", "contrast"})
#: Fewer validation images than this cannot set the thresholds: the bundle gets no quality checks.
MIN_VALIDATION_IMAGES = 10

REASONS: dict[str, tuple[str, str | None]] = {
    "exposure": (
        "the image is mostly blank or saturated ({score:.0%} of it pure black or white)",
        "check the exposure, or the window used to export the image",
    ),
    "contrast": (
        "the image has almost no contrast (grey-level spread {score:.3f}, below {threshold:.3f})",
        "check the exposure, or the window used to export the image",
    ),
    "polarity": ("the image looks inverted (bones dark, lungs bright)", "invert the image (negative)"),
    "orientation": (
        "the image looks rotated ({turn} degrees clockwise from upright)",
        "rotate the image {fix_turn} degrees clockwise",
    ),
    "sharpness": (
        "the image is strongly blurred (sharpness {score:.3f}, below {threshold:.3f})",
        "retake the picture or use the original image file",
    ),
    "framing": (
        "the radiograph fills only {score:.0%} of the frame (a screenshot, a letterbox, a photo of a "
        "screen?)",
        "crop the image to the film",
    ),
}


class ImageQualityError(CxrEdgeError, ValueError):
    """The quality checks cannot be fitted or applied (too few images, a template of another shape)."""


def _block_sums(
    array: NDArray[np.float32], factor: int, axis: int
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Sums of each ``factor`` consecutive lines along ``axis`` (0: rows, 1: columns), by strided
    whole-line additions, and how many lines each sum holds (a last partial block sums what is left)."""
    length = array.shape[axis]
    full = (length // factor) * factor

    def lines(part: slice) -> NDArray[np.float32]:
        return array[part] if axis == 0 else array[:, part]

    first = lines(slice(0, full, factor))
    # the first two lines added into a new array (not a copy added to in place: one pass fewer)
    sums = first + lines(slice(1, full, factor)) if factor >= 2 else first.copy()
    for k in range(2, factor):
        sums += lines(slice(k, full, factor))
    counts = [float(factor)] * (length // factor)
    if full < length:
        sums = np.concatenate(
            [sums, lines(slice(full, None)).sum(axis=axis, dtype=np.float32, keepdims=True)], axis
        )
        counts.append(float(length - full))
    return sums, np.asarray(counts, dtype=np.float32)


def box_reduce(pixels: NDArray[np.float32], factor: int) -> NDArray[np.float32]:
    """The mean of each ``factor`` x ``factor`` block, as Pillow's ``Image.reduce(factor)`` gives it (a
    last row or column of blocks the image does not fill averages the pixels it has), to 2e-7: a
    mean that lands exactly on a check's tolerance may fall the other side of it (the exposure
    share of the demo's phantoms moved by up to 9e-4; no verdict changed).

    Strided sums of whole rows, then of columns: one pass over the image, 2-2.5x faster than
    converting it to a Pillow image and reducing it there (256 px: 0.07 against 0.18 ms; 2,048 px:
    2.2 against 5.0 ms), work that runs beside the model or the preprocessing.
    """
    rows, row_counts = _block_sums(pixels, factor, axis=0)
    sums, column_counts = _block_sums(rows, factor, axis=1)
    height, width = pixels.shape
    if height % factor == 0 and width % factor == 0:
        # whole blocks only (the 256 px test split halved, a 1,024 px film by 8): every count is
        # the factor, so one division in place gives the same means (0.04 against 0.07 ms at 256 px)
        sums /= np.float32(factor * factor)
        return sums
    return sums / (row_counts[:, None] * column_counts)


def _resize(pixels: NDArray[np.floating], size: int) -> NDArray[np.float32]:
    reduced = np.ascontiguousarray(pixels, dtype=np.float32)
    factor = min(reduced.shape) // size
    if factor >= 2:  # a cheap box reduction first (a 1024 px image to 128 px in one pass)
        reduced = box_reduce(reduced, factor)
    if reduced.shape == (size, size):  # Pillow's resize to the same size is a copy
        return reduced
    image = Image.fromarray(reduced, mode="F")
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float32)


def working_copy(pixels: NDArray[np.floating]) -> NDArray[np.float32]:
    """The image squeezed to :data:`WORK_SIZE` square, clipped to [0, 1]."""
    work = _resize(pixels, WORK_SIZE)
    if work.flags.writeable and not np.may_share_memory(work, pixels):  # a box reduction's new array
        return np.clip(work, 0.0, 1.0, out=work)
    return np.clip(work, 0.0, 1.0)  # never the caller's image (already WORK_SIZE square) in place


def small_copy(work: NDArray[np.float32]) -> NDArray[np.float32]:
    """The working copy averaged down to :data:`TEMPLATE_SIZE` (2 x 2 blocks).

    Four strided sums instead of a reshaped mean: 8x faster on a phone-class core, equal to the
    block mean up to float32 rounding (1e-7).
    """
    if work.shape != (WORK_SIZE, WORK_SIZE) or WORK_SIZE != 2 * TEMPLATE_SIZE:
        factor = WORK_SIZE // TEMPLATE_SIZE
        return work.reshape(TEMPLATE_SIZE, factor, TEMPLATE_SIZE, factor).mean(axis=(1, 3))
    total = work[0::2, 0::2] + work[1::2, 0::2] + work[0::2, 1::2] + work[1::2, 1::2]
    return total * np.float32(0.25)


def template_copy(work: NDArray[np.float32]) -> NDArray[np.float32]:
    """The working copy at :data:`TEMPLATE_SIZE`, standardised (zero mean, unit variance)."""
    return standardise(small_copy(work))


def standardise(values: NDArray[np.floating]) -> NDArray[np.float32]:
    x = np.asarray(values, dtype=np.float32)
    spread = float(x.std())
    return (x - x.mean()) / spread if spread > 1e-6 else np.zeros_like(x)


def fit_template(copies: list[NDArray[np.float32]]) -> NDArray[np.float32]:
    """The template: the standardised mean of standardised template copies of the training images."""
    if not copies:
        raise ImageQualityError("no training images; the template needs at least one")
    return standardise(np.mean(np.stack(copies), axis=0))


def _centre(image: NDArray[np.float32]) -> NDArray[np.float32]:
    """The central part the template is compared on, standardised (borders, markers and collimation
    strips at the edge of a film would otherwise dominate the correlation)."""
    m, n = CENTRE_MARGIN, image.shape[0] - CENTRE_MARGIN
    return standardise(image[m:n, m:n])


@functools.lru_cache(maxsize=8)
def _turned_templates(template_bytes: bytes, side: int) -> NDArray[np.float64]:
    """``(4, n)``: the template's centre turned 0, 90, 180 and 270 degrees counter-clockwise, one row
    each, so that row ``k`` against the image equals the image turned ``k`` quarters clockwise
    against the template (a turn moves both pixels of every pair alike)."""
    template = np.frombuffer(template_bytes, dtype=np.float32).reshape(side, side)
    t = _centre(template)
    turned = np.stack([np.rot90(t, k).ravel() for k in range(4)]).astype(np.float64)
    turned.setflags(write=False)
    return turned


def turned_templates(template: NDArray[np.float32]) -> NDArray[np.float64]:
    """The template's four turns (:func:`_turned_templates`), made once per template's contents."""
    template = np.ascontiguousarray(template, dtype=np.float32)
    return _turned_templates(template.tobytes(), template.shape[0])


def _turn_correlations(
    small: NDArray[np.float32], template: NDArray[np.float32], turned: NDArray[np.float64] | None = None
) -> NDArray[np.float64]:
    """Correlation with the template of the image turned 0, 90, 180 and 270 degrees clockwise.

    One matrix-vector product against the template's four turns (made once per template): 8x
    fewer numpy calls than turning the image four times, the same values up to float rounding.
    ``turned``: the template's :func:`turned_templates`, when the caller keeps them (the quality
    checks do: looking them up by the template's bytes took 8 us of every image)."""
    if turned is None:
        turned = turned_templates(template)
    z = _centre(small).ravel()
    # numpy's own loop, not BLAS: this runs beside the model, where OpenBLAS's worker threads keep
    # spinning after a call and take the cores the inference needs
    return np.einsum("kn,n->k", turned, z.astype(np.float64)) / z.size


def _median(values: NDArray[np.float32], axis: int | None = None) -> NDArray[np.float32]:
    """``np.median`` (keeping the reduced axis) by one sort: the same values, without its per-call
    overhead, which dominated the quality checks' time on a 64 px copy."""
    ordered = np.sort(values, axis=axis)
    if axis is None:
        ordered, axis = ordered[None], 1
    n = ordered.shape[axis]
    upper = np.take(ordered, [n // 2], axis=axis)
    if n % 2:
        return upper
    lower = np.take(ordered, [n // 2 - 1], axis=axis)
    return (lower + upper) * np.float32(0.5)


def percentiles(values: NDArray[np.float32], low: float, high: float) -> tuple[float, float]:
    """The ``low`` and ``high`` percentiles of ``values`` as ``np.percentile``'s default (linear)
    method gives them, from one sort (np.percentile's multi-point partition was 4x slower here)."""
    ordered = np.sort(values, axis=None)
    last = ordered.size - 1
    out = []
    for q in (low, high):
        position = q / 100.0 * last
        below = int(math.floor(position))
        a, b = float(ordered[below]), float(ordered[min(below + 1, last)])
        t = position - below
        out.append(b - (b - a) * (1.0 - t) if t >= 0.5 else a + (b - a) * t)
    return out[0], out[1]


def _uniform_lines(work: NDArray[np.float32], axis: int, tolerance: float) -> NDArray[np.bool_]:
    """Per row (axis=1) or column (axis=0): is the line uniform?"""
    median = _median(work, axis=axis)
    close = np.abs(work - median) <= tolerance
    return close.mean(axis=axis) >= UNIFORM_SHARE


def _content_span(uniform: NDArray[np.bool_]) -> tuple[int, int]:
    """First and one-past-last index of the picture along one side, given its uniform lines.

    The picture is the longest run of non-uniform lines (uniform gaps of at most
    :data:`GAP_LINES` inside it closed): an app's title bar or side bar beside a pasted film is
    a shorter run and falls into the border.
    """
    uniform = np.asarray(uniform, dtype=bool)
    if not uniform.any():  # the common case, a picture filling the frame: the whole side
        return (0, int(uniform.size))
    busy = np.flatnonzero(~uniform)
    if busy.size == 0:
        return (0, 0)
    # runs of busy lines, split where more than GAP_LINES uniform lines lie between two of them
    breaks = np.flatnonzero(np.diff(busy) - 1 > GAP_LINES)
    starts = busy[np.concatenate(([0], breaks + 1))]
    ends = busy[np.concatenate((breaks, [busy.size - 1]))] + 1
    longest = int(np.argmax(ends - starts))  # the first of equally long runs
    return int(starts[longest]), int(ends[longest])


def _edge_is_straight(border: NDArray[np.float32], inner: NDArray[np.float32], tolerance: float) -> bool:
    """Does the picture meet the border along a straight line (a pasted rectangle, not a silhouette)?

    ``inner`` holds the picture's first lines (one per row), from the border inward: at most
    pixels of the edge, some of them differ from the border's level.
    """
    level = float(_median(border).ravel()[0])
    differs = (np.abs(inner - level) > tolerance).any(axis=0)
    return bool(differs.mean() >= STRAIGHT_SHARE)


def content_fraction(work: NDArray[np.float32], contrast: float = 1.0) -> float:
    """Share of the frame the picture fills once uniform borders are set aside.

    A border counts only where it is at least :data:`THIN_SHARE` of the side thick and the picture
    meets it along a straight edge: a radiograph's own black background around the curved body
    (and thin collimation or padding strips) is part of the picture. ``contrast`` (the image's
    grey-level spread) scales the tolerance of "uniform" down for a faint image.
    """
    tol = min(UNIFORM_TOLERANCE, UNIFORM_CONTRAST_SHARE * contrast)
    size = work.shape[0]
    rows, cols = (0, size), (0, work.shape[1])
    for _ in range(2):  # rows within the picture's columns, then columns within its rows, twice
        previous = cols
        rows = _content_span(_uniform_lines(work[:, cols[0] : cols[1]], 1, tol))
        if rows[1] <= rows[0]:
            return 0.0
        cols = _content_span(_uniform_lines(work[rows[0] : rows[1]], 0, tol))
        if cols[1] <= cols[0]:
            return 0.0
        if cols == previous:  # the next pass would measure the same lines again
            break
    thin = THIN_SHARE * size
    depth = EDGE_LINES  # the picture's first lines: a resampled paste blends the first one
    (top, bottom), (left, right) = rows, cols
    # each side judged on the picture's own span, then the sides that are no frame dropped
    keep_top = top >= thin and _edge_is_straight(
        work[:top, left:right], work[top : top + depth, left:right], tol
    )
    keep_bottom = size - bottom >= thin and _edge_is_straight(
        work[bottom:, left:right], work[bottom - depth : bottom, left:right], tol
    )
    keep_left = left >= thin and _edge_is_straight(
        work[top:bottom, :left], work[top:bottom, left : left + depth].T, tol
    )
    keep_right = size - right >= thin and _edge_is_straight(
        work[top:bottom, right:], work[top:bottom, right - depth : right].T, tol
    )
    top, bottom = (top if keep_top else 0), (bottom if keep_bottom else size)
    left, right = (left if keep_left else 0), (right if keep_right else size)
    return (bottom - top) * (right - left) / float(work.size)


@dataclass(frozen=True)
class QualityStatistics:
    """Every check's statistic of one image (see the module docstring), and the best quarter turn."""

    exposure: float
    contrast: float
    polarity: float
    orientation: float
    sharpness: float
    framing: float
    #: Correlation with the template in the best orientation and polarity (:data:`TEMPLATE_FIT`).
    template_fit: float
    #: Degrees clockwise that make the image fit the template best (0, 90, 180 or 270).
    best_turn: int

    def value(self, check: str) -> float:
        return float(getattr(self, check))


def _mean_abs_laplacian(work: NDArray[np.float32]) -> float:
    """Mean absolute 5-point Laplacian ``4 c - up - down - left - right`` of the inner pixels,
    computed in one buffer (the same float32 operations in the same order as the expression)."""
    inner = work[1:-1, 1:-1] * np.float32(4.0)
    for neighbour in (work[:-2, 1:-1], work[2:, 1:-1], work[1:-1, :-2], work[1:-1, 2:]):
        np.subtract(inner, neighbour, out=inner)
    return float(np.abs(inner, out=inner).mean())


def measure(
    pixels: NDArray[np.floating],
    template: NDArray[np.float32],
    turned: NDArray[np.float64] | None = None,
) -> QualityStatistics:
    """Every check's statistic of one decoded image (float32 (H, W) in [0, 1], 1 = bright);
    ``turned``: the template's :func:`turned_templates`, when the caller keeps them."""
    work = working_copy(pixels)
    # two counts of disjoint sets, not the mean of their union: the same share, half the passes
    extremes = np.count_nonzero(work <= EXTREME_TOLERANCE) + np.count_nonzero(work >= 1.0 - EXTREME_TOLERANCE)
    exposure = float(extremes) / work.size
    low, high = percentiles(work, 5.0, 95.0)
    contrast = float(high - low)
    small = small_copy(work)
    turns = _turn_correlations(small, template, turned)
    # the image in its best orientation against its negative in its best orientation
    polarity = float(turns.max() + turns.min())
    # orientation is judged on the negative only for a clearly inverted image
    upright = -turns if polarity < CLEAR_BOUNDS["polarity"] else turns
    best = int(np.argmax(upright[1:])) + 1
    orientation = float(upright[0] - upright[best])
    sharpness = _mean_abs_laplacian(work) / max(contrast, 1e-3)
    return QualityStatistics(
        exposure=exposure,
        contrast=contrast,
        polarity=polarity,
        orientation=orientation,
        sharpness=sharpness,
        framing=content_fraction(small, contrast),
        template_fit=float(max(turns.max(), -turns.min())),
        best_turn=90 * best if orientation < 0 else 0,
    )


def check_acceptance(acceptance: float, checks: int = len(CHECKS)) -> float:
    """Each check's own acceptance: together they spend at most the quality checks' refusal budget."""
    from cxr_core.gate_signals import share_acceptance

    return share_acceptance(acceptance, checks)


def threshold_for(check: str, values: NDArray[np.floating], acceptance: float) -> float:
    """``check``'s threshold from its validation ``values`` at the per-check ``acceptance``.

    The in-distribution floor (ceiling for ``exposure``) is the looser of a normal fit's
    ``acceptance`` quantile (log-normal for positive skewed statistics) and the conformal rank
    ``ceil((n + 1) * acceptance)`` (the most extreme validation value with few images), scaled by
    the check's margin; the threshold is then the looser of that and the check's clear-case bound.
    """
    v = np.sort(np.asarray(values, dtype=np.float64))
    if v.size < MIN_VALIDATION_IMAGES or not np.isfinite(v).all():
        raise ImageQualityError(
            f"{v.size} validation value(s) for {check} (finite ones needed, at least "
            f"{MIN_VALIDATION_IMAGES}); cannot set a threshold"
        )
    if not 0.5 <= acceptance < 1.0:
        raise ImageQualityError(f"acceptance={acceptance!r}; expected a share in [0.5, 1)")
    above = check in REFUSE_ABOVE
    z = NormalDist().inv_cdf(acceptance)
    rank = min(v.size, math.ceil((v.size + 1) * acceptance))
    if check in LOG_FITTED:
        logs = np.log(np.maximum(v, 1e-6))
        fitted = float(np.exp(logs.mean() - z * logs.std(ddof=1)))
    else:
        fitted = float(v.mean() + (z if above else -z) * v.std(ddof=1))
    if above:
        floor = max(fitted, float(v[rank - 1]))
    else:
        floor = min(fitted, float(v[v.size - rank])) * RELATIVE_MARGIN.get(check, 1.0)
    bound = CLEAR_BOUNDS.get(check)
    if bound is None:
        return floor
    return max(floor, bound) if above else min(floor, bound)


class QualityChecks:
    """The image-quality checks as a gate signal (:class:`cxr_core.gate_signals.ImageSignal`)."""

    name = "image_quality"
    #: Not a learned "unlike the training data" signal: the reasons say what is wrong with the picture.
    learned = False
    #: Reads only the decoded image: the Predictor may start it while the image is preprocessed.
    needs_model_input = False

    def __init__(self, template: NDArray[np.float32], thresholds: Mapping[str, float]) -> None:
        template = np.asarray(template, dtype=np.float32)
        if template.shape != (TEMPLATE_SIZE, TEMPLATE_SIZE) or not np.isfinite(template).all():
            raise ImageQualityError(
                f"quality template of shape {template.shape}; expected finite values of shape "
                f"({TEMPLATE_SIZE}, {TEMPLATE_SIZE})"
            )
        self.template = template
        self._turned = turned_templates(template)
        self.thresholds = {c: float(thresholds[c]) for c in CHECKS if c in thresholds}
        self.fit_floor = float(thresholds.get(TEMPLATE_FIT, 0.0))
        unknown = sorted(set(thresholds) - {*CHECKS, TEMPLATE_FIT})
        if unknown:
            logger.warning("the bundle's quality record has checks this cxr-edge does not know: %s", unknown)

    @classmethod
    def from_bundle(cls, bundle: Bundle, model_name: str | None = None) -> QualityChecks | None:
        """The bundle's quality checks (the same for every model file), or None without the record."""
        from cxr_core.bundle import BundleError, load_quality_template

        info = bundle.manifest.quality
        template = load_quality_template(bundle)
        if info is None or template is None:
            return None
        try:
            return cls(template, info.thresholds)
        except ImageQualityError as exc:
            raise BundleError(f"{bundle.path(info.file)}: {exc}") from exc

    def decisions(self, stats: QualityStatistics) -> list[SignalDecision]:
        from cxr_core.gate_signals import SignalDecision

        rows = []
        for check, threshold in self.thresholds.items():
            score = stats.value(check)
            reason, fix = REASONS[check]
            turn = stats.best_turn
            words = {"score": score, "threshold": threshold, "turn": (360 - turn) % 360, "fix_turn": turn}
            rows.append(
                SignalDecision.measure(
                    f"quality_{check}",
                    score,
                    threshold,
                    refuse_above=check in REFUSE_ABOVE,
                    reason=reason.format(**words),
                    fix=None if fix is None else fix.format(**words),
                    learned=False,
                )
            )
        if stats.template_fit < self.fit_floor:  # not chest-like in any orientation: not judged
            rows = [r for r in rows if r.signal not in ("quality_polarity", "quality_orientation")]
        refused = {r.signal for r in rows if not r.accepted}
        if refused & {"quality_exposure", "quality_contrast"}:
            # A blank or flat picture has no anatomy to orient, sharpen or frame: say only that.
            return [r for r in rows if r.signal in ("quality_exposure", "quality_contrast")]
        if "quality_framing" in refused:
            # The template and sharpness measure the whole frame, not the small picture inside it.
            return [
                r
                for r in rows
                if r.signal not in ("quality_polarity", "quality_orientation", "quality_sharpness")
            ]
        return rows

    def evaluate(
        self, image: DecodedImage, model_input: NDArray[np.float32] | None = None
    ) -> list[SignalDecision]:
        return self.decisions(measure(image.pixels, self.template, self._turned))

    def arrays(self) -> dict[str, Any]:
        return {"template": self.template}
