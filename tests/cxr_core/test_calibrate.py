"""Youden operating points and the piecewise calibration map (cxr_core.calibrate, numpy only)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from cxr_core.calibrate import calibrate, youden_operating_point, youden_operating_points


def _brute_force_youden(truth: np.ndarray, score: np.ndarray) -> float:
    best_t, best_j = None, -np.inf
    for t in sorted(set(score.tolist()), reverse=True):
        pred = score >= t
        tpr = (pred & (truth == 1)).sum() / (truth == 1).sum()
        fpr = (pred & (truth == 0)).sum() / (truth == 0).sum()
        if tpr - fpr > best_j + 1e-12:
            best_t, best_j = t, tpr - fpr
    return float(best_t)


def test_youden_matches_brute_force_with_ties() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        truth = rng.integers(0, 2, size=60).astype(float)
        truth[:2] = (0, 1)
        score = np.round(rng.random(60) * 0.6 + 0.4 * truth, 1)  # coarse scores: many ties
        assert youden_operating_point(truth, score) == pytest.approx(_brute_force_youden(truth, score))


def test_youden_matches_sklearn_roc_curve() -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(1)
    truth = rng.integers(0, 2, size=200)
    score = rng.random(200) + 0.3 * truth
    fpr, tpr, thresholds = metrics.roc_curve(truth, score)
    expected = thresholds[int(np.argmax(tpr - fpr))]
    assert youden_operating_point(truth, score) == pytest.approx(expected)


def test_perfect_separation_picks_lowest_positive_score() -> None:
    truth = np.array([0, 0, 0, 1, 1])
    score = np.array([0.1, 0.2, 0.3, 0.7, 0.9])
    assert youden_operating_point(truth, score) == pytest.approx(0.7)


def test_per_class_points_with_mask_and_single_valued_class(caplog: pytest.LogCaptureFixture) -> None:
    truth = np.array([[0, 1], [1, 1], [0, 1], [1, 0]], dtype=float)
    score = np.array([[0.2, 0.5], [0.8, 0.6], [0.3, 0.7], [0.9, 0.1]])
    mask = np.array([[1, 1], [1, 1], [1, 1], [1, 0]])  # masking the only negative of column 1
    with caplog.at_level(logging.WARNING):
        points = youden_operating_points(truth, score, mask, default=0.42)
    assert points[0] == pytest.approx(0.8)
    assert points[1] == pytest.approx(0.42)
    assert "only one label value" in caplog.text


def test_calibrate_puts_operating_point_at_half_and_keeps_order() -> None:
    points = np.array([0.1, 0.5, 0.8])
    probs = np.array(
        [[0.0, 0.0, 0.0], [0.05, 0.25, 0.4], [0.1, 0.5, 0.8], [0.55, 0.75, 0.9], [1.0, 1.0, 1.0]]
    )
    out = calibrate(probs, points)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[2], 0.5)
    np.testing.assert_allclose(out[0], 0.0)
    np.testing.assert_allclose(out[4], 1.0)
    np.testing.assert_allclose(out[1], [0.25, 0.25, 0.25], atol=1e-7)
    np.testing.assert_allclose(out[3], [0.75, 0.75, 0.75], atol=1e-7)
    np.testing.assert_allclose(out[:, 1], probs[:, 1], atol=1e-7)  # t = 0.5 is the identity
    # Same decision as the raw threshold, and monotone.
    rng = np.random.default_rng(2)
    p = rng.random((500, 3))
    c = calibrate(p, points)
    assert ((c >= 0.5) == (p >= points)).all()
    order = np.argsort(p[:, 0])
    assert (np.diff(c[order, 0]) >= 0).all()


def test_calibrate_extreme_points_and_bad_input() -> None:
    out = calibrate(np.array([[0.0, 1.0], [0.5, 0.5]]), np.array([0.0, 1.0]))
    np.testing.assert_allclose(out, [[0.5, 0.5], [0.75, 0.25]])
    with pytest.raises(ValueError, match="operating points"):
        calibrate(np.zeros((2, 3)), np.array([0.5, 0.5]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        calibrate(np.zeros((2, 2)), np.array([0.5, 1.5]))
    with pytest.raises(ValueError, match="only 0 and 1"):
        youden_operating_point([0, 2], [0.1, 0.2])
