"""export_bundle end to end on tiny checkpoints: manifest contents, failed rows, gate, atomicity."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from cxr_core.bundle import load_bundle, load_cam_weights, load_golden, sha256_file
from cxr_core.bundle import writer as bundle_writer
from cxr_core.formats import ModelFormat
from cxr_core.parity import ParityGateError, ParityThresholds
from quantize.formats import FORMATS, ExportFormat, get_format, parse_formats
from quantize.pipeline import ExportError, ExportRequest, export_bundle


def test_bundle_manifest_records_the_contract(session_bundle: Path, checkpoint_factory: Callable) -> None:
    bundle = load_bundle(session_bundle)
    manifest = bundle.manifest
    assert [m.name for m in bundle.models] == ["onnx", "onnx-int8"]
    assert bundle.architecture == "chexnet-tiny-densenet"
    assert len(bundle.labels) == 14 and bundle.spec.input_size == 64
    assert bundle.operating_points == (0.5,) * 14
    fp32, int8 = bundle.models
    assert fp32.sha256 == sha256_file(session_bundle / "model.onnx")
    assert [o.name for o in int8.outputs] == ["probabilities", "feature_map"]
    assert int8.inputs[0].layout == "NCHW" and int8.inputs[0].shape[0] is None
    assert (fp32.precision, int8.precision) == ("fp32", "int8")
    assert fp32.quantization is None and int8.quantization["reduce_range"] is True
    assert int8.quantization["batchnorms_rewritten"] > 0
    assert "sigmoid" in manifest.outputs["probabilities"]
    report = manifest.parity["formats"]
    assert report["onnx"]["parity"]["max_abs_dp"] < 1e-5
    assert report["onnx-int8"]["parity"]["max_abs_dp"] < 0.5
    assert manifest.calibration["files"] == [f"img_{i:02d}.png" for i in range(8)]
    provenance = manifest.provenance
    assert provenance.checkpoint_sha256 == sha256_file(checkpoint_factory("chexnet"))
    assert provenance.training_dataset == "synthetic" and provenance.exported_at
    golden = load_golden(bundle)
    assert golden["inputs"].shape == (4, 3, 64, 64)
    weight, bias = load_cam_weights(bundle)
    assert weight.shape[0] == 14 and bias.shape == (14,)
    assert weight.shape[1] == golden["feature_map"].shape[1]
    # The CAM contract: pooled feature map @ W.T + b gives the probabilities (CheXNet: mean pool).
    logits = golden["feature_map"].mean(axis=(2, 3)) @ weight.T + bias
    assert np.abs(1 / (1 + np.exp(-logits)) - golden["probabilities"]).max() < 1e-5


def test_dgc_bundle_builds(checkpoint_factory: Callable, calibration_dir: Path, tmp_path: Path) -> None:
    result = export_bundle(
        ExportRequest(
            checkpoint_factory("dgc"),
            tmp_path / "dgc",
            formats=("onnx", "onnx-int8"),
            calibration_dir=calibration_dir,
        )
    )
    assert [r["status"] for r in result.rows] == ["ok", "ok"]
    assert result.manifest.cam.pooling == "max"
    assert "z = mu" in result.manifest.outputs["feature_map"]


def test_failed_format_is_a_row_not_a_crash(
    checkpoint_factory: Callable, calibration_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(context: object, path: Path) -> dict:
        path.write_bytes(b"half a model")
        raise RuntimeError("converter exploded")

    monkeypatch.setitem(
        FORMATS,
        "broken",
        ExportFormat(
            ModelFormat("broken", "broken.bin", "onnxruntime", "int8", "NCHW", "test"), "export", broken
        ),
    )
    out = tmp_path / "bundle"
    result = export_bundle(
        ExportRequest(
            checkpoint_factory("chexnet"), out, formats=("onnx", "broken"), calibration_dir=calibration_dir
        )
    )
    rows = {r["name"]: r for r in result.rows}
    assert rows["onnx"]["status"] == "ok"
    assert rows["broken"]["status"] == "failed" and "converter exploded" in rows["broken"]["error"]
    assert not (out / "broken.bin").exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert [m["name"] for m in manifest["models"]] == ["onnx"]
    assert manifest["export_report"][1]["error"] == "RuntimeError: converter exploded"


def test_gate_refuses_drift_and_keeps_the_existing_bundle(
    session_bundle: Path, bundle_copy: Path, checkpoint_factory: Callable, calibration_dir: Path
) -> None:
    before = (bundle_copy / "manifest.json").read_bytes()
    impossible = ParityThresholds(
        max_abs_dp=0.0, mean_abs_dp=0.0, min_call_agreement=1.0, max_feature_rel_error=0.0
    )
    request = ExportRequest(
        checkpoint_factory("chexnet"),
        bundle_copy,
        formats=("onnx", "onnx-int8"),
        calibration_dir=calibration_dir,
        int8_thresholds=impossible,
    )
    with pytest.raises(ParityGateError, match="onnx-int8: max \\|dp\\|") as info:
        export_bundle(request)
    assert info.value.report["onnx-int8"]["failures"]
    assert (bundle_copy / "manifest.json").read_bytes() == before
    assert sorted(p.name for p in bundle_copy.parent.iterdir()) == ["bundle"]  # no temp folder left
    load_bundle(bundle_copy)  # still whole and valid


def test_failure_mid_write_leaves_no_half_bundle(
    checkpoint_factory: Callable, calibration_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(folder: Path, manifest: object, **_options: object) -> object:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("quantize.pipeline.write_manifest", disk_full)
    out = tmp_path / "new-bundle"
    with pytest.raises(OSError, match="No space left"):
        export_bundle(
            ExportRequest(
                checkpoint_factory("chexnet"), out, formats=("onnx",), calibration_dir=calibration_dir
            )
        )
    assert list(tmp_path.iterdir()) == []


def test_publish_replaces_an_existing_bundle(tmp_path: Path) -> None:
    target = tmp_path / "b"
    with bundle_writer.staging(target) as folder:
        (folder / "a.txt").write_text("one")
        (folder / "manifest.json").write_text("{}")
    with bundle_writer.staging(target) as folder:
        (folder / "a.txt").write_text("two")
    assert (target / "a.txt").read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["b"]


def test_publish_never_replaces_a_folder_that_is_not_a_bundle(tmp_path: Path) -> None:
    # `cxr-export --out .` renamed the working folder aside and deleted it with everything in it.
    target = tmp_path / "data"
    target.mkdir()
    (target / "scan.png").write_bytes(b"patient image")
    with pytest.raises(
        bundle_writer.BundleWriteError, match=r"is a folder that is not a model bundle.*scan\.png"
    ):
        with bundle_writer.staging(target) as folder:
            (folder / "a.txt").write_text("never published")
    assert (target / "scan.png").read_bytes() == b"patient image"
    assert sorted(p.name for p in target.iterdir()) == ["scan.png"]  # no temp folder left either
    later = target / "later"
    with pytest.raises(bundle_writer.BundleWriteError, match="not a model bundle"):
        with bundle_writer.staging(later) as folder:  # checked again at the rename
            (folder / "manifest.json").write_text("{}")
            later.mkdir()
            (later / "notes.txt").write_text("made while the bundle was built")
    assert sorted(p.name for p in later.iterdir()) == ["notes.txt"]


def test_no_format_built_is_an_error(
    checkpoint_factory: Callable, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calibration_dir: Path
) -> None:
    def broken(context: object, path: Path) -> dict:
        raise RuntimeError("nope")

    monkeypatch.setitem(
        FORMATS,
        "broken",
        ExportFormat(ModelFormat("broken", "b.bin", "onnxruntime", "fp32", "NCHW", "test"), "export", broken),
    )
    with pytest.raises(ExportError, match="no export format could be built.*broken: RuntimeError: nope"):
        export_bundle(
            ExportRequest(
                checkpoint_factory("chexnet"),
                tmp_path / "x",
                formats=("broken",),
                calibration_dir=calibration_dir,
            )
        )
    assert not (tmp_path / "x").exists()


def test_format_registry_lookup() -> None:
    assert [f.name for f in parse_formats("onnx, onnx-int8,onnx")] == ["onnx", "onnx-int8"]
    assert get_format("onnx-int8").int8 and get_format("onnx-int8").suffix == ".onnx"
    with pytest.raises(ValueError, match="did you mean 'onnx-int8'"):
        get_format("onnx-in8")
    with pytest.raises(ValueError, match="no export format"):
        parse_formats(" , ")
