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


# ----------------------------------------------------------------------------- damaged array files


def _gated(root: Path) -> Path:
    """:func:`make_bundle` with a feature gate and image-quality checks: real .npz files, signed."""
    from dataclasses import replace

    from cxr_core.bundle.schema import GateInfo, QualityInfo

    make_bundle(root)
    write_npz(root / "gate.npz", mean=np.zeros(5, np.float32), precision=np.eye(5, dtype=np.float32))
    template = np.random.default_rng(1).standard_normal((64, 64)).astype(np.float32)
    write_npz(root / "quality.npz", template=template)
    gate = GateInfo(
        signal="feature_mahalanobis",
        pooling="mean",
        shrinkage=0.1,
        acceptance=0.99,
        fitted_on="test",
        train_images=10,
        validation_images=10,
        thresholds={"onnx": 3.0},
    )
    quality = QualityInfo(
        acceptance=0.99,
        check_acceptance=0.99,
        fitted_on="test",
        train_images=10,
        validation_images=10,
        thresholds={"exposure": 0.5},
    )
    write_manifest(root, replace(read_manifest(root), gate=gate, quality=quality))
    return root


def _npz_bytes(**arrays: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _damaged_member(arrays: dict[str, np.ndarray]) -> bytes:
    """A compressed .npz whose deflate stream is overwritten in the middle (zip directory intact)."""
    import io

    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    data = bytearray(buffer.getvalue())
    middle = len(data) // 3
    data[middle : middle + 16] = b"\xff" * 16
    return bytes(data)


WEIGHT = np.ones((3, 5), np.float32)
BIAS = np.zeros(3, np.float32)
#: (file, its new bytes, what the error must say). Each is re-hashed and re-signed: only the file is bad.
DAMAGES = [
    ("classifier.npz", lambda b: b[: len(b) // 2], r"classifier\.npz \(\d+ bytes\) is not a readable .npz.*"),
    (
        "classifier.npz",
        lambda b: b"this is not an npz file",
        r"classifier\.npz: got a file starting with b'this'",
    ),
    (
        "classifier.npz",
        lambda b: _npz_bytes(weight=np.zeros(3, np.float32), bias=BIAS),
        r"'weight' has shape \(3,\)",
    ),
    (
        "classifier.npz",
        lambda b: _npz_bytes(weight=np.array(["a"] * 3), bias=BIAS),
        r"'weight' has dtype <U1",
    ),
    (
        "classifier.npz",
        lambda b: _npz_bytes(weight=np.full((3, 5), np.nan, np.float32), bias=BIAS),
        "non-finite",
    ),
    ("classifier.npz", lambda b: _npz_bytes(weight=np.ones((4, 5), np.float32), bias=BIAS), r"for 3 labels"),
    (
        "classifier.npz",
        lambda b: _npz_bytes(weight=np.array([[object()] * 5] * 3, dtype=object), bias=BIAS),
        r"'weight' cannot be read \(it holds Python objects",
    ),
    (
        "classifier.npz",
        lambda b: _damaged_member({"weight": WEIGHT, "bias": BIAS}),
        "cannot be read|not a readable",
    ),
    ("gate.npz", lambda b: b[: len(b) // 2], r"gate\.npz \(\d+ bytes\) is not a readable .npz"),
    (
        "gate.npz",
        lambda b: _npz_bytes(mean=np.full(5, np.inf, np.float32), precision=np.eye(5)),
        "'mean' holds 5 non",
    ),
    ("quality.npz", lambda b: b[: len(b) // 2], r"quality\.npz \(\d+ bytes\) is not a readable .npz"),
    ("quality.npz", lambda b: b"this is not an npz file", r"quality\.npz: got a file starting with b'this'"),
    ("golden.npz", lambda b: b[: len(b) // 2], r"golden\.npz \(\d+ bytes\) is not a readable .npz"),
]


@pytest.mark.parametrize(
    ("name", "damage", "message"), DAMAGES, ids=[f"{d[0]}-{i}" for i, d in enumerate(DAMAGES)]
)
def test_a_damaged_array_file_is_a_bundle_error_naming_it(
    tmp_path: Path, name: str, damage, message: str
) -> None:
    """A signed bundle whose exporter published a bad .npz: refused when read, never a crash.

    The old loader let BadZipFile, zlib.error, IndexError (1-D weight) and ValueError (text weight)
    through, passed NaN weights, and relayed numpy's advice to load pickled data unsafely.
    """
    from cxr_core.bundle import load_feature_gate, load_quality_template

    root = _gated(tmp_path / "b")
    path = root / name
    path.write_bytes(damage(path.read_bytes()))
    write_manifest(root, read_manifest(root))  # re-hashed and re-signed by the (trusted) exporter
    bundle = load_bundle(root)  # the hashes and the signature are fine
    loader = {
        "classifier.npz": load_cam_weights,
        "gate.npz": load_feature_gate,
        "quality.npz": load_quality_template,
        "golden.npz": load_golden,
    }[name]
    with pytest.raises(BundleError, match=message) as caught:
        loader(bundle)
    text = str(caught.value)
    assert str(path) in text and "expected" in text
    assert "allow_pickle" not in text and "unsafely" not in text


def test_a_manifest_with_a_huge_integer_is_a_bundle_error_naming_it(tmp_path: Path) -> None:
    root = make_bundle(tmp_path / "b")
    text = (root / "manifest.json").read_text()
    (root / "manifest.json").write_text(
        text.replace('"format_version": 3', '"format_version": ' + "9" * 5001)
    )
    with pytest.raises(BundleError, match=r"manifest\.json cannot be read: Exceeds the limit") as caught:
        read_manifest(root)
    assert str(root / "manifest.json") in str(caught.value)
    assert "set_int_max_str_digits" not in str(caught.value)
