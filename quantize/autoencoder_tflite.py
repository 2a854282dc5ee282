"""The gate's autoencoder as FP32 and full-integer INT8 TFLite (the project's onnx2tf route)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from cxr_core.bundle.schema import AutoencoderFile

logger = logging.getLogger(__name__)


def build_tflite(
    fp32_onnx: Path,
    formats: set[str],
    folder: Path,
    work: Path,
    calibration: NDArray[np.float32],
    size: int,
    names: dict[str, str],
    tolerances: dict[str, float],
) -> dict[str, AutoencoderFile]:
    logger.warning("autoencoder TFLite (%s) is not built yet: LiteRT models run without it", sorted(formats))
    return {}
