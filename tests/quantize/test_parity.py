"""Parity figures and the gate, on arrays with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from cxr_core.parity import (
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
    # max |dp| is reported, not gated, by default; agreement 0.9 < 0.97 fails.
    assert len(reasons) == 1 and "agreement at operating points 0.9 < 0.97" in reasons[0]
    assert "max |dp| 0.2 > 0.1" in failures(figures, ParityThresholds(max_abs_dp=0.1))[0]
    assert failures(figures, ParityThresholds(1.0, 1.0, 0.0, 1.0)) == []
    with pytest.raises(ParityGateError, match="onnx-int8: agreement") as info:
        check_gate({"onnx": {"failures": []}, "onnx-int8": {"failures": reasons}})
    assert "onnx-int8" in info.value.report
    check_gate({"onnx": {"failures": []}})


def test_auc_figures_and_auc_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("cxr_core.parity.MIN_CLASS_CASES", 1)  # four images: gate every finding
    truth = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=float)
    ref_p = np.array([[0.9, 0.1], [0.1, 0.8], [0.8, 0.9], [0.2, 0.2]])
    new_p = ref_p.copy()
    new_p[:, 1] = [0.9, 0.1, 0.8, 0.2]  # finding 2 is now ranked wrongly: AUC 1.0 -> 0.25
    f = np.ones((4, 1, 2, 2))
    figures = compare(_outputs(ref_p, f), _outputs(new_p, f), [0.5, 0.5], truth=truth)
    assert figures["reference_mean_auc"] == pytest.approx(1.0)
    assert figures["per_class_auc"] == pytest.approx([1.0, 0.25])
    assert figures["auc_drop"] == pytest.approx(0.375)
    assert figures["max_class_auc_drop"] == pytest.approx(0.75)
    reasons = failures(figures, ParityThresholds(min_call_agreement=None))
    assert any("mean AUC drop 0.375 > 0.01" in r for r in reasons)
    assert any("largest per-class AUC drop 0.75 > 0.02" in r for r in reasons)
    assert figures["classes_gated"] == [0, 1]


def test_per_class_auc_drop_is_not_gated_on_too_few_cases() -> None:
    truth = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=float)
    ref_p = np.array([[0.9, 0.1], [0.1, 0.8], [0.8, 0.9], [0.2, 0.2]])
    new_p = ref_p[:, ::-1].copy()
    f = np.ones((4, 1, 2, 2))
    figures = compare(_outputs(ref_p, f), _outputs(new_p, f), [0.5, 0.5], truth=truth)
    assert figures["classes_gated"] == [] and np.isnan(figures["max_class_auc_drop"])
    assert not any("per-class" in r for r in failures(figures, ParityThresholds()))


def test_cam_correlation_of_the_top_finding() -> None:
    rng = np.random.default_rng(0)
    f_ref = rng.random((3, 4, 3, 3))
    weight = rng.normal(size=(2, 4))
    p = np.array([[0.9, 0.1], [0.2, 0.7], [0.6, 0.5]])
    same = compare(_outputs(p, f_ref), _outputs(p, f_ref * 2.0 + 1.0), [0.5, 0.5], cam_weight=weight)
    assert same["cam_correlation"] == pytest.approx(1.0)  # Pearson ignores scale and offset of F...
    flipped = compare(_outputs(p, f_ref), _outputs(p, -f_ref), [0.5, 0.5], cam_weight=weight)
    assert flipped["cam_correlation"] == pytest.approx(-1.0)  # ...but not its sign
    gate = ParityThresholds(min_cam_correlation=0.99)
    assert any("CAM correlation" in r for r in failures(flipped, gate))
    assert not any("CAM correlation" in r for r in failures(same, gate))


def test_thresholds_are_validated_and_fp32_is_stricter() -> None:
    with pytest.raises(ValueError, match="min_call_agreement=1.5"):
        ParityThresholds(min_call_agreement=1.5)
    with pytest.raises(ValueError, match="max_abs_dp=-1"):
        ParityThresholds(max_abs_dp=-1)
    with pytest.raises(ValueError, match="min_cam_correlation=2"):
        ParityThresholds(min_cam_correlation=2)
    assert FP32_THRESHOLDS.max_abs_dp is not None and FP32_THRESHOLDS.max_abs_dp <= 1e-4
    assert INT8_THRESHOLDS.max_auc_drop == 0.01 and INT8_THRESHOLDS.max_class_auc_drop == 0.02


def test_compare_refuses_mismatched_shapes() -> None:
    a = _outputs(np.zeros((2, 3)), np.zeros((2, 1, 1, 1)))
    b = _outputs(np.zeros((2, 4)), np.zeros((2, 1, 1, 1)))
    with pytest.raises(ValueError, match="expected \\(2, 3\\)"):
        compare(a, b, [0.5] * 3)
    with pytest.raises(ValueError, match="2 operating points for 3 findings"):
        compare(a, a, [0.5, 0.5])


def test_a_reference_exactly_at_its_operating_point_is_a_tie_not_a_flip() -> None:
    ref_p = np.array([[0.5, 0.2]])
    f = np.ones((1, 1, 1, 1))
    at_point = compare(_outputs(ref_p, f), _outputs(np.array([[0.5 - 1e-7, 0.2]]), f), [0.5, 0.5])
    assert at_point["call_agreement"] == 1.0
    real_flip = compare(_outputs(ref_p, f), _outputs(np.array([[0.5, 0.6]]), f), [0.5, 0.5])
    assert real_flip["call_agreement"] == 0.5
