"""Classification metrics of a multi-label chest X-ray model: per-finding ROC AUC and AP.

The headline figure of CheXNet and DGC is the mean over findings of the per-finding ROC AUC.
A finding whose labels in the evaluated split are all one value (no positives, or no negatives)
has no AUC: it is reported as NaN, left out of the means, and a warning names it.
Entries with mask 0 (uncertain labels under U-Ignore) are left out of that finding's metrics.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from cxr_core.errors import ScoreInputError
from cxr_core.optional import require

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClassMetrics:
    """Metrics of one finding. ``auc``/``ap`` are NaN when the finding is single-valued."""

    label: str
    auc: float
    ap: float
    positives: int
    negatives: int


@dataclass(frozen=True)
class MetricsReport:
    """Per-finding and summary metrics of one evaluation.

    ``mean_auc`` is the paper figure: the mean of the defined per-finding AUCs. ``macro_auc`` is
    the same number under its scikit-learn name (kept so reports can use either term);
    ``micro_auc`` pools every (image, finding) entry into one ROC curve.
    """

    classes: tuple[ClassMetrics, ...]
    mean_auc: float
    macro_auc: float
    micro_auc: float
    mean_ap: float
    n_samples: int
    undefined: tuple[str, ...]

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(c.label for c in self.classes)

    @property
    def per_class_auc(self) -> dict[str, float]:
        return {c.label: c.auc for c in self.classes}

    @property
    def per_class_ap(self) -> dict[str, float]:
        return {c.label: c.ap for c in self.classes}

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN stays NaN; :mod:`json` writes it as ``NaN``)."""
        data = asdict(self)
        data["classes"] = [asdict(c) for c in self.classes]
        data["undefined"] = list(self.undefined)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MetricsReport:
        classes = tuple(ClassMetrics(**c) for c in data["classes"])
        rest = {k: v for k, v in data.items() if k not in ("classes", "undefined")}
        return cls(classes=classes, undefined=tuple(data.get("undefined", ())), **rest)


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def _as_2d(name: str, values: ArrayLike, n_labels: int) -> NDArray[np.float64]:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != n_labels:
        raise ScoreInputError(
            f"{name} has shape {array.shape}; expected (N, {n_labels}) for {n_labels} labels"
        )
    return array


def compute_metrics(
    y_true: ArrayLike,
    y_score: ArrayLike,
    labels: Sequence[str],
    mask: ArrayLike | None = None,
) -> MetricsReport:
    """ROC AUC and average precision per finding, their means, and the micro-averaged AUC.

    ``y_true`` is (N, L) with 0/1 targets, ``y_score`` (N, L) probabilities or any monotone
    score, ``mask`` (N, L) optional with 0 for entries to leave out.
    """
    sk_metrics = require("sklearn.metrics", extra="train", purpose="Computing ROC AUC")
    n_labels = len(labels)
    truth = _as_2d("y_true", y_true, n_labels)
    score = _as_2d("y_score", y_score, n_labels)
    if truth.shape != score.shape:
        raise ScoreInputError(
            f"y_true {truth.shape} and y_score {score.shape} differ; expected the same shape"
        )
    if not np.isfinite(score).all():
        raise ScoreInputError(
            f"y_score holds {int((~np.isfinite(score)).sum())} NaN or infinite value(s); expected finite "
            "scores (the model diverged or the scores are broken)"
        )
    keep = np.ones(truth.shape, dtype=bool) if mask is None else _as_2d("mask", mask, n_labels) > 0
    if not np.isin(truth[keep], (0.0, 1.0)).all():
        raise ScoreInputError(
            f"y_true holds {np.unique(truth[keep])[:10].tolist()} where the mask is set; "
            "expected only 0 and 1 (binary targets)"
        )

    classes: list[ClassMetrics] = []
    for j, label in enumerate(labels):
        t, s = truth[keep[:, j], j], score[keep[:, j], j]
        positives = int(t.sum())
        negatives = int(t.size - positives)
        if positives == 0 or negatives == 0:
            auc = ap = math.nan
        else:
            auc = float(sk_metrics.roc_auc_score(t, s))
            ap = float(sk_metrics.average_precision_score(t, s))
        classes.append(ClassMetrics(label, auc, ap, positives, negatives))
    undefined = tuple(c.label for c in classes if math.isnan(c.auc))
    if undefined:
        logger.warning(
            "AUC undefined (only one label value in this split) for %d finding(s), left out of the mean: %s",
            len(undefined),
            ", ".join(undefined),
        )
    flat_t, flat_s = truth[keep], score[keep]
    pooled_defined = 0 < flat_t.sum() < flat_t.size
    micro = float(sk_metrics.roc_auc_score(flat_t, flat_s)) if pooled_defined else math.nan
    mean_auc = _nanmean([c.auc for c in classes])
    return MetricsReport(
        classes=tuple(classes),
        mean_auc=mean_auc,
        macro_auc=mean_auc,
        micro_auc=micro,
        mean_ap=_nanmean([c.ap for c in classes]),
        n_samples=int(truth.shape[0]),
        undefined=undefined,
    )


def curve_points(
    y_true: ArrayLike, y_score: ArrayLike, mask: ArrayLike | None, column: int, kind: str
) -> tuple[NDArray[np.float64], NDArray[np.float64]] | None:
    """(x, y) of the ROC curve (``kind="roc"``: FPR, TPR) or PR curve (``"pr"``: recall, precision).

    Returns ``None`` for a finding without both label values.
    """
    sk_metrics = require("sklearn.metrics", extra="train", purpose="Computing ROC/PR curves")
    truth = np.asarray(y_true, dtype=np.float64)[:, column]
    score = np.asarray(y_score, dtype=np.float64)[:, column]
    if mask is not None:
        keep = np.asarray(mask)[:, column] > 0
        truth, score = truth[keep], score[keep]
    if truth.size == 0 or truth.min() == truth.max():
        return None
    if kind == "roc":
        fpr, tpr, _ = sk_metrics.roc_curve(truth, score)
        return fpr, tpr
    if kind == "pr":
        precision, recall, _ = sk_metrics.precision_recall_curve(truth, score)
        return recall, precision
    raise ScoreInputError(f"unknown curve kind {kind!r}; expected 'roc' or 'pr'")


def operating_point_stats(
    y_true: ArrayLike, y_score: ArrayLike, thresholds: Sequence[float], mask: ArrayLike | None = None
) -> dict[str, list[float]]:
    """Sensitivity and specificity per finding for the rule "positive iff score >= threshold".

    Returns ``{"threshold": [...], "sensitivity": [...], "specificity": [...]}`` (NaN where a
    finding has no positive, resp. no negative, among the unmasked entries).
    """
    truth = np.asarray(y_true, dtype=np.float64)
    score = np.asarray(y_score, dtype=np.float64)
    keep = np.ones(truth.shape, dtype=bool) if mask is None else np.asarray(mask) > 0
    if len(thresholds) != truth.shape[1]:
        raise ScoreInputError(
            f"{len(thresholds)} thresholds for {truth.shape[1]} findings; expected one per finding"
        )
    sensitivity, specificity = [], []
    for j, threshold in enumerate(thresholds):
        t, s = truth[keep[:, j], j], score[keep[:, j], j]
        predicted = s >= threshold
        positives, negatives = t == 1, t == 0
        sensitivity.append(float(predicted[positives].mean()) if positives.any() else math.nan)
        specificity.append(float((~predicted[negatives]).mean()) if negatives.any() else math.nan)
    return {
        "threshold": [float(x) for x in thresholds],
        "sensitivity": sensitivity,
        "specificity": specificity,
    }
