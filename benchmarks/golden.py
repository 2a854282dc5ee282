"""Parity of a format's outputs against the bundle's golden FP32 outputs (numpy only).

The golden set (``golden.npz``: preprocessed inputs, PyTorch FP32 probabilities and feature maps)
travels inside every bundle, so any device can check a runtime against the reference without
torch. The same function serves edge-bench's golden columns and the app's self-test, so both
report the same figure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

#: Used when a model entry records no golden_tolerance (older bundles): FP32 numerical noise,
#: and the export's default INT8 limits (quantize/parity.py).
DEFAULT_TOLERANCE_FP32 = {"max_abs_dp": 1e-4, "feature_map_rel_error": 1e-3}
DEFAULT_TOLERANCE_INT8 = {"max_abs_dp": 0.10, "feature_map_rel_error": 0.25}


def call_agreement(
    probs: NDArray[np.floating], reference: NDArray[np.floating], operating_points: Sequence[float] | None
) -> float:
    """Share of (image, finding) pairs whose positive call ``p >= t`` matches the reference's.

    ``t`` is each finding's operating point (0.5 for every finding when the bundle has none).
    """
    probs = np.asarray(probs, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if probs.shape != reference.shape:
        raise ValueError(f"probabilities {probs.shape} vs reference {reference.shape}; expected one shape")
    points = np.full(probs.shape[1], 0.5) if operating_points is None else np.asarray(operating_points)
    return float(np.mean((probs >= points) == (reference >= points)))


def feature_map_rel_error(feature_map: NDArray[np.floating], reference: NDArray[np.floating]) -> float:
    """``||F - F_ref|| / ||F_ref||`` (Frobenius, over the whole set)."""
    f = np.asarray(feature_map, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if f.shape != ref.shape:
        raise ValueError(f"feature map {f.shape} vs reference {ref.shape}; expected one shape")
    norm = float(np.linalg.norm(ref))
    return float(np.linalg.norm(f - ref) / norm) if norm > 0 else float(np.linalg.norm(f - ref))


def tolerance_for(entry: Mapping[str, Any]) -> dict[str, float]:
    """The entry's recorded golden tolerance, else the default for its precision."""
    recorded = dict(entry.get("golden_tolerance") or {})
    default = DEFAULT_TOLERANCE_INT8 if entry.get("int8") else DEFAULT_TOLERANCE_FP32
    return {key: float(recorded.get(key, value)) for key, value in default.items()}


def golden_parity(
    outputs: Mapping[str, NDArray[np.floating]],
    golden: Mapping[str, NDArray[np.floating]],
    tolerance: Mapping[str, float],
    operating_points: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Compare a backend's outputs on the golden inputs with the golden FP32 outputs.

    Returns max/mean |dp|, feature-map relative error, call agreement at the operating points,
    the tolerance used and ``passed`` (both figures within tolerance).
    """
    probs = np.asarray(outputs["probabilities"], dtype=np.float64)
    ref = np.asarray(golden["probabilities"], dtype=np.float64)
    if probs.shape != ref.shape:
        raise ValueError(f"golden probabilities {ref.shape} but the model returned {probs.shape}")
    dp = np.abs(probs - ref)
    fm_error = feature_map_rel_error(outputs["feature_map"], golden["feature_map"])
    max_dp = float(dp.max())
    passed = max_dp <= tolerance["max_abs_dp"] and fm_error <= tolerance["feature_map_rel_error"]
    return {
        "images": int(ref.shape[0]),
        "max_abs_dp": max_dp,
        "mean_abs_dp": float(dp.mean()),
        "feature_map_rel_error": fm_error,
        "call_agreement": call_agreement(probs, ref, operating_points),
        "tolerance": dict(tolerance),
        "passed": bool(passed),
    }
