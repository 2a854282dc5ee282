"""Golden parity in the core: one check, one tolerance per precision, for verify, self-test and edge-bench."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from cxr_core.bundle import GoldenTolerance, load_bundle, load_golden
from cxr_core.parity import (
    DEFAULT_GOLDEN_TOLERANCE,
    FP32_THRESHOLDS,
    TIE,
    call_agreement,
    golden_check,
    golden_tolerance_for,
    golden_tolerance_from_drift,
)
from cxr_core.selftest import run_selftest
from tests.benchmarks.conftest import rehash
from tests.signing import resign

GOLDEN = {
    "probabilities": np.array([[0.2, 0.9], [0.6, 0.1]], np.float32),
    "feature_map": np.ones((2, 3, 2, 2), np.float32),
}
TOLERANCE = GoldenTolerance(max_abs_dp=0.05, feature_map_rel_error=0.1)


def test_outputs_within_tolerance_pass_and_beyond_fail() -> None:
    near = {k: v + 0.01 for k, v in GOLDEN.items()}
    assert golden_check(near, GOLDEN, TOLERANCE)["passed"]
    far = {"probabilities": GOLDEN["probabilities"] + 0.2, "feature_map": GOLDEN["feature_map"]}
    check = golden_check(far, GOLDEN, TOLERANCE)
    assert not check["passed"] and check["max_abs_dp"] == pytest.approx(0.2, abs=1e-6)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_a_non_finite_output_never_passes(bad: float) -> None:
    probs = GOLDEN["probabilities"].copy()
    probs[0, 0] = bad
    check = golden_check({"probabilities": probs, "feature_map": GOLDEN["feature_map"]}, GOLDEN, TOLERANCE)
    assert not check["passed"] and not check["finite"]
    fmap = GOLDEN["feature_map"].copy()
    fmap[0, 0, 0, 0] = bad
    assert not golden_check(
        {"probabilities": GOLDEN["probabilities"], "feature_map": fmap}, GOLDEN, TOLERANCE
    )["passed"]


def test_a_decision_tied_at_its_operating_point_is_not_a_flip() -> None:
    reference = np.array([[0.5, 0.7]])
    moved = np.array([[0.5 - TIE / 2, 0.7]])
    assert call_agreement(moved, reference, [0.5, 0.5]) == 1.0
    assert call_agreement(np.array([[0.4, 0.7]]), np.array([[0.6, 0.7]]), [0.5, 0.5]) == 0.5


def test_tolerances_come_from_the_entry_else_its_precision(session_bundle: Path) -> None:
    bundle = load_bundle(session_bundle)
    for entry in bundle.models:
        assert golden_tolerance_for(entry) == entry.golden_tolerance
    from dataclasses import replace

    bare = replace(bundle.model("onnx-int8"), golden_tolerance=None)
    assert golden_tolerance_for(bare) == DEFAULT_GOLDEN_TOLERANCE["int8"]
    assert golden_tolerance_from_drift("fp32", FP32_THRESHOLDS, {}) == DEFAULT_GOLDEN_TOLERANCE["fp32"]
    drift = golden_tolerance_from_drift(
        "int8", FP32_THRESHOLDS, {"max_abs_dp": 0.04, "feature_map_rel_error": 0.01}
    )
    assert drift == GoldenTolerance(max_abs_dp=0.12, feature_map_rel_error=0.10)


def test_verify_and_the_selftest_agree_on_an_int8_entry_without_a_recorded_tolerance(
    bundle_copy: Path,
) -> None:
    """The bug this module fixed: such a model passed the self-test and failed cxr-export verify."""
    from quantize.verify import verify_bundle

    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    for model in manifest["models"]:
        model["golden_tolerance"] = None
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    resign(bundle_copy)
    rows = {row["model"]: row for row in run_selftest(bundle_copy, threads=1)}
    assert rows["onnx-int8"]["status"] == "pass"
    assert rows["onnx-int8"]["tolerance"] == DEFAULT_GOLDEN_TOLERANCE["int8"].to_dict()
    report = verify_bundle(bundle_copy, threads=1)
    assert [row["status"] for row in report["golden"]] == ["pass", "pass"]


def test_verify_refuses_a_golden_set_with_non_finite_references(bundle_copy: Path) -> None:
    from quantize.verify import GoldenMismatchError, verify_bundle

    golden = load_golden(load_bundle(bundle_copy))
    golden = dict(golden)
    golden["probabilities"] = golden["probabilities"].copy()
    golden["probabilities"][0, 0] = np.nan
    np.savez(bundle_copy / "golden.npz", **golden)
    rehash(bundle_copy, "golden.npz")
    with pytest.raises(GoldenMismatchError, match="onnx"):
        verify_bundle(bundle_copy, threads=1)
