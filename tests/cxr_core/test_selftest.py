"""The diagnostics self-test: the golden set through each model of a bundle, pass or fail per format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cxr_core.bundle import BundleIntegrityError
from cxr_core.selftest import run_selftest
from tests.benchmarks.conftest import rehash


def test_every_format_of_a_good_bundle_passes(session_bundle: Path) -> None:
    rows = run_selftest(session_bundle, threads=1)
    assert [r["model"] for r in rows] == ["onnx", "onnx-int8"]
    for row in rows:
        assert row["status"] == "pass", row["message"]
        assert row["runtime"] == "onnxruntime"
        assert row["max_abs_dp"] <= row["tolerance"]["max_abs_dp"]
    assert rows[0]["max_abs_dp"] < 1e-4 < rows[1]["max_abs_dp"]  # FP32 matches to noise, INT8 does not


def test_a_broken_model_is_an_error_row_and_a_drifted_one_fails(bundle_copy: Path) -> None:
    bundle = bundle_copy
    (bundle / "model-int8.onnx").write_bytes(b"\x00" * 64)
    rehash(bundle, "model-int8.onnx")
    with np.load(bundle / "golden.npz") as golden:
        arrays = {k: golden[k] for k in golden.files}
    arrays["feature_map"] = arrays["feature_map"] * 1.5
    np.savez(bundle / "golden.npz", **arrays)
    rehash(bundle, "golden.npz")
    rows = {r["model"]: r for r in run_selftest(bundle, threads=1)}
    assert rows["onnx-int8"]["status"] == "error" and rows["onnx-int8"]["message"]
    assert rows["onnx"]["status"] == "fail"
    assert "feature-map error" in rows["onnx"]["message"]


def test_a_tampered_bundle_is_refused_as_a_whole(bundle_copy: Path) -> None:
    bundle = bundle_copy
    (bundle / "model.onnx").write_bytes(b"changed")
    with pytest.raises(BundleIntegrityError, match="model.onnx"):
        run_selftest(bundle)


def test_a_platform_opener_replaces_how_models_are_opened(session_bundle: Path) -> None:
    """The Android app passes its own opener; ONNX models it cannot run come back 'unavailable'."""
    from cxr_core.runtime import RuntimeUnavailableError, open_model

    opened: list[str] = []

    def tflite_only(bundle, entry, threads):  # noqa: ANN001, ANN202 (the opener protocol)
        opened.append(entry.name)
        if entry.name == "onnx-int8":
            raise RuntimeUnavailableError("this platform has no onnxruntime")
        return open_model(bundle.path(entry), entry, threads=threads)

    rows = {row["model"]: row for row in run_selftest(session_bundle, opener=tflite_only)}
    assert opened == ["onnx", "onnx-int8"]
    assert rows["onnx"]["status"] == "pass"
    assert rows["onnx-int8"]["status"] == "unavailable" and "no onnxruntime" in rows["onnx-int8"]["message"]
