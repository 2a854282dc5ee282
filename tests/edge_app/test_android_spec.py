"""The Android packaging, checked offline with buildozer's and python-for-android's own code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

pytest.importorskip("buildozer", reason="the offline spec check needs buildozer (pip install buildozer)")
pytest.importorskip("pythonforandroid", reason="the recipe check needs python-for-android")

from cxr_core.bundle import BundleError  # noqa: E402
from edge_app.android.spec_check import SPEC_PATH, check_spec  # noqa: E402
from edge_app.android.stage import stage  # noqa: E402
from edge_app.platform.android_litert import LITERT_GRADLE_DEPENDENCY  # noqa: E402


def test_the_shipped_spec_passes() -> None:
    report = check_spec()
    assert report.ok, report.summary()
    assert report.archs == ["arm64-v8a"] and report.bootstrap == "sdl2"
    for recipe in ("python3", "kivy", "numpy", "pillow", "pyjnius", "android"):
        assert recipe in report.recipes
    assert report.recipes.index("python3") < report.recipes.index("numpy") < report.recipes.index("kivy")
    assert "pydicom" in report.python_modules and "onnxruntime" not in report.recipes + report.python_modules
    assert {"android.permission.CAMERA", "android.permission.READ_MEDIA_IMAGES"} <= {
        p["name"] for p in report.permissions
    }
    legacy = next(p for p in report.permissions if p["name"] == "android.permission.READ_EXTERNAL_STORAGE")
    assert legacy["maxSdkVersion"] == "32"
    assert LITERT_GRADLE_DEPENDENCY in SPEC_PATH.read_text()


def _variant(tmp_path: Path, old: str, new: str) -> Path:
    text = SPEC_PATH.read_text()
    assert old in text, old
    spec = tmp_path / "buildozer.spec"
    spec.write_text(text.replace(old, new))
    return spec


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("pydicom==3.0.2", "pydicom==3.0.2,onnxruntime", "cannot be built for Android"),
        ("pydicom==3.0.2", "pydicom==3.0.2,some_compiled_lib", "not known pure-Python"),
        ("title = cxr-edge\n", "", '"title" is missing'),
        ("android.archs = arm64-v8a", "android.archs = armeabi-v7a", "lacks arm64-v8a"),
        ("android.archs = arm64-v8a", "android.archs = arm64-v8a, mips", "'mips' is not one"),
        ("maxSdkVersion=32)", "maxSdk=32)", "python-for-android rejects them"),
        ("CAMERA, ", "", "lacks android.permission.CAMERA"),
        ("android.gradle_dependencies = com.google.ai.edge.litert:litert:2.3.0", "", "lacks LiteRT"),
        ("source.include_exts = py,kv,typed,json", "source.include_exts = py", "lacks kv"),
        ("orientation = portrait, landscape", "orientation = sideways, landscape", "sideways"),
    ],
)
def test_broken_specs_are_caught(tmp_path: Path, old: str, new: str, expected: str) -> None:
    report = check_spec(_variant(tmp_path, old, new))
    assert not report.ok and any(expected in error for error in report.errors), report.errors


def test_stage_copies_only_device_code(tmp_path: Path, bundle_copy: Path) -> None:
    with pytest.raises(BundleError, match="no .tflite model"):
        stage([bundle_copy], tmp_path / "out")
    manifest_path = bundle_copy / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    tflite = {"name": "tflite-int8", "format": "tflite-int8", "precision": "int8", "runtime": "litert"}
    manifest["models"].append({**manifest["models"][0], **tflite, "file": "model-int8.tflite"})
    manifest_path.write_text(json.dumps(manifest))
    paths = stage([bundle_copy], tmp_path / "out")
    app = paths["app"]
    assert (app / "main.py").read_text().count("main([])") == 1
    assert (app / "cxr_core" / "predictor.py").is_file() and (app / "edge_app" / "kv" / "root.kv").is_file()
    assert (app / "edge_app" / "platform" / "android_litert.py").is_file()
    for absent in (
        "edge_app/android",
        "edge_app/deploy",
        "edge_app/tools",
        "training",
        "tests",
        "benchmarks",
    ):
        assert not (app / absent).exists(), absent
    assert not list(app.rglob("__pycache__"))
    assert (paths["assets"] / bundle_copy.name / "manifest.json").is_file()
    stage([], tmp_path / "out")  # re-staging starts from scratch
    assert not list(paths["assets"].iterdir())
    shutil.rmtree(tmp_path / "out")
