"""FP32 / FP16 / INT8 TFLite through the export pipeline (onnx2tf route), on the tiny CheXNet.

The conversion runs once per session (``session_bundle_all_formats``); every test here reads that
bundle or runs its files. Files are run with the LiteRT interpreter directly (a private runner,
independent of cxr_core.runtime) and compared with the PyTorch model itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from cxr_core.bundle import load_bundle, load_golden
from cxr_core.errors import MissingDependencyError
from quantize import tflite_export
from quantize.tflite_describe import TfliteDescribeError, describe_tflite
from quantize.tflite_export import ONNX2TF_SAMPLE, SAMPLE_SHAPE, TfliteExportError, TfliteInt8Config
from tests.bundle_fixtures import ALL_FORMATS, CALIBRATION_IMAGES, TFLITE_SPEC

TFLITE = ("tflite", "tflite-fp16", "tflite-int8")


def litert_outputs(path: Path, inputs: np.ndarray) -> dict[str, np.ndarray]:
    """Run a .tflite file image by image: NCHW in, outputs found by rank, int8 tensors dequantized."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    interpreter.allocate_tensors()
    (detail,) = interpreter.get_input_details()
    found: dict[str, list[np.ndarray]] = {"probabilities": [], "feature_map": []}
    for image in inputs:
        x = image.transpose(1, 2, 0)[None]
        if detail["dtype"] != np.float32:
            scale, zero = detail["quantization"]
            x = np.clip(np.round(x / scale) + zero, -128, 127)
        interpreter.set_tensor(detail["index"], x.astype(detail["dtype"]))
        interpreter.invoke()
        for out in interpreter.get_output_details():
            value = interpreter.get_tensor(out["index"]).astype(np.float32)
            if out["dtype"] != np.float32:
                scale, zero = out["quantization"]
                value = (value - zero) * scale
            if value.ndim == 2:
                found["probabilities"].append(value)
            else:
                found["feature_map"].append(value.transpose(0, 3, 1, 2))
    return {k: np.concatenate(v) for k, v in found.items()}


def torch_outputs(bundle: Path, inputs: np.ndarray) -> dict[str, np.ndarray]:
    from training.checkpoint import load_model

    manifest = json.loads((bundle / "manifest.json").read_text())
    model, _ = load_model(manifest["provenance"]["checkpoint"])
    with torch.no_grad():
        logits, feature_map = model(torch.from_numpy(inputs), return_features=True)
    return {"probabilities": torch.sigmoid(logits).numpy(), "feature_map": feature_map.numpy()}


def entries(bundle: Path) -> dict[str, dict[str, Any]]:
    manifest = json.loads((bundle / "manifest.json").read_text())
    return {m["name"]: m for m in manifest["models"]}


# --- no conversion needed -------------------------------------------------------------------------


def test_sample_file_is_the_calibration_images_resized_and_cycled() -> None:
    calibration = np.stack([np.full((3, 72, 72), float(i), dtype=np.float32) for i in range(3)])
    calibration[1, 2] = -1.5  # one channel differs: NCHW -> NHWC must keep channels apart
    sample = tflite_export.sample_file_data(calibration)
    assert sample.shape == SAMPLE_SHAPE and sample.dtype == np.float32
    assert np.allclose(sample[0], 0.0) and np.allclose(sample[2], 2.0) and np.allclose(sample[3], 0.0)
    assert np.allclose(sample[1, ..., :2], 1.0) and np.allclose(sample[1, ..., 2], -1.5)
    with pytest.raises(TfliteExportError, match="expected \\(N>0, 3, H, W\\)"):
        tflite_export.sample_file_data(np.zeros((2, 72, 72, 3), dtype=np.float32))


def test_int8_config_is_validated() -> None:
    assert TfliteInt8Config().to_dict() == {"per_channel": True, "io": "float32", "keep_head_float": True}
    with pytest.raises(ValueError, match="io='int16'; expected one of"):
        TfliteInt8Config(io="int16")
    with pytest.raises(ValueError, match="needs keep_head_float=False"):
        TfliteInt8Config(io="int8")
    assert TfliteInt8Config(io="int8", keep_head_float=False).io == "int8"


def test_missing_toolchain_names_the_pip_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tflite_export, "TOOLCHAIN", ("onnx2tf", "no_such_converter_module"))
    with pytest.raises(MissingDependencyError, match="no_such_converter_module") as info:
        tflite_export.check_toolchain()
    assert "pip install --no-deps onnx2tf==1.29.24" in str(info.value)
    assert "pip install -e '.[export]'" in str(info.value)


def test_missing_toolchain_is_a_failed_row_not_a_crash(
    checkpoint_factory: Any, calibration_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from quantize.pipeline import ExportRequest, export_bundle

    monkeypatch.setattr(tflite_export, "TOOLCHAIN", ("no_such_converter_module",))
    request = ExportRequest(
        checkpoint_factory("chexnet"),
        tmp_path / "b",
        formats=("onnx", "tflite", "tflite-int8"),
        calibration_dir=calibration_dir,
        time_formats=False,
    )
    result = export_bundle(request)
    rows = {r["name"]: r for r in result.rows}
    assert rows["onnx"]["status"] == "ok"
    for name in ("tflite", "tflite-int8"):
        assert rows[name]["status"] == "failed"
        assert "MissingDependencyError" in rows[name]["error"] and "--no-deps onnx2tf" in rows[name]["error"]
    assert [m.name for m in result.manifest.models] == ["onnx"]
    assert not list((tmp_path / "b").glob("*.tflite"))


# --- the session bundle (one onnx2tf conversion per session) ----------------------------------


@pytest.mark.needs_tflite
def test_all_five_formats_build_and_pass_the_gate(session_bundle_all_formats: Path) -> None:
    manifest = json.loads((session_bundle_all_formats / "manifest.json").read_text())
    assert [r["name"] for r in manifest["export_report"]] == list(ALL_FORMATS)
    assert all(r["status"] == "ok" and not r["failures"] for r in manifest["export_report"])
    report = manifest["parity"]["formats"]
    assert report["tflite"]["parity"]["max_abs_dp"] <= 1e-4
    assert report["tflite"]["parity"]["feature_map_rel_error"] <= 1e-3
    assert report["tflite-fp16"]["parity"]["max_abs_dp"] <= 0.05
    assert report["tflite-int8"]["parity"]["feature_map_rel_error"] <= 0.25
    assert manifest["recommended"].get("litert") in TFLITE
    bundle = load_bundle(session_bundle_all_formats)  # hashes of the .tflite files match
    assert {m.name for m in bundle.models} == set(ALL_FORMATS)


@pytest.mark.needs_tflite
@pytest.mark.parametrize("name", TFLITE)
def test_manifest_describes_each_tflite_file_by_role(session_bundle_all_formats: Path, name: str) -> None:
    entry = entries(session_bundle_all_formats)[name]
    assert entry["runtime"] == "litert" and entry["file"].endswith(".tflite")
    size = TFLITE_SPEC.input_size
    (inp,) = entry["inputs"]
    assert inp["role"] == "input" and inp["layout"] == "NHWC" and inp["shape"] == ["batch", size, size, 3]
    outputs = {o["role"]: o for o in entry["outputs"]}
    assert outputs["probabilities"]["shape"] == ["batch", 14]
    fmap = outputs["feature_map"]
    assert fmap["layout"] == "NHWC" and fmap["shape"][0] == "batch" and fmap["shape"][1:3] == [2, 2]
    onnx_outputs = entries(session_bundle_all_formats)["onnx"]["outputs"]
    onnx_fmap = next(o for o in onnx_outputs if o["role"] == "feature_map")
    assert fmap["shape"][3] == onnx_fmap["shape"][1]  # channels last, same count as the ONNX NCHW map
    for tensor in [inp, *entry["outputs"]]:
        assert tensor["dtype"] == "float32" and "quantization" not in tensor  # float I/O (docs/export.md)
    assert entry["conversion"]["versions"]["onnx2tf"] == "1.29.24" and entry["conversion"]["seconds"] > 0


@pytest.mark.needs_tflite
def test_int8_file_is_integer_inside_with_a_float_head(session_bundle_all_formats: Path) -> None:
    from ai_edge_litert.interpreter import Interpreter

    entry = entries(session_bundle_all_formats)["tflite-int8"]
    quantization = entry["quantization"]
    assert quantization["calibration_images"] == CALIBRATION_IMAGES and quantization["weights"].startswith(
        "int8 per-channel"
    )
    assert quantization["input_type"] == "float32" and quantization["nodes_kept_float"]
    interpreter = Interpreter(model_path=str(session_bundle_all_formats / entry["file"]))
    dtypes = {d["name"]: np.dtype(d["dtype"]) for d in interpreter.get_tensor_details()}
    assert all(dtypes[name] == np.float32 for name in quantization["nodes_kept_float"])
    int8_tensors = [n for n, d in dtypes.items() if d == np.int8]
    assert len(int8_tensors) > 20  # every convolution's activations and weights
    fp16 = entries(session_bundle_all_formats)["tflite-fp16"]
    assert fp16["quantization"]["weights"] == "float16"
    bundle = session_bundle_all_formats
    sizes = {name: (bundle / e["file"]).stat().st_size for name, e in entries(bundle).items()}
    assert sizes["tflite-fp16"] < 0.8 * sizes["tflite"] and sizes["tflite-int8"] < sizes["tflite-fp16"]


@pytest.mark.needs_tflite
def test_tflite_files_reproduce_pytorch(session_bundle_all_formats: Path) -> None:
    """Independent of the pipeline and cxr_core.runtime: LiteRT directly against the PyTorch model."""
    bundle = session_bundle_all_formats
    golden = load_golden(load_bundle(bundle))
    inputs = golden["inputs"].astype(np.float32)
    reference = torch_outputs(bundle, inputs)
    ref_map = reference["feature_map"]
    limits = {"tflite": (1e-4, 1e-3), "tflite-fp16": (0.02, 0.02), "tflite-int8": (0.1, 0.25)}
    for name, (max_dp, max_fm) in limits.items():
        out = litert_outputs(bundle / entries(bundle)[name]["file"], inputs)
        dp = np.abs(out["probabilities"] - reference["probabilities"]).max()
        fm = np.linalg.norm(out["feature_map"] - ref_map) / np.linalg.norm(ref_map)
        assert dp <= max_dp and fm <= max_fm, (name, dp, fm)


@pytest.mark.needs_tflite
def test_verify_runs_the_tflite_golden_set(session_bundle_all_formats: Path) -> None:
    from quantize.verify import verify_bundle

    report = verify_bundle(session_bundle_all_formats)
    rows = {r["model"]: r for r in report["golden"]}
    for name in TFLITE:
        assert rows[name]["status"] == "pass" and rows[name]["runtime"] == "litert"
    assert rows["tflite"]["max_abs_dp"] <= 1e-4


@pytest.mark.needs_tflite
def test_describe_refuses_a_file_that_does_not_match_its_onnx(session_bundle_all_formats: Path) -> None:
    path = session_bundle_all_formats / "model.tflite"
    onnx_entry = entries(session_bundle_all_formats)["onnx"]
    assert describe_tflite(path, onnx_entry)["inputs"][0]["layout"] == "NHWC"
    wrong_size = json.loads(json.dumps(onnx_entry))
    wrong_size["inputs"][0]["shape"] = ["batch", 3, 64, 64]
    with pytest.raises(TfliteDescribeError, match="expected \\(batch, 64, 64, 3\\)"):
        describe_tflite(path, wrong_size)
    wrong_map = json.loads(json.dumps(onnx_entry))
    next(o for o in wrong_map["outputs"] if o["role"] == "feature_map")["shape"][1] = 999
    with pytest.raises(TfliteDescribeError, match="feature-map output has shape"):
        describe_tflite(path, wrong_map)


@pytest.mark.needs_tflite
def test_sample_file_name_is_the_one_onnx2tf_reads() -> None:
    import importlib.util

    spec = importlib.util.find_spec("onnx2tf")  # read its source without importing TensorFlow
    assert spec is not None and spec.submodule_search_locations
    source = (Path(spec.submodule_search_locations[0]) / "utils" / "common_functions.py").read_text()
    assert "calibration_image_sample_data_{DATA_COUNT}x128x128x3_float32.npy" in source
    assert ONNX2TF_SAMPLE == "calibration_image_sample_data_20x128x128x3_float32.npy"
