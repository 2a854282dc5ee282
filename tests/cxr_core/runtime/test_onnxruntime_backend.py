"""The ONNX Runtime backend on the suite's real tiny CheXNet bundle (FP32 + INT8 ONNX)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from cxr_core.bundle import ModelEntry, load_bundle, load_golden
from cxr_core.runtime import (
    BatchShapeError,
    ModelFileError,
    ModelSignatureError,
    default_threads,
    open_backend,
    open_model,
)


def _raw_entry(bundle_dir: Path, name: str) -> dict:
    manifest = json.loads((bundle_dir / "manifest.json").read_text())
    return copy.deepcopy(next(m for m in manifest["models"] if m["name"] == name))


def _entry(bundle_dir: Path, name: str) -> ModelEntry:
    return ModelEntry.from_dict(_raw_entry(bundle_dir, name), "test")


@pytest.mark.parametrize("name", ["onnx", "onnx-int8"])
def test_outputs_match_the_golden_set_within_the_entry_tolerance(session_bundle: Path, name: str) -> None:
    bundle = load_bundle(session_bundle)
    golden = load_golden(bundle)
    with open_backend(bundle, model=name, threads=1) as backend:
        assert backend.runtime == "onnxruntime" and backend.model_name == name
        assert backend.input_size == bundle.spec.input_size
        out = backend(golden["inputs"])
    tolerance = bundle.model(name).golden_tolerance
    assert out["probabilities"].dtype == np.float32
    assert out["probabilities"].shape == golden["probabilities"].shape
    assert out["feature_map"].shape == golden["feature_map"].shape
    assert np.abs(out["probabilities"] - golden["probabilities"]).max() <= tolerance.max_abs_dp
    ref = golden["feature_map"]
    rel = np.linalg.norm(out["feature_map"] - ref) / np.linalg.norm(ref)
    assert rel <= tolerance.feature_map_rel_error


@pytest.mark.parametrize("name", ["onnx", "onnx-int8"])
def test_a_batch_of_three_equals_three_batches_of_one(session_bundle: Path, name: str) -> None:
    bundle = load_bundle(session_bundle)
    inputs = load_golden(bundle)["inputs"][:3]
    with open_backend(bundle, model=name, threads=1) as backend:
        together = backend(inputs)
        apart = [backend(inputs[i : i + 1]) for i in range(3)]
    for role in ("probabilities", "feature_map"):
        np.testing.assert_allclose(together[role], np.concatenate([a[role] for a in apart]), atol=1e-5)


@pytest.mark.parametrize("threads", [1, 2])
def test_threads_are_honoured(session_bundle: Path, threads: int) -> None:
    with open_backend(load_bundle(session_bundle), model="onnx", threads=threads) as backend:
        options = backend._session.get_session_options()
        assert backend.threads == threads
        assert options.intra_op_num_threads == threads and options.inter_op_num_threads == 1
        assert backend._session.get_providers() == ["CPUExecutionProvider"]
        assert backend.load_ms > 0


def test_default_threads_are_the_physical_cores_capped_at_four(session_bundle: Path) -> None:
    with open_backend(load_bundle(session_bundle), model="onnx") as backend:
        assert backend.threads == default_threads()
    assert 1 <= default_threads() <= 4


def test_an_entry_without_roles_falls_back_to_the_tensor_names(session_bundle: Path) -> None:
    entry = _raw_entry(session_bundle, "onnx")
    for tensor in entry["inputs"] + entry["outputs"]:
        tensor.pop("role")
    entry["outputs"].reverse()
    golden = load_golden(load_bundle(session_bundle))
    with open_model(session_bundle / "model.onnx", ModelEntry.from_dict(entry, "test"), threads=1) as backend:
        out = backend(golden["inputs"][:2])
    np.testing.assert_allclose(out["probabilities"], golden["probabilities"][:2], atol=1e-4)


def test_a_manifest_with_more_findings_than_the_file_is_refused(session_bundle: Path) -> None:
    entry = _raw_entry(session_bundle, "onnx")
    entry["outputs"][0]["shape"] = ["batch", 15]
    with pytest.raises(
        ModelSignatureError, match=r"\[batch, 14\] in the file; the manifest says \[batch, 15\]"
    ):
        open_model(session_bundle / "model.onnx", ModelEntry.from_dict(entry, "test"), threads=1)


def test_a_manifest_naming_a_tensor_the_file_lacks_is_refused(session_bundle: Path) -> None:
    entry = _raw_entry(session_bundle, "onnx-int8")
    entry["outputs"][1]["name"] = "features"
    with pytest.raises(ModelSignatureError, match="'features' is not in the file"):
        open_model(session_bundle / "model-int8.onnx", ModelEntry.from_dict(entry, "test"), threads=1)


def test_a_file_that_is_not_onnx_is_refused_naming_it(session_bundle: Path, tmp_path: Path) -> None:
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    with pytest.raises(ModelFileError, match=r"model\.onnx is not a valid ONNX model.*'onnx'"):
        open_model(fake, _entry(session_bundle, "onnx"), threads=1)
    with pytest.raises(ModelFileError, match="does not exist"):
        open_model(tmp_path / "missing.onnx", _entry(session_bundle, "onnx"), threads=1)


def test_a_file_with_a_fixed_batch_of_one_runs_a_batch_of_three(session_bundle: Path, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(session_bundle / "model.onnx"))
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_value = 1
    fixed = tmp_path / "fixed.onnx"
    onnx.save(model, str(fixed))
    golden = load_golden(load_bundle(session_bundle))
    with open_model(fixed, _entry(session_bundle, "onnx"), threads=1) as backend:
        assert backend.fixed_batch == 1
        out = backend(golden["inputs"][:3])
    np.testing.assert_allclose(out["probabilities"], golden["probabilities"][:3], atol=1e-4)
    assert out["feature_map"].shape[0] == 3


def test_a_batch_of_the_wrong_shape_is_refused(session_bundle: Path) -> None:
    backend = open_backend(load_bundle(session_bundle), model="onnx", threads=1)
    with pytest.raises(BatchShapeError, match=r"\(2, 3, 32, 32\).*expected \(N, 3, 64, 64\)"):
        backend(np.zeros((2, 3, 32, 32), np.float32))
    with pytest.raises(BatchShapeError, match="NCHW"):
        backend(np.zeros((2, 64, 64, 3), np.float32))
    backend.close()
    with pytest.raises(RuntimeError, match="closed"):
        backend(np.zeros((1, 3, 64, 64), np.float32))


@pytest.mark.parametrize("spinning", [False, True])
def test_spinning_workers_stop_when_an_inference_returns(spinning: bool) -> None:
    import onnxruntime as ort

    from cxr_core.runtime.onnxruntime_backend import session_options
    from cxr_core.runtime.settings import RuntimeSettings

    options = session_options(ort, 2, RuntimeSettings(spinning=spinning))
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == ("1" if spinning else "0")
    if spinning:  # spinning only during an inference, never between images
        assert options.get_session_config_entry("session.force_spinning_stop") == "1"
