"""FP32 ONNX export of tiny CheXNet and DGC models: names, dynamic batch, parity with PyTorch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from quantize.onnx_export import FEATURE_MAP, INPUT_NAME, PROBABILITIES, export_onnx
from quantize.ort_run import run_model
from tests.bundle_fixtures import SPEC, tiny_model
from training.models import probabilities


@pytest.mark.parametrize("architecture", ["chexnet", "dgc"])
def test_fp32_onnx_matches_pytorch_at_batch_1_and_3(architecture: str, tmp_path: Path) -> None:
    model = tiny_model(architecture)
    path = tmp_path / "model.onnx"
    info = export_onnx(model, SPEC, path)

    assert [i["name"] for i in info.inputs] == [INPUT_NAME]
    assert [o["name"] for o in info.outputs] == [PROBABILITIES, FEATURE_MAP]
    assert info.inputs[0]["shape"] == ["batch", 3, 64, 64]
    assert info.outputs[0]["shape"] == ["batch", 14]
    assert info.outputs[1]["shape"][0] == "batch" and info.outputs[1]["layout"] == "NCHW"
    assert info.opset == 17

    rng = np.random.default_rng(1)
    for batch in (1, 3):
        x = rng.standard_normal((batch, 3, 64, 64)).astype(np.float32)
        got = run_model(path, x, batch_size=batch)
        with torch.no_grad():
            logits, feature_map = model(torch.from_numpy(x), return_features=True)
        ref_p = probabilities(logits).numpy()
        ref_f = feature_map.numpy()
        assert got[PROBABILITIES].shape == (batch, 14)
        assert got[FEATURE_MAP].shape == ref_f.shape and ref_f.shape[2:] == (2, 2)
        assert np.abs(got[PROBABILITIES] - ref_p).max() < 1e-5
        assert np.linalg.norm(got[FEATURE_MAP] - ref_f) / np.linalg.norm(ref_f) < 1e-4


def test_dgc_is_exported_in_eval_mode_without_sampling_noise(tmp_path: Path) -> None:
    model = tiny_model("dgc")
    model.train()  # export must switch it to eval itself: z = mu, no randn in the graph
    path = tmp_path / "dgc.onnx"
    export_onnx(model, SPEC, path)
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert not ops & {"RandomNormalLike", "RandomNormal", "RandomUniformLike", "Dropout"}
    x = np.random.default_rng(2).standard_normal((2, 3, 64, 64)).astype(np.float32)
    first, second = run_model(path, x), run_model(path, x)
    assert np.array_equal(first[PROBABILITIES], second[PROBABILITIES])
    assert "ReduceMax" in ops  # the DGC's global max pool


def test_multiclass3_head_exports_positive_probability(tmp_path: Path) -> None:
    from training.models import ModelConfig, build_model

    torch.manual_seed(0)
    model = build_model(
        ModelConfig(architecture="chexnet", encoder="tiny-densenet", latent_dim=64, head="multiclass3")
    ).eval()
    path = tmp_path / "mc3.onnx"
    info = export_onnx(model, SPEC, path)
    assert info.outputs[0]["shape"] == ["batch", 14]
    x = np.random.default_rng(3).standard_normal((2, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        ref = probabilities(model(torch.from_numpy(x)), "multiclass3").numpy()
    assert np.abs(run_model(path, x)[PROBABILITIES] - ref).max() < 1e-5


def test_nhwc_spec_is_refused(tmp_path: Path) -> None:
    from cxr_core.preprocess import PreprocessSpec
    from quantize.onnx_export import ExportError

    with pytest.raises(ExportError, match="layout='NHWC'"):
        export_onnx(
            tiny_model("chexnet"),
            PreprocessSpec(input_size=64, resize_to=72, layout="NHWC"),
            tmp_path / "m.onnx",
        )
