"""Concat scale sharing on a real quantized tiny DenseNet: Concats become copies, parity still holds."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from cxr_core.parity import DEFAULT_GOLDEN_TOLERANCE, golden_check
from quantize.concat_scales import concat_groups_consistent
from quantize.onnx_export import export_onnx
from quantize.onnx_int8 import QuantConfig, quantize_int8
from quantize.ort_run import run_model, session
from tests.bundle_fixtures import SPEC, tiny_model


@pytest.fixture(scope="module")
def quantized(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("concat")
    fp32 = root / "fp32.onnx"
    export_onnx(tiny_model("chexnet"), SPEC, fp32)
    calibration = np.random.default_rng(0).standard_normal((6, 3, 64, 64)).astype(np.float32)
    separate, shared = root / "separate.onnx", root / "shared.onnx"
    quantize_int8(fp32, separate, calibration, QuantConfig(share_concat_scales=False, layer_report=False))
    info = quantize_int8(fp32, shared, calibration, QuantConfig(share_concat_scales=True, layer_report=False))
    return {"fp32": fp32, "separate": separate, "shared": shared, "info": info, "root": root}


def _qlinear_concat_params(optimized: Path) -> list[set[tuple[float, int]]]:
    """For each QLinearConcat of an optimised graph: the set of (scale, zero point) it touches."""
    model = onnx.load(str(optimized))
    values = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    out = []
    for node in model.graph.node:
        if node.op_type != "QLinearConcat":
            continue
        # inputs: Y_scale, Y_zero_point, then (X, X_scale, X_zero_point) per input
        names = list(node.input)
        pairs = [(names[0], names[1])] + [(names[i + 1], names[i + 2]) for i in range(2, len(names), 3)]
        out.append({(float(values[s].item()), int(values[z].item())) for s, z in pairs})
    return out


def test_concat_inputs_share_the_output_scale_and_every_conv_stays_int8(
    quantized: dict[str, object], tmp_path: Path
) -> None:
    separate, shared = Path(str(quantized["separate"])), Path(str(quantized["shared"]))
    assert concat_groups_consistent(onnx.load(str(separate))), "without sharing the Concats requantize"
    assert concat_groups_consistent(onnx.load(str(shared))) == []
    report = quantized["info"]["concat_scale_sharing"]  # type: ignore[index]
    assert report["concats"] > 0 and report["groups"] > 0 and report["skipped_groups"] == 0

    optimized = tmp_path / "optimized.onnx"
    session(shared, optimized_path=optimized)
    ops = Counter(n.op_type for n in onnx.load(str(optimized)).graph.node)
    # every Concat runs on the quantized bytes: no QLinearConcat, no float Concat between Q/DQ
    assert report["integer_concats"] == report["concats"] and ops["QLinearConcat"] == 0
    assert ops["Concat"] == report["concats"]
    assert ops["Conv"] == 0 and ops["QLinearConv"] > 0  # the re-quantized biases keep every conv fused
    assert _qlinear_concat_params(optimized) == []
    # the tiny DenseNet has one layer per block: nothing to chain (see the hand-built graph below)
    assert report["chained_concats"] == 0


def _shared_qdq_concat_graph() -> onnx.ModelProto:
    """Three features of x quantized on one scale; Concat(f1, f2) and Concat(f1, f2, f3) between
    DequantizeLinear and QuantizeLinear nodes of that scale: two dense layers' concatenations."""
    from onnx import TensorProto, helper

    nodes = [helper.make_node("Relu", ["x"], ["f1"]), helper.make_node("Sigmoid", ["x"], ["f2"])]
    nodes.append(helper.make_node("Abs", ["x"], ["f3"]))
    for name in ("f1", "f2", "f3"):
        nodes += [
            helper.make_node("QuantizeLinear", [name, "s", "z"], [f"{name}_q"]),
            helper.make_node("DequantizeLinear", [f"{name}_q", "s", "z"], [f"{name}_d"]),
        ]
    for out, parts in (("c1", ["f1_d", "f2_d"]), ("c2", ["f1_d", "f2_d", "f3_d"])):
        nodes += [
            helper.make_node("Concat", parts, [out], axis=1),
            helper.make_node("QuantizeLinear", [out, "s", "z"], [f"{out}_q"]),
            helper.make_node("DequantizeLinear", [f"{out}_q", "s", "z"], [f"{out}_out"]),
        ]
    graph = helper.make_graph(
        nodes,
        "concats",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 3, 3])],
        [
            helper.make_tensor_value_info("c1_out", TensorProto.FLOAT, [1, 4, 3, 3]),
            helper.make_tensor_value_info("c2_out", TensorProto.FLOAT, [1, 6, 3, 3]),
        ],
        [
            numpy_helper.from_array(np.array(0.02, dtype=np.float32), "s"),
            numpy_helper.from_array(np.array(10, dtype=np.uint8), "z"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_integer_concats_chain_a_blocks_concatenations_bit_for_bit(tmp_path: Path) -> None:
    from quantize.concat_integer import concat_on_integers

    before, after = tmp_path / "before.onnx", tmp_path / "after.onnx"
    onnx.save(_shared_qdq_concat_graph(), str(before))
    model, report = concat_on_integers(_shared_qdq_concat_graph())
    onnx.checker.check_model(model)
    onnx.save(model, str(after))
    assert report.to_dict() == {"integer_concats": 2, "chained_concats": 1}
    concats = {n.output[0]: n for n in model.graph.node if n.op_type == "Concat"}
    second = concats["c2_q"]
    assert list(second.input) == ["c1_q", "f3_q"]  # the first Concat's bytes, then the new feature
    assert not any(n.op_type == "QuantizeLinear" and n.input[0] in ("c1", "c2") for n in model.graph.node)
    x = np.random.default_rng(5).standard_normal((1, 2, 3, 3)).astype(np.float32)
    import onnxruntime as ort

    expected = ort.InferenceSession(str(before), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    got = ort.InferenceSession(str(after), providers=["CPUExecutionProvider"]).run(None, {"x": x})
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_concat_with_its_own_scale_is_left_alone() -> None:
    from quantize.concat_integer import concat_on_integers

    model = _shared_qdq_concat_graph()
    quantizer = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "c2")
    model.graph.initializer.append(numpy_helper.from_array(np.array(0.05, dtype=np.float32), "s2"))
    quantizer.input[1] = "s2"  # c2's output on another scale: its round trip is not exact
    model, report = concat_on_integers(model)
    assert report.integer_concats == 1 and report.chained_concats == 0


def test_the_integer_concats_are_bit_identical_to_the_scale_shared_qdq_graph(
    quantized: dict[str, object], tmp_path: Path
) -> None:
    """Rebuild the scale-shared QDQ graph (before the integer pass) and compare every output bit."""
    from quantize.concat_scales import share_concat_scales

    separate = onnx.load(str(quantized["separate"]))
    qdq_only, _ = share_concat_scales(separate)
    path = tmp_path / "qdq_shared.onnx"
    onnx.save(qdq_only, str(path))
    assert Counter(n.op_type for n in qdq_only.graph.node)["Concat"] > 0
    x = np.random.default_rng(3).standard_normal((3, 3, 64, 64)).astype(np.float32)
    before = run_model(path, x)
    after = run_model(Path(str(quantized["shared"])), x)
    for role in before:
        np.testing.assert_array_equal(before[role], after[role])


def test_shared_scales_keep_golden_parity_with_fp32(quantized: dict[str, object]) -> None:
    x = np.random.default_rng(7).standard_normal((4, 3, 64, 64)).astype(np.float32)
    reference = run_model(Path(str(quantized["fp32"])), x)
    tolerance = DEFAULT_GOLDEN_TOLERANCE["int8"]
    for name in ("separate", "shared"):
        outputs = run_model(Path(str(quantized[name])), x)
        check = golden_check(outputs, reference, tolerance)
        assert check["passed"], (name, check)
        assert check["max_abs_dp"] > 0  # really quantized
