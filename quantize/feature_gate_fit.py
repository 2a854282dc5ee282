"""Export-time fitting of the learned feature gate (:mod:`cxr_core.feature_gate`), on the training split only.

The bundle's shared gate is fitted on the PyTorch FP32 features of the training images; FP32 and
FP16 model files reproduce those features to 1e-3 or better, so they use it. An INT8 file's features
carry its quantization error, and the Mahalanobis distance weighs the training features' weakest
directions most, which is where that error lands: on the demo DGC the shared gate refused 2-3 of
500 fresh in-distribution phantoms through each INT8 file and none through FP32. So each INT8 file
gets a gate fitted on **its own** features of the same training images (:func:`fit_for_file`),
stored beside the shared one (``gate-<model>.npz``, ``manifest.gate.model_fits``); its threshold
is then set on its own validation distances as for every file (docs/input-gate.md, "One gate per
INT8 file").
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from cxr_core.feature_gate import FeatureGate, pooled_features
from quantize import calibration as calib
from quantize.run_exported import run_exported

if TYPE_CHECKING:
    from cxr_core.bundle.schema import ModelEntry
    from cxr_core.preprocess import PreprocessSpec

logger = logging.getLogger(__name__)

#: Model precisions whose files get a gate fitted on their own features.
OWN_FIT_PRECISIONS: frozenset[str] = frozenset({"int8"})
#: Training images preprocessed and run per batch (bounds the memory of a 1,000-image fit at 224 px).
BATCH_IMAGES = 64


def own_gate_file(model_name: str) -> str:
    """The bundle file of ``model_name``'s own gate."""
    return f"gate-{model_name}.npz"


@dataclass(frozen=True)
class GateTraining:
    """The training images a gate is fitted on, how they are preprocessed and how features pool."""

    images: calib.CalibrationSet
    spec: PreprocessSpec
    pooling: str

    def file_features(self, path: Path, entry: ModelEntry) -> NDArray[np.float32]:
        """Pooled ``(N, C)`` features of every training image run through the model file ``path``."""
        rows = []
        source, root, files = self.images.source, self.images.root, self.images.files
        for start in range(0, len(files), BATCH_IMAGES):
            chunk = calib.CalibrationSet(source, root, files[start : start + BATCH_IMAGES])
            maps = run_exported(path, entry, calib.load_tensors(chunk, self.spec))["feature_map"]
            rows.append(pooled_features(maps, self.pooling))
        return np.concatenate(rows)


def needs_own_fit(precision: str) -> bool:
    """Does a model file of ``precision`` get a gate fitted on its own features?"""
    return precision in OWN_FIT_PRECISIONS


def fit_for_file(path: Path, entry: ModelEntry, training: GateTraining) -> FeatureGate:
    """A gate fitted on the features the model file ``path`` gives for the training images."""
    gate = FeatureGate.fit(training.file_features(path, entry), training.pooling)
    logger.info(
        "feature gate of %s fitted on its own features of %d training images (shrinkage %.3f)",
        entry.name,
        len(training.images.files),
        gate.shrinkage,
    )
    return gate
