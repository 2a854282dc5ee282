"""The numpy AUC equals scikit-learn's on data with ties, masks and degenerate classes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cxr_core.metrics import mean_auc, per_class_auc, roc_auc


def test_roc_auc_matches_sklearn_with_ties() -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, size=500)
    scores = np.round(rng.random(500) + 0.3 * truth, 1)  # rounding makes many ties
    assert roc_auc(truth, scores) == pytest.approx(sklearn_metrics.roc_auc_score(truth, scores), abs=1e-12)


def test_roc_auc_extremes_and_one_class() -> None:
    truth = np.array([0, 0, 1, 1])
    assert roc_auc(truth, np.array([0.1, 0.2, 0.8, 0.9])) == 1.0
    assert roc_auc(truth, np.array([0.9, 0.8, 0.2, 0.1])) == 0.0
    assert roc_auc(truth, np.full(4, 0.5)) == 0.5
    assert math.isnan(roc_auc(np.zeros(4), np.arange(4.0)))


def test_per_class_auc_respects_mask_and_mean_skips_nan() -> None:
    truth = np.array([[1, 0], [0, 0], [1, 1], [0, 0]], dtype=float)
    scores = np.array([[0.9, 0.1], [0.2, 0.2], [0.1, 0.9], [0.3, 0.3]])
    mask = np.array([[1, 1], [1, 1], [0, 1], [1, 1]], dtype=float)
    aucs = per_class_auc(truth, scores, mask)
    assert aucs[0] == 1.0  # the masked-out positive scored 0.1 would have lowered it
    assert aucs[1] == 1.0
    assert mean_auc(np.array([0.5, math.nan, 1.0])) == 0.75
    with pytest.raises(ValueError, match="same"):
        per_class_auc(truth, scores[:, :1])
