"""The typed bundle manifest: round trips, the version 1 upgrade, and malformed fields named."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest

from cxr_core.bundle import (
    BUNDLE_FORMAT_VERSION,
    BundleError,
    Manifest,
    ModelEntry,
    TensorSpec,
    load_bundle,
    read_manifest,
)
from cxr_core.formats import FORMATS


def _raw(bundle: Path) -> dict[str, Any]:
    return json.loads((bundle / "manifest.json").read_text())


def test_an_exported_manifest_round_trips_unchanged(session_bundle: Path) -> None:
    raw = _raw(session_bundle)
    assert raw["format_version"] == BUNDLE_FORMAT_VERSION
    manifest = Manifest.from_dict(raw)
    assert manifest.to_dict() == raw
    assert Manifest.from_dict(manifest.to_dict()) == manifest


def test_model_entries_are_typed_and_carry_precision_and_runtime(session_bundle: Path) -> None:
    bundle = load_bundle(session_bundle)
    for entry in bundle.models:
        assert isinstance(entry, ModelEntry)
        assert entry.precision == FORMATS[entry.format].precision
        assert entry.runtime == FORMATS[entry.format].runtime
        assert all(isinstance(t, TensorSpec) for t in (*entry.inputs, *entry.outputs))
        assert entry.input.role == "input" and entry.output("probabilities") is not None
    assert bundle.model("onnx-int8").int8 and not bundle.model("onnx").int8


def test_a_version_1_manifest_is_read_and_upgraded(session_bundle: Path) -> None:
    raw = _raw(session_bundle)
    old = copy.deepcopy(raw)
    old["format_version"] = 1
    for model in old["models"]:
        model.pop("precision")
        model["int8"] = model["format"].endswith("int8")
        for tensor in model["inputs"]:
            tensor.pop("role")  # version 1 entries with one input named no role
    manifest = Manifest.from_dict(old)
    assert manifest.format_version == BUNDLE_FORMAT_VERSION
    assert [m.precision for m in manifest.models] == [m["precision"] for m in raw["models"]]
    assert all(m.input.role == "input" for m in manifest.models)
    assert "int8" not in manifest.to_dict()["models"][0]


def test_unknown_keys_survive_a_round_trip(session_bundle: Path) -> None:
    raw = _raw(session_bundle)
    raw["site_note"] = {"kept": True}
    raw["models"][0]["vendor_field"] = 7
    again = Manifest.from_dict(raw).to_dict()
    assert again["site_note"] == {"kept": True} and again["models"][0]["vendor_field"] == 7


def _set(path: str, value: Any) -> Any:
    def edit(raw: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = raw
        for key in parents:
            node = node[int(key)] if key.isdigit() else node[key]
        if value is _DELETE:
            del node[int(last) if last.isdigit() else last]
        else:
            node[int(last) if last.isdigit() else last] = value

    return edit


_DELETE = object()

MALFORMED = [
    ("format_version", 4, r"format_version 4; this cxr-edge reads format_version \[1, 2, 3\]"),
    ("format_version", True, r"format_version: got True \(bool\); expected an integer, one of \[1, 2, 3\]"),
    ("format_version", 3.0, r"format_version: got 3\.0 \(float\); expected an integer"),
    ("labels.1", "Atelectasis", r"\.labels: \['Atelectasis'\] appear more than once"),
    ("labels", "Atelectasis", r"\.labels: got str 'Atelectasis'.*expected a JSON array"),
    ("labels", [], r"\.labels: got an empty list"),
    ("models", [], r"\.models: got an empty list"),
    ("models.0.inputs", _DELETE, r"models\[0\] \(model 'onnx'\): missing key 'inputs'"),
    (
        "models.0.golden_tolerance",
        {"max_abs_dp": math.nan, "feature_map_rel_error": 0.1},
        r"golden_tolerance\.max_abs_dp: got nan",
    ),
    (
        "models.0.golden_tolerance",
        {"max_abs_dp": "0.1", "feature_map_rel_error": 0.1},
        r"max_abs_dp: got '0.1'; expected a finite number",
    ),
    ("models.0.precision", "int4", r"precision: got 'int4'; expected one of \['fp32', 'fp16', 'int8'\]"),
    ("models.0.runtime", "openvino", r"runtime: got 'openvino'; expected one of \['onnxruntime', 'litert'\]"),
    ("models.0.inputs.0.shape", [1, 3, "x", True], r"shape: \[1, 3, 'x', True\] holds True"),
    ("models.0.inputs.0.dtype", "float64", r"dtype: got 'float64'"),
    ("models.0.outputs.0.quantization", {"scale": -1, "zero_point": 0}, r"quantization\.scale: got -1"),
    ("operating_points", [0.5] * 13, r"operating_points: 13 values for 14 labels"),
    ("operating_points.0", math.nan, r"operating_points\[0\]: got nan"),
    ("operating_points.0", 1.5, r"operating_points\[0\]: got 1.5; expected a finite number in \[0, 1\]"),
    ("recommended", {"openvino": "onnx"}, r"recommended key: got 'openvino'"),
    ("files", [], r"\.files: got list"),
    ("files", {}, r"\.files: got an empty object"),
    ("preprocess.input_size", -4, r"\.preprocess: "),
    ("cam.pooling", "median", r"cam\.pooling: got 'median'"),
    ("provenance.checkpoint_epoch", "three", r"provenance\.checkpoint_epoch: got 'three'"),
]


@pytest.mark.parametrize(
    ("path", "value", "message"), MALFORMED, ids=[m[0] + "=" + repr(m[1])[:20] for m in MALFORMED]
)
def test_a_malformed_field_is_a_bundle_error_naming_it(
    session_bundle: Path, path: str, value: Any, message: str
) -> None:
    raw = _raw(session_bundle)
    _set(path, value)(raw)
    with pytest.raises(BundleError, match=message):
        Manifest.from_dict(raw, "manifest.json")


def test_read_manifest_names_the_file_in_its_errors(bundle_copy: Path) -> None:
    raw = _raw(bundle_copy)
    raw["models"][0]["golden_tolerance"] = {"max_abs_dp": -0.1, "feature_map_rel_error": 0.1}
    (bundle_copy / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(BundleError, match=rf"{bundle_copy}/manifest.json\.models\[0\].*max_abs_dp: got -0.1"):
        read_manifest(bundle_copy)


def test_a_listed_file_may_not_leave_the_bundle(bundle_copy: Path) -> None:
    raw = _raw(bundle_copy)
    raw["golden"]["file"] = "../../golden.npz"
    (bundle_copy / "manifest.json").write_text(json.dumps(raw))
    from cxr_core.bundle import load_golden

    with pytest.raises(BundleError, match="leaves the bundle"):
        load_golden(load_bundle(bundle_copy))
