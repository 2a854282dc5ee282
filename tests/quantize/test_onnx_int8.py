"""BatchNorm -> depthwise rewrite and ONNX Runtime static INT8 quantization of tiny models."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest

from quantize.graph_rewrite import batchnorm_to_depthwise
from quantize.onnx_export import export_onnx
from quantize.onnx_int8 import QuantConfig, QuantizationError, head_nodes, quantize_int8
from quantize.ort_run import run_model, session
from tests.bundle_fixtures import SPEC, tiny_model


@pytest.fixture(scope="module", params=["chexnet", "dgc"])
def fp32_model(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("int8") / f"{request.param}.onnx"
    export_onnx(tiny_model(request.param), SPEC, path)
    return path


def _inputs(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((count, 3, 64, 64)).astype(np.float32)


def test_batchnorm_rewrite_is_exact_and_removes_every_batchnorm(fp32_model: Path, tmp_path: Path) -> None:
    original = onnx.load(str(fp32_model))
    before = Counter(n.op_type for n in original.graph.node)
    assert before["BatchNormalization"] > 0  # DenseNet's pre-activation norms survive export
    rewritten, replaced = batchnorm_to_depthwise(original)
    after = Counter(n.op_type for n in rewritten.graph.node)
    assert replaced == before["BatchNormalization"]
    assert after["BatchNormalization"] == 0
    assert after["Conv"] == before["Conv"] + replaced
    target = tmp_path / "rewritten.onnx"
    onnx.save(rewritten, str(target))
    x = _inputs(3)
    ref, got = run_model(fp32_model, x), run_model(target, x)
    for name in ("probabilities", "feature_map"):
        assert np.abs(got[name] - ref[name]).max() < 1e-4


def test_int8_graph_fuses_without_float_batchnorm_and_keeps_head_float(
    fp32_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "int8.onnx"
    info = quantize_int8(fp32_model, out, _inputs(6), QuantConfig())
    assert info["batchnorms_rewritten"] > 0
    assert info["calibration_images"] == 6
    kept = info["nodes_kept_float"]
    assert any("Gemm" in name for name in kept) and any("Sigmoid" in name for name in kept)

    optimized = tmp_path / "optimized.onnx"
    session(out, optimized_path=optimized)
    ops = Counter(n.op_type for n in onnx.load(str(optimized)).graph.node)
    assert ops["BatchNormalization"] == 0
    assert ops["QLinearConv"] > 0 and ops["Conv"] == 0  # every convolution runs in INT8

    quantized = onnx.load(str(out))
    producers = {o: n for n in quantized.graph.node for o in n.output}
    sigmoid = producers["probabilities"]
    assert sigmoid.op_type == "Sigmoid"
    gemm = producers[sigmoid.input[0]]
    assert gemm.op_type == "Gemm"
    weight_source = producers.get(gemm.input[1])
    assert weight_source is None or weight_source.op_type != "DequantizeLinear"  # float classifier weights


def test_int8_runs_and_stays_sane_on_tiny_model(fp32_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "int8.onnx"
    quantize_int8(fp32_model, out, _inputs(6))
    x = _inputs(4, seed=5)
    ref, got = run_model(fp32_model, x), run_model(out, x)
    delta = np.abs(got["probabilities"] - ref["probabilities"])
    assert got["feature_map"].shape == ref["feature_map"].shape
    assert (
        0 < delta.max() < 0.5
    )  # quantized (not identical) yet sane; tiny random models are not accuracy tests


def test_head_nodes_are_everything_downstream_of_the_feature_map(fp32_model: Path) -> None:
    names = head_nodes(onnx.load(str(fp32_model)))
    assert len(names) == 3  # pool, Gemm, Sigmoid


def test_quant_config_is_validated() -> None:
    with pytest.raises(QuantizationError, match="calibration='entropy'"):
        QuantConfig(calibration="entropy")
    with pytest.raises(QuantizationError, match="percentile"):
        QuantConfig(percentile=100.0)
    assert QuantConfig().to_dict()["reduce_range"] is True


def test_quantize_refuses_empty_calibration(fp32_model: Path, tmp_path: Path) -> None:
    with pytest.raises(QuantizationError, match="no images"):
        quantize_int8(fp32_model, tmp_path / "x.onnx", np.zeros((0, 3, 64, 64), np.float32))


def test_layer_report_ranks_activations_and_keeping_layers_float_excludes_their_nodes(
    fp32_model: Path, tmp_path: Path
) -> None:
    calibration = _inputs(4)
    base = quantize_int8(fp32_model, tmp_path / "base.onnx", calibration, QuantConfig())
    ranking = base["most_sensitive_activations"]
    assert ranking, "the layer-wise comparison found no quantized activation"
    sqnr = [row["qdq_sqnr_db"] for row in ranking]
    assert sqnr == sorted(sqnr)  # worst (lowest SQNR) first
    kept = quantize_int8(fp32_model, tmp_path / "kept.onnx", calibration, QuantConfig(keep_float_layers=2))
    extra = set(kept["nodes_kept_float"]) - set(base["nodes_kept_float"])
    assert extra, "keeping the 2 most sensitive layers float excluded no node"
    graph = onnx.load(str(tmp_path / "kept.onnx")).graph
    quantized_inputs = {i for n in graph.node if n.op_type == "DequantizeLinear" for i in n.output}
    for node in graph.node:
        if node.name in extra and node.op_type == "Conv":
            assert not quantized_inputs.intersection(node.input[1:2]), f"{node.name} still has INT8 weights"
    run_model(tmp_path / "kept.onnx", calibration)  # still a valid model
    with pytest.raises(QuantizationError, match="keep_float_layers=-1"):
        QuantConfig(keep_float_layers=-1)
