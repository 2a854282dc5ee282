"""Run any exported model file on preprocessed inputs, whatever its format (no torch).

The export pipeline calls :func:`run_exported` for its parity rows. Every format goes through the
device's own backend (:func:`cxr_core.runtime.open_model`: ONNX Runtime or LiteRT, NHWC transposes,
int8 quantize/dequantize with each tensor's own scale and zero point, outputs found by role), so
that export parity measures exactly what a device runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cxr_core.errors import CxrEdgeError


class NoRunnerError(CxrEdgeError, ValueError):
    """An exported model of a format that has no runner here."""


ONNX_FORMATS = ("onnx", "onnx-int8")
TFLITE_FORMATS = ("tflite", "tflite-fp16", "tflite-int8")
#: Images per call: bounds the interpreter's tensor arena (it grows with the batch).
BATCH_SIZE = 8


def _run_backend(
    path: str | Path, description: Mapping[str, Any], inputs: NDArray[np.float32], threads: int
) -> dict[str, NDArray[np.float32]]:
    from cxr_core.runtime import open_model

    chunks: dict[str, list[NDArray[np.float32]]] = {"probabilities": [], "feature_map": []}
    with open_model(path, description, threads=threads) as backend:
        for start in range(0, len(inputs), BATCH_SIZE):
            batch = np.ascontiguousarray(inputs[start : start + BATCH_SIZE], dtype=np.float32)
            outputs = backend(batch)
            for role, parts in chunks.items():
                parts.append(np.asarray(outputs[role], dtype=np.float32))
    return {role: np.concatenate(parts, axis=0) for role, parts in chunks.items()}


def run_exported(
    path: str | Path, description: Mapping[str, Any], inputs: NDArray[np.float32], threads: int = 1
) -> dict[str, NDArray[np.float32]]:
    """``probabilities`` (N, L) and ``feature_map`` (N, C, h, w, NCHW) of the model file at ``path``.

    ``description`` is the model's manifest entry (or the builder's part of it: ``format``,
    ``runtime``, ``inputs``, ``outputs``); ``inputs`` are NCHW float32 tensors preprocessed with the
    bundle's spec.
    """
    fmt = str(description.get("format", ""))
    if fmt in ONNX_FORMATS or fmt in TFLITE_FORMATS:
        return _run_backend(path, description, inputs, threads)
    raise NoRunnerError(
        f"{path}: no runner for format {fmt!r}; expected one of {[*ONNX_FORMATS, *TFLITE_FORMATS]}"
    )
