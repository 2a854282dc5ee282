"""Parity figures and the gate, on arrays with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from quantize.parity import (
    FP32_THRESHOLDS,
    INT8_THRESHOLDS,
    ParityGateError,
    ParityThresholds,
    check_gate,
    compare,
    failures,
)


def _outputs(p: np.ndarray, f: np.ndarray) -> dict[str, np.ndarray]:
    return {"probabilities": p.astype(np.float32), "feature_map": f.astype(np.float32)}


def test_compare_reports_known_figures() -> None:
    ref_p = np.array([[0.2, 0.6], [0.7, 0.1]])
    new_p = np.array([[0.5, 0.45], [0.7, 0.1]])
    ref_f = np.ones((2, 1, 2, 2))
    new_f = ref_f.copy()
    new_f[0, 0, 0, 0] = 3.0  # ||diff|| = 2, ||ref|| = sqrt(8)
    figures = compare(_outputs(ref_p, ref_f), _outputs(new_p, new_f), [0.5, 0.5])
    assert figures["images"] == 2
    assert figures["max_abs_dp"] == pytest.approx(0.3, abs=1e-6)
    assert figures["mean_abs_dp"] == pytest.approx(0.1125, abs=1e-6)
    assert figures["call_agreement"] == pytest.approx(0.5)  # both calls of image 0 flip at 0.5
    assert figures["top1_agreement"] == pytest.approx(0.5)
    assert figures["feature_map_rel_error"] == pytest.approx(2 / np.sqrt(8), rel=1e-6)


def test_failures_and_gate() -> None:
    figures = {"max_abs_dp": 0.2, "mean_abs_dp": 0.01, "call_agreement": 0.9, "feature_map_rel_error": 0.1}
    reasons = failures(figures, INT8_THRESHOLDS)
    assert len(reasons) == 2 and "max |dp| 0.2 > 0.1" in reasons[0] and "agreement" in reasons[1]
    assert failures(figures, ParityThresholds(1.0, 1.0, 0.0, 1.0)) == []
    with pytest.raises(ParityGateError, match="onnx-int8: max") as info:
        check_gate({"onnx": {"failures": []}, "onnx-int8": {"failures": reasons}})
    assert "onnx-int8" in info.value.report
    check_gate({"onnx": {"failures": []}})


def test_thresholds_are_validated_and_fp32_is_stricter() -> None:
    with pytest.raises(ValueError, match="min_call_agreement=1.5"):
        ParityThresholds(min_call_agreement=1.5)
    with pytest.raises(ValueError, match="max_abs_dp=-1"):
        ParityThresholds(max_abs_dp=-1)
    assert FP32_THRESHOLDS.max_abs_dp < INT8_THRESHOLDS.max_abs_dp


def test_compare_refuses_mismatched_shapes() -> None:
    a = _outputs(np.zeros((2, 3)), np.zeros((2, 1, 1, 1)))
    b = _outputs(np.zeros((2, 4)), np.zeros((2, 1, 1, 1)))
    with pytest.raises(ValueError, match="expected \\(2, 3\\)"):
        compare(a, b, [0.5] * 3)
    with pytest.raises(ValueError, match="2 operating points for 3 findings"):
        compare(a, a, [0.5, 0.5])
