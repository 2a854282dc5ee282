"""cxr_core.bundle: read and verify a bundle folder with numpy + json only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cxr_core.bundle import (
    BUNDLE_FORMAT_VERSION,
    BundleError,
    BundleIntegrityError,
    Manifest,
    load_bundle,
    load_cam_weights,
    load_golden,
    read_manifest,
    sha256_file,
)
from cxr_core.bundle.writer import write_manifest, write_npz
from cxr_core.preprocess import PreprocessSpec
from tests.manifest_entries import entry_of

LABELS = ["A", "B", "C"]


def make_bundle(root: Path) -> Path:
    """A small but complete bundle folder: a model file, golden set, classifier weights, manifest."""
    root.mkdir()
    (root / "model.onnx").write_bytes(b"not a real graph, but hashed like one" * 10)
    rng = np.random.default_rng(0)
    write_npz(
        root / "golden.npz",
        inputs=rng.standard_normal((2, 3, 16, 16)).astype(np.float32),
        probabilities=rng.random((2, 3)).astype(np.float32),
        feature_map=rng.random((2, 5, 1, 1)).astype(np.float32),
    )
    write_npz(root / "classifier.npz", weight=np.ones((3, 5), np.float32), bias=np.zeros(3, np.float32))
    entry = {
        "name": "onnx",
        "file": "model.onnx",
        "format": "onnx",
        "inputs": [{"name": "input", "shape": ["batch", 3, 16, 16], "layout": "NCHW"}],
        "outputs": [{"name": "probabilities", "shape": ["batch", 3]}],
    }
    manifest = Manifest(
        architecture="chexnet-tiny-densenet",
        labels=tuple(LABELS),
        preprocess=PreprocessSpec(input_size=16, resize_to=16),
        operating_points=(0.2, 0.5, 0.7),
        models=(entry_of(entry),),
        files={},
    )
    write_manifest(root, manifest)
    return root


def test_load_verified_bundle(tmp_path: Path) -> None:
    root = make_bundle(tmp_path / "b")
    bundle = load_bundle(root)
    assert bundle.labels == tuple(LABELS) and bundle.operating_points == (0.2, 0.5, 0.7)
    assert bundle.spec.input_size == 16
    entry = bundle.model("onnx")
    assert entry.sha256 == sha256_file(root / "model.onnx") and bundle.path(entry) == root / "model.onnx"
    assert bundle.manifest.format_version == BUNDLE_FORMAT_VERSION
    assert set(bundle.manifest.files) == {"model.onnx", "golden.npz", "classifier.npz"}
    assert load_golden(bundle)["inputs"].shape == (2, 3, 16, 16)
    weight, bias = load_cam_weights(bundle)
    assert weight.shape == (3, 5) and bias.shape == (3,)
    with pytest.raises(BundleError, match="no model 'tflite'.*\\['onnx'\\]"):
        bundle.model("tflite")


def test_modified_model_file_is_refused_naming_it(tmp_path: Path) -> None:
    root = make_bundle(tmp_path / "b")
    data = bytearray((root / "model.onnx").read_bytes())
    data[5] ^= 0xFF
    (root / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(
        BundleIntegrityError, match="model.onnx has sha256 [0-9a-f]{64}; the manifest expects"
    ):
        load_bundle(root)
    load_bundle(root, verify=False)  # reading without verification is still possible (for diagnostics)


def test_missing_listed_file_is_refused(tmp_path: Path) -> None:
    root = make_bundle(tmp_path / "b")
    (root / "golden.npz").unlink()
    with pytest.raises(BundleIntegrityError, match="golden.npz is missing"):
        load_bundle(root)


def test_wrong_format_version_is_refused(tmp_path: Path) -> None:
    root = make_bundle(tmp_path / "b")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["format_version"] = BUNDLE_FORMAT_VERSION + 1
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=f"format_version {BUNDLE_FORMAT_VERSION + 1}; this cxr-edge reads"):
        load_bundle(root)


def test_missing_or_broken_manifest_is_refused(tmp_path: Path) -> None:
    root = make_bundle(tmp_path / "b")
    (root / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="manifest.json is not valid JSON"):
        read_manifest(root)
    (root / "manifest.json").unlink()
    with pytest.raises(BundleError, match="has no manifest.json"):
        load_bundle(root)
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nowhere")


def test_manifest_cannot_point_outside_the_bundle(tmp_path: Path) -> None:
    root = make_bundle(tmp_path / "b")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["files"]["../secret"] = {"sha256": "0" * 64}
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="leaves the bundle"):
        load_bundle(root)


def test_model_entry_must_match_listed_hash(tmp_path: Path) -> None:
    root = make_bundle(tmp_path / "b")
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["models"][0]["sha256"] = "f" * 64
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleIntegrityError, match="model 'onnx' file 'model.onnx' is not listed"):
        load_bundle(root)


def test_preprocess_spec_that_does_not_fit_the_model_is_refused(session_bundle: Path, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "b"
    shutil.copytree(session_bundle, root)
    load_bundle(root)  # the exported spec fits its models
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["preprocess"]["input_size"] = manifest["preprocess"]["input_size"] * 2
    manifest["preprocess"]["resize_to"] = manifest["preprocess"]["input_size"] + 16
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="PreprocessSpec makes .* but model 'onnx'.*does not belong"):
        load_bundle(root)
    manifest["preprocess"]["interpolation"] = "bicubc"
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="preprocess.*bicubc"):
        load_bundle(root)
