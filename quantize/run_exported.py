"""Run any exported model file on preprocessed inputs, whatever its format (no torch).

The export pipeline calls :func:`run_exported` for its parity rows and ``cxr-export verify`` for
the golden set. ONNX files run through ONNX Runtime here; other formats go through the device's
own backends in ``cxr_core.runtime`` so that export parity measures exactly what a device runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from quantize.ort_run import run_model


def run_exported(
    path: str | Path, description: Mapping[str, Any], inputs: NDArray[np.float32], threads: int = 1
) -> dict[str, NDArray[np.float32]]:
    """``probabilities`` (N, L) and ``feature_map`` (N, C, h, w, NCHW) of the model file at ``path``.

    ``description`` is the model's manifest entry (or the builder's part of it: ``format``,
    ``inputs``, ``outputs``); ``inputs`` are NCHW float32 tensors preprocessed with the bundle's spec.
    """
    fmt = str(description.get("format", ""))
    if fmt in ("onnx", "onnx-int8"):
        return run_model(path, inputs, threads=threads)
    raise ValueError(f"{path}: no runner for format {fmt!r}; expected 'onnx' or 'onnx-int8'")
