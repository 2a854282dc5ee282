"""Accuracy parity on a labelled evaluation set: per-class and mean AUC per format, and each format
against its FP32 reference (max/mean |dp|, positive-call agreement at the operating points, AUC deltas).

The reference of a format is the FP32 format of the same runtime when the bundle has one
(``onnx-int8`` -> ``onnx``, ``tflite-int8`` / ``tflite-fp16`` -> ``tflite``), else ``onnx``, else
the first FP32 format measured. FP32 formats of another runtime are compared with ``onnx`` (the
conversion error). AUC is the rank (Mann-Whitney) AUC of ``cxr_core.metrics`` (numpy, no sklearn).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cxr_core.metrics import mean_auc, per_class_auc
from cxr_core.parity import call_agreement


def _clean(value: float) -> float | None:
    """JSON-safe float: NaN (undefined AUC) becomes None."""
    return None if value is None or math.isnan(value) else round(float(value), 6)


def reference_for(name: str, formats: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The FP32 format ``name`` is compared with (see the module docstring); None for the anchor itself.

    ``formats`` maps each format name to ``{"int8": bool, "fp16": bool, "runtime": str}``.
    """
    fp32 = [n for n, f in formats.items() if not f.get("int8") and not f.get("fp16")]
    if not fp32:
        return None
    anchor = "onnx" if "onnx" in fp32 else fp32[0]
    if name in fp32:
        return None if name == anchor else anchor
    same_runtime = [n for n in fp32 if formats[n].get("runtime") == formats[name].get("runtime")]
    return same_runtime[0] if same_runtime else anchor


def auc_block(
    labels: Sequence[str], truth: NDArray[Any], mask: NDArray[Any], probs: NDArray[Any]
) -> dict[str, Any]:
    """Per-class AUC (None where a class has no positive or no negative) and their mean."""
    aucs = per_class_auc(truth, probs, mask)
    return {
        "auc": {label: _clean(a) for label, a in zip(labels, aucs, strict=True)},
        "mean_auc": _clean(mean_auc(aucs)),
        "_aucs": aucs,
    }


def eval_parity(
    labels: Sequence[str],
    truth: NDArray[Any],
    mask: NDArray[Any],
    probabilities: Mapping[str, NDArray[Any]],
    formats: Mapping[str, Mapping[str, Any]],
    operating_points: Sequence[float] | None,
) -> dict[str, dict[str, Any]]:
    """Parity figures per format name (see the module docstring); ``formats`` gives int8/runtime per name."""
    blocks = {name: auc_block(labels, truth, mask, p) for name, p in probabilities.items()}
    out: dict[str, dict[str, Any]] = {}
    for name, probs in probabilities.items():
        block = blocks[name]
        row: dict[str, Any] = {
            "images": int(len(probs)),
            "auc": block["auc"],
            "mean_auc": block["mean_auc"],
            "positive_rate": _clean(float(np.mean(probs >= _points(operating_points, probs.shape[1])))),
        }
        ref = reference_for(name, formats) if name in formats else None
        row["reference_format"] = ref
        if ref is not None and ref in probabilities:
            row.update(
                _against(
                    probs, probabilities[ref], block["_aucs"], blocks[ref]["_aucs"], labels, operating_points
                )
            )
        out[name] = row
    return out


def _points(operating_points: Sequence[float] | None, count: int) -> NDArray[np.float64]:
    return np.full(count, 0.5) if operating_points is None else np.asarray(operating_points, dtype=np.float64)


def _against(
    probs: NDArray[Any],
    ref: NDArray[Any],
    aucs: NDArray[np.float64],
    ref_aucs: NDArray[np.float64],
    labels: Sequence[str],
    operating_points: Sequence[float] | None,
) -> dict[str, Any]:
    dp = np.abs(np.asarray(probs, np.float64) - np.asarray(ref, np.float64))
    delta = aucs - ref_aucs
    defined = delta[~np.isnan(delta)]
    return {
        "max_abs_dp": _clean(float(dp.max())),
        "mean_abs_dp": _clean(float(dp.mean())),
        "call_agreement": _clean(call_agreement(probs, ref, operating_points)),
        "auc_delta": {label: _clean(d) for label, d in zip(labels, delta, strict=True)},
        "mean_auc_delta": _clean(mean_auc(aucs) - mean_auc(ref_aucs)),
        "max_class_auc_drop": _clean(float(-defined.min())) if defined.size else None,
    }
