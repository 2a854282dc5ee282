"""A bundle of only .tflite files: automatic choice falls to LiteRT; verify runs the golden set on it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cxr_core.bundle import load_bundle, sha256_file
from cxr_core.preprocess import PreprocessSpec
from cxr_core.runtime import open_backend
from quantize.verify import GoldenMismatchError, verify_bundle
from tests.cxr_core.runtime.tflite_files import LABELS, SIZE, TFLiteFiles, sample_inputs
from tests.signing import resign

pytestmark = pytest.mark.needs_tflite

TOLERANCE = {"tflite": {"max_abs_dp": 1e-4, "feature_map_rel_error": 1e-3}}
TOLERANCE["tflite-int8"] = {"max_abs_dp": 0.05, "feature_map_rel_error": 0.1}


def _write_bundle(files: TFLiteFiles, root: Path, recommended: dict[str, str]) -> Path:
    root.mkdir()
    models = []
    for source, name in (("model", "tflite"), ("model-int8", "tflite-int8")):
        entry = {**files.entries[source], "name": name, "format": name, "file": f"{source}.tflite"}
        shutil.copyfile(files.paths[source], root / entry["file"])
        entry.update(int8=name.endswith("int8"), golden_tolerance=TOLERANCE[name])
        entry["sha256"] = sha256_file(root / entry["file"])
        models.append(entry)
    inputs = sample_inputs(3, seed=7)
    np.savez(root / "golden.npz", inputs=inputs, **files.reference(inputs))
    listed = {m["file"]: {"sha256": m["sha256"]} for m in models}
    listed["golden.npz"] = {"sha256": sha256_file(root / "golden.npz")}
    # The classifier the Predictor (and so verify) reads: the Keras head's own weights, (L, C) and (L,).
    kernel, bias = files.keras_model.get_layer("probabilities").get_weights()
    np.savez(root / "classifier.npz", weight=kernel.T.astype(np.float32), bias=bias.astype(np.float32))
    listed["classifier.npz"] = {"sha256": sha256_file(root / "classifier.npz")}
    manifest = {
        "format_version": 1,
        "architecture": "keras-tiny",
        "labels": [f"finding{i}" for i in range(LABELS)],
        "preprocess": PreprocessSpec(input_size=SIZE, resize_to=SIZE + 4).to_dict(),
        "models": models,
        "files": listed,
        "recommended": recommended,
    }
    (root / "manifest.json").write_text(json.dumps(manifest))
    resign(root)
    return root


def test_automatic_choice_falls_to_litert_and_its_recommendation(
    tflite_files: TFLiteFiles, tmp_path: Path
) -> None:
    bundle = load_bundle(_write_bundle(tflite_files, tmp_path / "b", {"litert": "tflite-int8"}))
    with open_backend(bundle, threads=1) as backend:
        assert (backend.model_name, backend.runtime) == ("tflite-int8", "litert")
    with open_backend(bundle, runtime="tensorflow", threads=1) as backend:
        assert (backend.model_name, backend.runtime) == ("tflite-int8", "tensorflow")


def test_verify_runs_the_golden_set_through_every_tflite_file(
    tflite_files: TFLiteFiles, tmp_path: Path
) -> None:
    report = verify_bundle(_write_bundle(tflite_files, tmp_path / "b", {}), threads=1)
    rows = {row["model"]: row for row in report["golden"]}
    assert {name: (row["status"], row["runtime"]) for name, row in rows.items()} == {
        "tflite": ("pass", "litert"),
        "tflite-int8": ("pass", "litert"),
    }
    assert rows["tflite"]["max_abs_dp"] < 1e-5 < rows["tflite-int8"]["max_abs_dp"]


def test_verify_refuses_a_file_that_does_not_reproduce_the_golden_set(
    tflite_files: TFLiteFiles, tmp_path: Path
) -> None:
    root = _write_bundle(tflite_files, tmp_path / "b", {})
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["models"][1]["golden_tolerance"] = {"max_abs_dp": 1e-6, "feature_map_rel_error": 1e-6}
    (root / "manifest.json").write_text(json.dumps(manifest))
    resign(root)
    with pytest.raises(GoldenMismatchError, match=r"model-int8\.tflite: outputs differ from the reference"):
        verify_bundle(root, threads=1)
