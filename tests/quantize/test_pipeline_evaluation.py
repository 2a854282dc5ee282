"""Export parity on the labelled held-out set: the validation split minus the calibration images."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from cxr_core.parity import ParityGateError, ParityThresholds
from quantize.formats import FORMATS, BuildContext
from quantize.pipeline import ExportRequest, export_bundle
from tests.bundle_fixtures import write_checkpoint


@pytest.fixture(scope="module")
def phantom_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CheXNet checkpoint whose run config records a real 96-image phantom set."""
    from training.data.synthetic import generate_chestxray14

    root = tmp_path_factory.mktemp("phantoms")
    generate_chestxray14(root, n_images=96, image_size=64, seed=0, progress=False, overwrite=True)
    run_config = {"dataset": "synthetic", "data_root": str(root), "val_fraction": 0.25}
    return write_checkpoint(tmp_path_factory.mktemp("ckpt") / "chexnet.pt", "chexnet", run_config)


def test_parity_is_measured_on_held_out_labelled_images(phantom_checkpoint: Path, tmp_path: Path) -> None:
    request = ExportRequest(
        phantom_checkpoint,
        tmp_path / "bundle",
        formats=("onnx", "onnx-int8"),
        calibration_images=6,
        int8_thresholds=ParityThresholds(None, None, None, None, None, None),  # random weights: report only
    )
    manifest = export_bundle(request).manifest
    images = manifest.parity["images"]
    calibration = set(manifest.calibration["files"])
    assert images["count"] == len(images["files"]) > 0
    assert calibration.isdisjoint(images["files"])  # INT8 ranges were fitted on the calibration images
    assert len(calibration) <= images["count"] + 1  # calibration takes at most half the validation split
    assert len(images["positives_per_label"]) == len(manifest.labels)
    for name in ("onnx", "onnx-int8"):
        parity = manifest.parity["formats"][name]["parity"]
        assert parity["images"] == images["count"]
        assert len(parity["per_class_auc"]) == len(manifest.labels)
        assert 0.0 <= parity["mean_auc"] <= 1.0
        assert -1.0 <= parity["cam_correlation"] <= 1.0
    fp32 = manifest.parity["formats"]["onnx"]["parity"]
    assert abs(fp32["auc_drop"]) < 1e-3 and fp32["cam_correlation"] > 0.99
    timing = manifest.parity["formats"]["onnx-int8"].get("latency", {})
    assert "median_ms" in timing or "error" in timing
    assert set(manifest.recommended).issubset({"onnxruntime", "litert"})


REAL_INT8_BUILDER = FORMATS["onnx-int8"].builder


def _sign_flipped_int8(context: BuildContext, path: Path) -> dict:
    """The real INT8 build, then the classifier's weights and bias negated: a deliberately broken model."""
    import onnx
    from onnx import numpy_helper

    info = REAL_INT8_BUILDER(context, path)
    model = onnx.load(str(path))
    gemm = next(node for node in model.graph.node if node.op_type == "Gemm")
    for initializer in model.graph.initializer:
        if initializer.name in gemm.input[1:]:
            initializer.CopyFrom(
                numpy_helper.from_array(-numpy_helper.to_array(initializer), initializer.name)
            )
    onnx.save(model, str(path))
    return info


def test_auc_gate_refuses_a_broken_int8_model(
    phantom_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = replace(FORMATS["onnx-int8"], builder=_sign_flipped_int8)
    monkeypatch.setitem(FORMATS, "onnx-int8", broken)
    request = ExportRequest(
        phantom_checkpoint, tmp_path / "bundle", formats=("onnx", "onnx-int8"), calibration_images=6
    )
    with pytest.raises(ParityGateError) as info:
        export_bundle(request)
    reasons = info.value.report["onnx-int8"]["failures"]
    assert any("agreement at operating points" in r for r in reasons), reasons
    parity = info.value.report["onnx-int8"]["parity"]
    assert parity["labelled_images"] > 0 and "auc_drop" in parity
    assert not info.value.report["onnx"]["failures"]
    assert not (tmp_path / "bundle").exists()


def test_the_bundle_states_its_training_data_and_validation_figures(
    phantom_checkpoint: Path, tmp_path: Path
) -> None:
    request = ExportRequest(
        phantom_checkpoint,
        tmp_path / "bundle",
        formats=("onnx",),
        calibration_images=6,
        time_formats=False,
    )
    clinical = export_bundle(request).manifest.clinical
    assert clinical is not None and clinical.synthetic  # the phantom set
    training = clinical.training_data
    assert training.dataset == "synthetic" and "phantom" in training.label_source
    assert sum(training.images.values()) == 96 and training.images["val"] > 0
    assert 0 < training.patients["train"] <= training.images["train"]
    validation = clinical.validation
    assert validation is not None and validation.images > 0 and validation.bootstrap_resamples == 1000
    assert len(validation.findings) == 14
    for finding in validation.findings:
        assert finding.positives + finding.negatives <= validation.images
        if finding.auc_ci is not None:
            assert finding.auc_ci[0] <= finding.auc <= finding.auc_ci[1]
        if finding.sensitivity is not None:
            assert finding.sensitivity_ci[0] <= finding.sensitivity <= finding.sensitivity_ci[1]
        # 96 phantoms, a quarter for validation: most thresholds rest on fewer than 10 positives
        assert finding.threshold_reliable == (finding.threshold_positives >= 10)
        assert (finding.threshold_note() is None) == finding.threshold_reliable
    assert sum(not f.threshold_reliable for f in validation.findings) >= 7
