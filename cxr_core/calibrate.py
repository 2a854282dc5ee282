"""Operating points and the calibration map that puts each one at probability 0.5.

A multi-label classifier's raw probabilities are not comparable across findings: a good
threshold for Hernia (rare) may be 0.02 and for Infiltration 0.4. Training picks one operating
point per finding on the validation split -- the threshold that maximises Youden's J
(sensitivity + specificity - 1 = TPR - FPR) -- and stores it with the checkpoint and the model
bundle. The device then applies :func:`calibrate`, a piecewise-linear, monotone map that sends
each finding's operating point to exactly 0.5 (as the Chester app does):

* ``p <= t`` maps linearly ``[0, t] -> [0, 0.5]``
* ``p >  t`` maps linearly ``[t, 1] -> [0.5, 1]``

so "calibrated >= 0.5" is the same decision as "raw >= t", and the ranking of images (hence
every ROC AUC) is unchanged. numpy only: this runs on the device.
"""

from __future__ import annotations

import logging

import numpy as np
from numpy.typing import ArrayLike, NDArray

from cxr_core.errors import ScoreInputError

logger = logging.getLogger(__name__)

#: Operating point used for a finding whose validation labels are all one value (Youden undefined).
DEFAULT_OPERATING_POINT = 0.5


def youden_operating_point(y_true: ArrayLike, y_score: ArrayLike) -> float | None:
    """The threshold ``t`` maximising TPR - FPR for the rule "positive iff score >= t".

    ``y_true`` holds 0/1 labels and ``y_score`` scores of the same length (1-D). The candidate
    thresholds are the distinct scores; on a tie of J the highest threshold wins (fewest false
    positives). Returns ``None`` when the labels are all positive or all negative, where J is
    undefined.
    """
    truth = np.asarray(y_true, dtype=np.float64).ravel()
    score = np.asarray(y_score, dtype=np.float64).ravel()
    if truth.shape != score.shape:
        raise ScoreInputError(
            f"y_true has {truth.size} values and y_score {score.size}; expected the same length"
        )
    if not np.isin(truth, (0.0, 1.0)).all():
        raise ScoreInputError(f"y_true must hold only 0 and 1; got values {np.unique(truth)[:10].tolist()}")
    if not np.isfinite(score).all():
        raise ScoreInputError("y_score holds NaN or infinite values; expected finite scores")
    n_pos = truth.sum()
    n_neg = truth.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(-score, kind="stable")
    sorted_score = score[order]
    tp = np.cumsum(truth[order])
    fp = np.cumsum(1.0 - truth[order])
    # Only the last position of each run of equal scores is a reachable cut ("score >= t").
    last_of_run = np.r_[sorted_score[1:] != sorted_score[:-1], True]
    j = tp[last_of_run] / n_pos - fp[last_of_run] / n_neg
    best = int(np.argmax(j))  # first maximum = highest threshold
    return float(sorted_score[last_of_run][best])


def youden_operating_points(
    y_true: ArrayLike,
    y_score: ArrayLike,
    mask: ArrayLike | None = None,
    default: float = DEFAULT_OPERATING_POINT,
) -> NDArray[np.float64]:
    """One Youden-J operating point per finding (column) of ``(N, L)`` labels and scores.

    ``mask`` (N, L), optional, marks with 0 the entries to leave out (e.g. uncertain labels).
    A finding whose remaining labels are all one value gets ``default`` and a logged warning.
    """
    truth = np.asarray(y_true, dtype=np.float64)
    score = np.asarray(y_score, dtype=np.float64)
    if truth.ndim != 2 or truth.shape != score.shape:
        raise ScoreInputError(
            f"y_true {truth.shape} and y_score {score.shape} must both be (N, L) of the same shape"
        )
    keep = np.ones(truth.shape, dtype=bool) if mask is None else np.asarray(mask) > 0
    if keep.shape != truth.shape:
        raise ScoreInputError(f"mask has shape {keep.shape}; expected {truth.shape}")
    points = np.full(truth.shape[1], float(default), dtype=np.float64)
    for column in range(truth.shape[1]):
        rows = keep[:, column]
        point = youden_operating_point(truth[rows, column], score[rows, column])
        if point is None:
            logger.warning(
                "finding %d has only one label value among %d validation images; operating point set to %s",
                column,
                int(rows.sum()),
                default,
            )
        else:
            points[column] = point
    return points


def calibrate(probs: ArrayLike, operating_points: ArrayLike) -> NDArray[np.float32]:
    """Map probabilities so that each finding's operating point lands on 0.5.

    ``probs`` is (..., L) in [0, 1]; ``operating_points`` has L values in [0, 1]. The map is
    continuous and non-decreasing; an operating point of 0.5 leaves its finding unchanged.
    An operating point of exactly 0 sends 0 to 0.5; one of exactly 1 sends 1 to 0.5.
    """
    p = np.asarray(probs, dtype=np.float64)
    t = np.asarray(operating_points, dtype=np.float64)
    if t.ndim != 1 or p.ndim < 1 or p.shape[-1] != t.shape[0]:
        raise ScoreInputError(
            f"probs of shape {p.shape} do not match {t.shape} operating points; expected (..., L) and (L,)"
        )
    if not np.isfinite(t).all() or (t < 0).any() or (t > 1).any():
        raise ScoreInputError(f"operating points must be finite values in [0, 1]; got {t.tolist()}")
    if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
        bad = p[~(np.isfinite(p) & (p >= 0) & (p <= 1))]
        raise ScoreInputError(
            f"probs hold {bad.size} value(s) such as {bad[:5].tolist()}; expected finite values in [0, 1]"
        )
    t = np.broadcast_to(t, p.shape)
    low = np.divide(p, t, out=np.ones_like(p), where=t > 0) * 0.5
    high = 0.5 + np.divide(p - t, 1.0 - t, out=np.zeros_like(p), where=t < 1) * 0.5
    out = np.where(p <= t, low, high)
    return np.clip(out, 0.0, 1.0).astype(np.float32)
