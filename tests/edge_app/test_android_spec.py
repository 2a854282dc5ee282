"""The Android packaging, checked offline with buildozer's and python-for-android's own code."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("buildozer", reason="the offline spec check needs buildozer (pip install buildozer)")
pytest.importorskip("pythonforandroid", reason="the recipe check needs python-for-android")

from cxr_core.bundle import BundleError  # noqa: E402
from cxr_core.bundle.signing import (  # noqa: E402
    TRUSTED_KEYS_ENV,
    BundleTrustError,
    BundleUntrustedKeyError,
    generate_key,
    key_id,
    read_public,
    sign_manifest,
    trusted_keys_dir,
)
from cxr_core.errors import CxrEdgeError  # noqa: E402
from cxr_core.predictor import load_verified_bundle  # noqa: E402
from edge_app.android.spec_check import SPEC_PATH, check_spec  # noqa: E402
from edge_app.android.stage import stage  # noqa: E402
from edge_app.packaged import use_packaged_trusted_keys  # noqa: E402
from edge_app.platform.android import load_android_predictor  # noqa: E402
from edge_app.platform.android_litert import LITERT_GRADLE_DEPENDENCY  # noqa: E402
from tests.signing import resign  # noqa: E402


def test_the_shipped_spec_passes() -> None:
    report = check_spec()
    assert report.ok, report.summary()
    assert report.archs == ["arm64-v8a"] and report.bootstrap == "sdl2"
    for recipe in ("python3", "kivy", "numpy", "pillow", "pyjnius", "android", "cryptography"):
        assert recipe in report.recipes
    assert report.recipes.index("openssl") < report.recipes.index("cryptography")  # Ed25519 from OpenSSL 3
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
        ("source.include_exts = py,kv,typed,json,pub", "source.include_exts = py", "lacks kv"),
        ("source.include_exts = py,kv,typed,json,pub", "source.include_exts = py,kv,typed,json", "lacks pub"),
        ("pydicom==3.0.2,cryptography", "pydicom==3.0.2", "lack cryptography"),
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
    with pytest.raises(BundleError, match="would not verify on the phone"):  # edited, not re-signed
        stage([bundle_copy], tmp_path / "out")
    resign(bundle_copy)
    paths = stage([bundle_copy], tmp_path / "out")
    app = paths["app"]
    assert (app / "main.py").read_text().count("main([])") == 1
    assert "use_packaged_trusted_keys" in (app / "main.py").read_text()
    # default keys: the ones this machine trusts (the test session's key)
    assert sorted(p.name for p in paths["trusted_keys"].iterdir()) == sorted(
        p.name for p in trusted_keys_dir().glob("*.pub")
    )
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


def _tflite_bundle(bundle: Path) -> Path:
    manifest_path = bundle / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    tflite = {"name": "tflite-int8", "format": "tflite-int8", "precision": "int8", "runtime": "litert"}
    manifest["models"].append({**manifest["models"][0], **tflite, "file": "model-int8.tflite"})
    manifest_path.write_text(json.dumps(manifest))
    return bundle


def test_the_staged_keys_verify_bundles_through_the_apps_own_path(
    tmp_path: Path, bundle_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The builder chooses the APK's keys (--trusted-key); the staged main.py points the signature
    check at them; a bundle signed by a staged key loads through the same code as on a desktop,
    one signed by another key is refused -- here with the staged folder, as on the phone."""
    builder_key = generate_key(tmp_path / "builder" / "signing-key.pem")
    other_key = generate_key(tmp_path / "other" / "signing-key.pem")
    loadable = shutil.copytree(bundle_copy, tmp_path / "loadable")  # all its files real (ONNX)
    sign_manifest(loadable, key_path=builder_key)
    bundle = _tflite_bundle(bundle_copy)  # stageable: names a .tflite model (not loadable here)
    sign_manifest(bundle, key_path=builder_key)
    with pytest.raises(BundleError, match="would not verify on the phone"):
        stage([bundle], tmp_path / "out", trusted=[other_key.with_suffix(".pub")])
    paths = stage([bundle], tmp_path / "out", trusted=[builder_key.with_suffix(".pub")])
    builder_id = key_id(read_public(builder_key.with_suffix(".pub")))
    assert [p.name for p in paths["trusted_keys"].iterdir()] == [f"{builder_id}.pub"]

    monkeypatch.delenv(TRUSTED_KEYS_ENV, raising=False)  # the phone: nothing set before main.py
    assert use_packaged_trusted_keys(paths["app"]) == paths["trusted_keys"]
    assert trusted_keys_dir() == paths["trusted_keys"]
    loaded = load_verified_bundle(loadable)  # what the app's predictor loader calls
    assert loaded.trust.state == "trusted" and loaded.trust.key_id == builder_id

    # the Android predictor loader, as the app calls it (with its opt-in setting): the trust check
    # passes, then the bundle's lack of a .tflite model stops it (no LiteRT for Android here)
    with pytest.raises(CxrEdgeError) as err:
        load_android_predictor(loadable, model=None, runtime=None, threads=1, allow_untrusted=False)
    assert not isinstance(err.value, BundleTrustError) and "tflite" in str(err.value).lower()

    sign_manifest(loadable, key_path=other_key)  # a key the APK does not ship
    with pytest.raises(BundleUntrustedKeyError):
        load_verified_bundle(loadable)
    with pytest.raises(BundleUntrustedKeyError):
        load_android_predictor(loadable, allow_untrusted=False)
    with pytest.raises(CxrEdgeError) as err:  # opted in: accepted, then the same missing .tflite
        load_android_predictor(loadable, allow_untrusted=True)
    assert not isinstance(err.value, BundleTrustError)
    monkeypatch.setenv(TRUSTED_KEYS_ENV, str(tmp_path / "chosen"))  # an explicit choice wins
    assert use_packaged_trusted_keys(paths["app"]) == tmp_path / "chosen"


def test_an_app_without_staged_keys_trusts_the_default_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TRUSTED_KEYS_ENV, raising=False)
    assert use_packaged_trusted_keys(tmp_path) is None
    assert TRUSTED_KEYS_ENV not in os.environ
