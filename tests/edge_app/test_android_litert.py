"""The Android LiteRT backend off-device: import safety, and its tensor handling over the real LiteRT.

The backend's Java layer (``JavaInterpreter``) needs an Android runtime; here the backend runs
over :class:`DesktopTwin`, the same thin interface (tensor reports, raw bytes in and out)
implemented with the desktop LiteRT interpreter on real .tflite files, so the binding by role,
the byte packing, NHWC and int8 handling are checked against cxr_core's own LiteRT backend.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cxr_core.runtime.signature import signature_of
from edge_app.platform.android_litert import (
    AndroidLiteRTBackend,
    JavaInterpreter,
    TensorInfo,
    _signed_bytes_to_bytes,
)
from edge_app.platform.jni import AndroidOnlyError
from tests.cxr_core.runtime.tflite_files import TFLiteFiles, sample_inputs, tflite_files  # noqa: F401
from tests.manifest_entries import entry_of

REPO = Path(__file__).resolve().parents[2]


def test_android_modules_import_on_a_desktop() -> None:
    code = (
        "import sys, edge_app.platform.android, edge_app.platform.android_litert, "
        "edge_app.android.stage; "
        "assert 'jnius' not in sys.modules and 'kivy' not in sys.modules, sorted(sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


def test_android_parts_say_they_need_android(tmp_path: Path) -> None:
    from edge_app.platform import get_adapter

    with pytest.raises(AndroidOnlyError, match="only inside the Android app"):
        JavaInterpreter(tmp_path / "model.tflite", 2)
    with pytest.raises(AndroidOnlyError, match="system picker"):
        get_adapter("android")
    assert get_adapter("linux").name == "desktop"


def test_java_byte_arrays_become_bytes() -> None:
    assert _signed_bytes_to_bytes([-1, 0, 127, -128]) == bytes([255, 0, 127, 128])
    assert _signed_bytes_to_bytes(bytearray(b"\x01\xff")) == b"\x01\xff"


class DesktopTwin:
    """JavaInterpreter's interface over ai-edge-litert (outputs indexed by position, as in Java)."""

    def __init__(self, path: Path, threads: int) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=threads)
        self.interpreter.allocate_tensors()
        self.closed = False

    @staticmethod
    def _info(position: int, detail: dict) -> TensorInfo:
        scale, zero_point = detail["quantization"]
        return TensorInfo(
            position,
            detail["name"],
            tuple(int(d) for d in detail["shape"]),
            np.dtype(detail["dtype"]).name,
            scale or None,
            zero_point if scale else None,
        )

    def inputs(self) -> list[TensorInfo]:
        return [self._info(i, d) for i, d in enumerate(self.interpreter.get_input_details())]

    def outputs(self) -> list[TensorInfo]:
        return [self._info(i, d) for i, d in enumerate(self.interpreter.get_output_details())]

    def run(self, data: bytes) -> list[bytes]:
        detail = self.interpreter.get_input_details()[0]
        array = np.frombuffer(data, dtype=detail["dtype"]).reshape(detail["shape"])
        self.interpreter.set_tensor(detail["index"], array)
        self.interpreter.invoke()
        details = self.interpreter.get_output_details()
        return [self.interpreter.get_tensor(d["index"]).tobytes() for d in details]

    def close(self) -> None:
        self.closed = True


@pytest.mark.needs_tflite
@pytest.mark.slow  # TensorFlow builds the .tflite files: ~10 s
@pytest.mark.parametrize("name", ["model", "model-int8", "model-b1"])
def test_backend_matches_cxr_core_litert(tflite_files: TFLiteFiles, name: str) -> None:  # noqa: F811
    from cxr_core.runtime import open_model

    path, entry = tflite_files.paths[name], tflite_files.entries[name]
    twin = DesktopTwin(path, 1)
    backend = AndroidLiteRTBackend(path, signature_of(entry_of(entry), path), 1, interpreter=twin)
    reference = open_model(path, entry_of(entry), runtime="litert", threads=1)
    batch = sample_inputs(3)
    got, want = backend(batch), reference(batch)
    assert set(got) == {"probabilities", "feature_map"}
    for role in got:
        assert got[role].dtype == np.float32 and got[role].shape == want[role].shape
        np.testing.assert_allclose(got[role], want[role], rtol=0, atol=1e-6)
    keras = tflite_files.reference(batch)
    tolerance = 0.05 if "int8" in name else 1e-4
    np.testing.assert_allclose(got["probabilities"], keras["probabilities"], atol=tolerance)
    assert backend.runtime == "litert-android" and backend.input_size == batch.shape[-1]
    backend.close()
    assert twin.closed


@pytest.mark.needs_tflite
@pytest.mark.slow
def test_manifest_and_file_disagreeing_is_refused(tflite_files: TFLiteFiles) -> None:  # noqa: F811
    from cxr_core.runtime import ModelSignatureError

    path = tflite_files.paths["model"]
    entry = dict(tflite_files.entries["model"])
    entry["outputs"] = [
        dict(o, name="renamed") if o["role"] == "feature_map" else o for o in entry["outputs"]
    ]
    with pytest.raises(ModelSignatureError, match="'renamed' is not in the file"):
        AndroidLiteRTBackend(path, signature_of(entry_of(entry), path), 1, interpreter=DesktopTwin(path, 1))


@pytest.mark.needs_tflite
@pytest.mark.slow  # the all-formats bundle goes through onnx2tf: ~40 s once per session
def test_predictor_with_the_android_backend(session_bundle_all_formats: Path, image_files) -> None:  # type: ignore[no-untyped-def]
    """What the phone runs -- Predictor(bundle, the Android LiteRT backend) -- against desktop LiteRT."""
    from cxr_core.predictor import Predictor, load_verified_bundle
    from edge_app.platform.android_litert import choose_tflite_entry, open_android_backend

    bundle = load_verified_bundle(session_bundle_all_formats)
    entry = choose_tflite_entry(bundle)
    assert entry.runtime == "litert" and entry.file.endswith(".tflite")
    backend = open_android_backend(bundle, threads=1, interpreter_factory=DesktopTwin)
    phone = Predictor(bundle, backend).predict_file(image_files["png"])
    with Predictor.load(session_bundle_all_formats, model=entry.name, runtime="litert", threads=1) as desk:
        desktop = desk.predict_file(image_files["png"])
    assert phone.runtime == "litert-android" and phone.model_name == desktop.model_name
    for mine, theirs in zip(phone.findings, desktop.findings, strict=True):
        assert mine.label == theirs.label and mine.above_operating_point == theirs.above_operating_point
        assert mine.model_output == pytest.approx(theirs.model_output, abs=1e-6)
    label = phone.ranked()[0].label
    np.testing.assert_allclose(phone.heatmap(label), desktop.heatmap(label), atol=1e-5)


def test_android_self_test_opener_reports_onnx_as_unavailable(session_bundle: Path) -> None:
    from cxr_core.bundle import load_bundle
    from cxr_core.runtime import RuntimeUnavailableError
    from edge_app.platform.android import open_android_model

    bundle = load_bundle(session_bundle)
    with pytest.raises(RuntimeUnavailableError, match="onnx.*does not ship"):
        open_android_model(bundle, bundle.model("onnx"), threads=1)
