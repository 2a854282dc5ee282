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
    assert ops["QLinearConcat"] == report["concats"]
    assert ops["Conv"] == 0 and ops["QLinearConv"] > 0  # the re-quantized biases keep every conv fused
    params = _qlinear_concat_params(optimized)
    assert params and all(len(p) == 1 for p in params)  # one scale/zero point: the kernel copies


def test_shared_scales_keep_golden_parity_with_fp32(quantized: dict[str, object]) -> None:
    x = np.random.default_rng(7).standard_normal((4, 3, 64, 64)).astype(np.float32)
    reference = run_model(Path(str(quantized["fp32"])), x)
    tolerance = DEFAULT_GOLDEN_TOLERANCE["int8"]
    for name in ("separate", "shared"):
        outputs = run_model(Path(str(quantized[name])), x)
        check = golden_check(outputs, reference, tolerance)
        assert check["passed"], (name, check)
        assert check["max_abs_dp"] > 0  # really quantized
