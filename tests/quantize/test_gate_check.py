"""cxr-export runs the whole learned gate over the validation images and refuses to publish a bundle
that turns away more than 2% of them (quantize/gate_check.py)."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from cxr_core.bundle import Manifest, load_bundle, read_manifest
from quantize.gate_check import MAX_VALIDATION_FRR, GateRefusalRateError, describe, validate_staged


def _validation_images(manifest: Manifest) -> list[Path]:
    """Every held-out validation image: the INT8 calibration images, then the parity images."""
    parts = [manifest.calibration or {}, (manifest.parity or {})["images"]]
    return [Path(part["root"]) / name for part in parts for name in part.get("files", [])]


def test_the_gated_bundle_records_its_validation_false_refusal_rate(gated_bundle: Path) -> None:
    manifest = load_bundle(gated_bundle).manifest
    validation = manifest.gate_validation
    assert validation is not None and validation.enforced
    assert validation.max_false_refusal_rate == MAX_VALIDATION_FRR == 0.02
    assert set(validation.models) == {"onnx", "onnx-int8"}
    gate = manifest.gate
    assert gate is not None
    for row in validation.models.values():
        assert row.images == gate.validation_images == len(_validation_images(manifest))
        assert row.false_refusal_rate <= 0.02 and row.refused == round(row.false_refusal_rate * row.images)
        assert set(row.refused_by_signal) >= {"feature_mahalanobis"}
        assert max(row.refused_by_signal.values(), default=0) <= row.refused
    assert "validation images" in validation.images
    # written through the typed schema: the JSON on disk round-trips
    raw = json.loads((gated_bundle / "manifest.json").read_text(encoding="utf-8"))
    assert raw["gate_validation"]["models"]["onnx"]["images"] == gate.validation_images


def _strict(manifest: Manifest, distance: float) -> Manifest:
    gate = manifest.gate
    assert gate is not None
    strict = dataclasses.replace(gate, thresholds=dict.fromkeys(gate.thresholds, distance))
    return dataclasses.replace(manifest, gate=strict, gate_validation=None)


def test_artificially_strict_thresholds_are_refused_naming_format_rate_and_limit(
    gated_bundle: Path, tmp_path: Path
) -> None:
    copy = Path(shutil.copytree(gated_bundle, tmp_path / "staged"))
    manifest = read_manifest(copy)
    images = _validation_images(manifest)
    strict = _strict(manifest, 1e-3)  # every validation image is farther than this
    with pytest.raises(GateRefusalRateError) as caught:
        validate_staged(copy, strict, images)
    message = str(caught.value)
    assert "onnx" in message and "onnx-int8" in message and "100.0%" in message
    assert "more than 2%" in message and "nothing was written" in message
    assert f"{len(images)} of {len(images)}" in message and "--allow-high-refusal-rate" in message
    rows = caught.value.validation.models
    assert rows["onnx"].refused == len(images) and rows["onnx"].refused_by_signal[
        "feature_mahalanobis"
    ] == len(images)
    # the override publishes, with the measured rates recorded
    published = validate_staged(copy, strict, images, enforce=False)
    assert published.gate_validation is not None and not published.gate_validation.enforced
    assert published.gate_validation.models["onnx-int8"].false_refusal_rate == 1.0
    assert any("100.0%" in line and "limit 2%" in line for line in describe(published.gate_validation))


def test_a_bundle_without_a_learned_gate_is_not_measured(gated_bundle: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(gated_bundle, tmp_path / "staged"))
    manifest = read_manifest(copy)
    (copy / "gate.npz").unlink()
    manifest = dataclasses.replace(manifest, gate=None, quality=None, autoencoder=None, gate_validation=None)
    kept = validate_staged(copy, manifest, _validation_images(manifest))
    assert kept.gate_validation is None


@pytest.mark.slow  # an export of its own: 3.5 s on an idle machine, 27 s under load
def test_cxr_export_with_a_low_acceptance_writes_nothing(gated_bundle: Path, tmp_path: Path) -> None:
    """End to end: the gated fixture's checkpoint and phantoms, thresholds at 50% acceptance."""
    from quantize.pipeline import ExportRequest, export_bundle
    from tests.bundle_fixtures import write_checkpoint
    from training.data.synthetic import generate_chestxray14

    root = tmp_path / "phantoms"
    generate_chestxray14(root, n_images=120, image_size=64, seed=0, progress=False, overwrite=True)
    checkpoint = write_checkpoint(
        tmp_path / "chexnet.pt",
        "chexnet",
        {"dataset": "synthetic", "data_root": str(root), "val_fraction": 0.3},
    )
    out = tmp_path / "bundle"
    request = ExportRequest(
        checkpoint,
        out,
        formats=("onnx",),
        calibration_images=8,
        time_formats=False,
        enforce_gate=False,
        gate_acceptance=0.5,
    )
    with pytest.raises(GateRefusalRateError, match=r"onnx: \d+ of \d+ \(\d+\.\d%"):
        export_bundle(request)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".bundle")]
