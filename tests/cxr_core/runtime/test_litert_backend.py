"""The LiteRT backend on real .tflite files (float32, full int8, fixed batch 1) against their Keras model."""

from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import pytest

from cxr_core.runtime import ModelFileError, ModelSignatureError, open_model
from tests.cxr_core.runtime.tflite_files import LABELS, SIZE, TFLiteFiles, sample_inputs
from tests.manifest_entries import entry_of

pytestmark = pytest.mark.needs_tflite


def test_float_file_matches_keras_with_nchw_feature_maps(tflite_files: TFLiteFiles) -> None:
    batch = sample_inputs(4)
    with open_model(
        tflite_files.paths["model"], entry_of(tflite_files.entries["model"]), threads=1
    ) as backend:
        assert backend.runtime == "litert" and backend.input_size == SIZE
        assert backend.fixed_batch is None
        out = backend(batch)
    ref = tflite_files.reference(batch)
    assert out["probabilities"].shape == (4, LABELS) and out["probabilities"].dtype == np.float32
    assert out["feature_map"].shape == (4, 6, 4, 4)
    np.testing.assert_allclose(out["probabilities"], ref["probabilities"], atol=1e-5)
    np.testing.assert_allclose(out["feature_map"], ref["feature_map"], atol=1e-4, rtol=1e-4)


def test_int8_file_is_quantized_and_dequantized_with_its_own_parameters(tflite_files: TFLiteFiles) -> None:
    batch = sample_inputs(4)
    entry = tflite_files.entries["model-int8"]
    assert entry["inputs"][0]["dtype"] == "int8" and all(o["dtype"] == "int8" for o in entry["outputs"])
    with open_model(tflite_files.paths["model-int8"], entry_of(entry), threads=1) as backend:
        out = backend(batch)
        fmap_scale = backend.signature.outputs["feature_map"].scale
    ref = tflite_files.reference(batch)
    assert out["probabilities"].dtype == np.float32 and out["feature_map"].shape == (4, 6, 4, 4)
    assert np.abs(out["probabilities"] - ref["probabilities"]).max() < 0.05
    rel = np.linalg.norm(out["feature_map"] - ref["feature_map"]) / np.linalg.norm(ref["feature_map"])
    assert rel < 0.1
    # Dequantized values sit on the output's own grid: (q - zero_point) * scale.
    steps = out["feature_map"] / fmap_scale
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-3)


def test_a_fixed_batch_one_file_runs_a_batch_of_three(tflite_files: TFLiteFiles) -> None:
    batch = sample_inputs(3)
    entry = tflite_files.entries["model-b1"]
    assert entry["inputs"][0]["shape"][0] == 1
    with open_model(tflite_files.paths["model-b1"], entry_of(entry), threads=1) as backend:
        assert backend.fixed_batch == 1
        out = backend(batch)
    ref = tflite_files.reference(batch)
    np.testing.assert_allclose(out["probabilities"], ref["probabilities"], atol=1e-5)
    np.testing.assert_allclose(out["feature_map"], ref["feature_map"], atol=1e-4, rtol=1e-4)


def test_a_dynamic_batch_file_gives_the_same_outputs_at_any_batch_size(tflite_files: TFLiteFiles) -> None:
    batch = sample_inputs(3)
    with open_model(
        tflite_files.paths["model-int8"], entry_of(tflite_files.entries["model-int8"]), threads=2
    ) as backend:
        assert backend.threads == 2
        together = backend(batch)
        apart = [backend(batch[i : i + 1]) for i in range(3)]
    for role in ("probabilities", "feature_map"):
        np.testing.assert_array_equal(together[role], np.concatenate([a[role] for a in apart]))


def test_tensorflow_fallback_runs_and_warns_why(
    tflite_files: TFLiteFiles, caplog: pytest.LogCaptureFixture
) -> None:
    batch = sample_inputs(2)
    with caplog.at_level(logging.WARNING, logger="cxr_core.runtime.litert_backend"):
        backend = open_model(
            tflite_files.paths["model"], entry_of(tflite_files.entries["model"]), runtime="tensorflow"
        )
    assert backend.runtime == "tensorflow"
    assert "deprecated in favour of ai-edge-litert" in caplog.text
    out = backend(batch)
    backend.close()
    np.testing.assert_allclose(
        out["probabilities"], tflite_files.reference(batch)["probabilities"], atol=1e-5
    )


def test_a_scale_that_disagrees_with_the_manifest_is_refused(tflite_files: TFLiteFiles) -> None:
    entry = copy.deepcopy(tflite_files.entries["model-int8"])
    fmap = next(o for o in entry["outputs"] if o["role"] == "feature_map")
    fmap["quantization"]["scale"] *= 2
    with pytest.raises(ModelSignatureError, match=r"model-int8\.tflite: tensor .*\(feature_map\) has scale"):
        open_model(tflite_files.paths["model-int8"], entry_of(entry))


def test_a_manifest_with_more_findings_than_the_file_is_refused(tflite_files: TFLiteFiles) -> None:
    entry = copy.deepcopy(tflite_files.entries["model"])
    probs = next(o for o in entry["outputs"] if o["role"] == "probabilities")
    probs["shape"] = ["batch", LABELS + 1]
    with pytest.raises(ModelSignatureError, match=rf"\[batch, {LABELS}\] in the file; the manifest says"):
        open_model(tflite_files.paths["model"], entry_of(entry))


def test_the_dtype_must_match_the_manifest(tflite_files: TFLiteFiles) -> None:
    entry = copy.deepcopy(tflite_files.entries["model-int8"])
    entry["inputs"][0]["dtype"] = "float32"
    with pytest.raises(ModelSignatureError, match="is int8 in the file; the manifest says float32"):
        open_model(tflite_files.paths["model-int8"], entry_of(entry))


def test_an_int8_entry_without_recorded_quantization_uses_the_file(tflite_files: TFLiteFiles) -> None:
    entry = copy.deepcopy(tflite_files.entries["model-int8"])
    for tensor in entry["inputs"] + entry["outputs"]:
        tensor.pop("quantization")
    batch = sample_inputs(2)
    with open_model(tflite_files.paths["model-int8"], entry_of(entry), threads=1) as backend:
        out = backend(batch)
    assert np.abs(out["probabilities"] - tflite_files.reference(batch)["probabilities"]).max() < 0.05


def test_a_file_that_is_not_tflite_is_refused_naming_it(tflite_files: TFLiteFiles, tmp_path: Path) -> None:
    fake = tmp_path / "model.tflite"
    fake.write_bytes(b"not a flatbuffer" * 20)
    with pytest.raises(
        ModelFileError, match=r"model\.tflite is not a valid TFLite model for litert.*'tflite'"
    ):
        open_model(fake, entry_of(tflite_files.entries["model"]))


def test_an_output_name_the_file_lacks_is_refused(tflite_files: TFLiteFiles) -> None:
    entry = copy.deepcopy(tflite_files.entries["model"])
    entry["outputs"][0]["name"] = "Identity_7"
    with pytest.raises(ModelSignatureError, match="'Identity_7' is not in the file"):
        open_model(tflite_files.paths["model"], entry_of(entry))


def test_without_xnnpack_the_file_gives_the_same_outputs(
    tflite_files: TFLiteFiles, caplog: pytest.LogCaptureFixture
) -> None:
    from cxr_core.runtime import RuntimeSettings

    batch = sample_inputs(2)
    entry = entry_of(tflite_files.entries["model"])
    with caplog.at_level(logging.INFO, logger="cxr_core.runtime.litert_backend"):
        with open_model(
            tflite_files.paths["model"], entry, threads=1, settings=RuntimeSettings(xnnpack=False)
        ) as plain:
            out = plain(batch)
    assert any("no-xnnpack" in r.getMessage() for r in caplog.records)
    ref = tflite_files.reference(batch)
    np.testing.assert_allclose(out["probabilities"], ref["probabilities"], atol=1e-5)
    np.testing.assert_allclose(out["feature_map"], ref["feature_map"], atol=1e-4, rtol=1e-4)
