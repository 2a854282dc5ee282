"""Ranking metrics that the torch-free side needs: ROC AUC per finding, in numpy only.

Export parity (quantize/) and edge-bench (benchmarks/) compare formats by AUC on a labelled
evaluation set; on a device there is no scikit-learn, so the AUC is computed here from ranks
(the Mann-Whitney U statistic, ties counted half), which equals scikit-learn's
``roc_auc_score`` for binary truth.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from cxr_core.errors import ScoreInputError


def _average_ranks(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """1-based ranks of ``values`` with tied values given their average rank."""
    order = np.argsort(values, kind="mergesort")
    ordered = values[order]
    # Boundaries of runs of equal values in sorted order.
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    ends = np.r_[starts[1:], len(values)]
    average = (starts + ends + 1) / 2.0  # mean of 1-based ranks start+1 .. end
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(average, ends - starts)
    return ranks


def roc_auc(truth: NDArray[np.floating], scores: NDArray[np.floating]) -> float:
    """ROC AUC of ``scores`` for binary ``truth`` (1 positive, 0 negative); NaN when one class is absent."""
    truth = np.asarray(truth, dtype=np.float64).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if truth.shape != scores.shape:
        raise ScoreInputError(
            f"truth has {truth.size} values and scores {scores.size}; expected the same count"
        )
    positives = truth > 0.5
    n_pos = int(positives.sum())
    n_neg = truth.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = _average_ranks(scores)
    u = ranks[positives].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def per_class_auc(
    truth: NDArray[np.floating], scores: NDArray[np.floating], mask: NDArray[np.floating] | None = None
) -> NDArray[np.float64]:
    """AUC of each column of ``scores`` (N, L) against ``truth`` (N, L); rows with mask 0 are left out."""
    truth = np.asarray(truth, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if truth.shape != scores.shape or truth.ndim != 2:
        raise ScoreInputError(
            f"truth {truth.shape} and scores {scores.shape}; expected the same (N, L) shape"
        )
    keep = np.ones_like(truth, dtype=bool) if mask is None else np.asarray(mask) > 0
    return np.array(
        [roc_auc(truth[keep[:, k], k], scores[keep[:, k], k]) for k in range(truth.shape[1])],
        dtype=np.float64,
    )


def mean_auc(aucs: NDArray[np.float64]) -> float:
    """Mean of the defined (non-NaN) per-class AUCs; NaN when none is defined."""
    defined = aucs[~np.isnan(aucs)]
    return float(defined.mean()) if defined.size else math.nan


#: One sign convention for every table that compares a format's AUC with its reference
#: (``cxr-export`` and ``edge-bench``): reference mean AUC minus format mean AUC, so a positive
#: figure is a loss and the ``--max-auc-drop`` gates compare it directly.
AUC_DROP_LABEL = "AUC drop (ref - format)"
#: The same for the worst single finding.
CLASS_AUC_DROP_LABEL = "worst class AUC drop"


def auc_drop(reference_auc: float, format_auc: float) -> float:
    """Reference AUC minus format AUC: positive when the format ranks worse than its reference."""
    return float(reference_auc) - float(format_auc)
