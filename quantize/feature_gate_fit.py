"""Export-time part of the feature-distance gate signal: fit it, and set each model file's threshold.

The gate (:class:`cxr_core.feature_gate.FeatureGate`) is fitted on the PyTorch FP32 features of the
checkpoint's training split. Each model file gets its own distance threshold (INT8 features differ
from FP32 ones), set at the signal's acceptance on distances that no fitted gate has seen:

* the held-out validation images run through that file, and
* **cross-fitted training distances**: the training images are split by patient into
  :data:`FOLDS` folds; a gate fitted on the other folds scores each fold's images as that file sees
  them. Such a gate was fitted on fewer images than the bundle's, so these distances are, if
  anything, larger than a new in-distribution image's: the threshold errs towards accepting.

Why: a 99.7% point read off a few dozen validation images is their maximum or a fitted tail, and
new in-distribution images exceed it far more often than the acceptance says. On the demo bundle
(31 validation images) the feature distance alone refused 1.1-1.9% of 500 fresh phantoms, three
times its budget; resampling those phantoms showed ~250 threshold images bring the whole gate
under 1% (docs/input-gate.md, "How many images set a threshold").
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cxr_core.feature_gate import FeatureGate, FeatureGateError, pooled_features, threshold_at

logger = logging.getLogger(__name__)

#: Folds of the training split for the cross-fitted distances.
FOLDS = 5
#: At most this many training images are scored cross-fitted (each model file runs over them once).
MAX_CROSS_FITTED_IMAGES = 400
#: Fewer training images than this: no cross-fitting (the folds' gates would be too unlike the gate).
MIN_CROSS_FIT_IMAGES = 50


@dataclass(frozen=True)
class FeatureGateFit:
    """The bundle's gate and what the export needs to set per-file thresholds with it."""

    gate: FeatureGate
    train_images: int
    #: Preprocessed training images scored cross-fitted ``(M, ...)`` (M may be 0).
    cross_fit_inputs: NDArray[np.float32]
    #: Each of them's fold (0..FOLDS-1).
    cross_fit_folds: NDArray[np.int64]
    #: The gate fitted without each fold.
    fold_gates: tuple[FeatureGate, ...]

    @property
    def cross_fitted_images(self) -> int:
        return int(len(self.cross_fit_inputs))


def patient_folds(patients: Sequence[str], folds: int = FOLDS) -> NDArray[np.int64]:
    """Fold of each image: its patient's position among the distinct patients, modulo ``folds`` (a
    patient's images never sit on both sides of a fold)."""
    order = {p: i for i, p in enumerate(sorted(set(patients)))}
    return np.array([order[p] % folds for p in patients], dtype=np.int64)


def fit_feature_gate(
    features: NDArray[np.floating],
    patients: Sequence[str],
    inputs: NDArray[np.float32],
    pooling: str,
) -> FeatureGateFit:
    """The gate on all training ``features`` ``(N, C)`` and, with enough images, the fold gates.

    ``inputs`` are the same images preprocessed (kept, at most :data:`MAX_CROSS_FITTED_IMAGES`
    evenly spaced, for scoring each model file cross-fitted); ``patients`` their patient ids.
    """
    gate = FeatureGate.fit(features, pooling)
    n = len(features)
    if n < MIN_CROSS_FIT_IMAGES or len(set(patients)) < FOLDS:
        logger.info("feature gate: %d training images, thresholds from the validation images only", n)
        empty = np.zeros((0, *inputs.shape[1:]), dtype=np.float32)
        return FeatureGateFit(gate, n, empty, np.zeros(0, dtype=np.int64), ())
    folds = patient_folds(patients)
    fold_gates = tuple(FeatureGate.fit(features[folds != k], pooling) for k in range(FOLDS))
    keep = np.unique(np.linspace(0, n - 1, min(n, MAX_CROSS_FITTED_IMAGES)).round().astype(int))
    return FeatureGateFit(gate, n, np.ascontiguousarray(inputs[keep]), folds[keep], fold_gates)


def cross_fitted_distances(fit: FeatureGateFit, feature_map: NDArray[np.floating]) -> NDArray[np.float64]:
    """Each cross-fit image's distance under the gate fitted without its fold, from a model file's
    ``feature_map`` of :attr:`FeatureGateFit.cross_fit_inputs`."""
    pooled = pooled_features(feature_map, fit.gate.pooling)
    distances = np.empty(len(pooled), dtype=np.float64)
    for k, fold_gate in enumerate(fit.fold_gates):
        rows = fit.cross_fit_folds == k
        if rows.any():
            distances[rows] = fold_gate.distances(pooled[rows])
    return distances


def file_threshold(
    fit: FeatureGateFit,
    validation_feature_map: NDArray[np.floating],
    run: Callable[[NDArray[np.float32]], dict[str, Any]],
    acceptance: float,
) -> tuple[float, int]:
    """One model file's distance threshold and how many distances set it.

    ``validation_feature_map`` is the file's feature map of the held-out validation images; ``run``
    runs the file on a batch (for the cross-fitted training distances).
    """
    distances = fit.gate.distances(pooled_features(validation_feature_map, fit.gate.pooling))
    if fit.cross_fitted_images:
        cross = cross_fitted_distances(fit, run(fit.cross_fit_inputs)["feature_map"])
        distances = np.concatenate([distances, cross])
    return threshold_at(distances, acceptance), int(len(distances))


__all__ = [
    "FOLDS",
    "FeatureGateError",
    "FeatureGateFit",
    "cross_fitted_distances",
    "file_threshold",
    "fit_feature_gate",
    "patient_folds",
]
