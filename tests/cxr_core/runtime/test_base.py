"""The I/O adaptation helpers: layouts, affine quantization, signatures and cross-checks."""

from __future__ import annotations

import numpy as np
import pytest

from cxr_core.bundle import TensorSpec
from cxr_core.runtime.errors import ModelSignatureError
from cxr_core.runtime.signature import check_tensor, signature_of
from cxr_core.runtime.tensors import (
    dequantize,
    from_runtime,
    nchw_to_nhwc,
    nhwc_to_nchw,
    quantize,
    to_runtime,
)
from cxr_core.runtime.threads import resolve_threads
from tests.manifest_entries import entry_of

ENTRY = {
    "name": "tflite-int8",
    "format": "tflite-int8",
    "inputs": [
        {"name": "x", "role": "input", "shape": ["batch", 8, 8, 3], "dtype": "float32", "layout": "NHWC"}
    ],
    "outputs": [
        {
            "name": "Identity_1",
            "role": "feature_map",
            "shape": ["batch", 2, 2, 5],
            "layout": "NHWC",
            "dtype": "int8",
            "quantization": {"scale": 0.05, "zero_point": -128},
        },
        {"name": "Identity", "role": "probabilities", "shape": ["batch", 4], "dtype": "float32"},
    ],
}


def test_layout_round_trip() -> None:
    nchw = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    nhwc = nchw_to_nhwc(nchw)
    assert nhwc.shape == (2, 4, 5, 3) and nhwc.flags["C_CONTIGUOUS"]
    assert nhwc[1, 2, 3, 0] == nchw[1, 0, 2, 3]
    np.testing.assert_array_equal(nhwc_to_nchw(nhwc), nchw)


def test_quantize_rounds_and_clips_to_the_dtype_range() -> None:
    values = np.array([-100.0, -0.26, 0.0, 0.24, 0.26, 100.0], np.float32)
    q = quantize(values, scale=0.5, zero_point=3, dtype="int8")
    assert q.dtype == np.int8
    assert q.tolist() == [-128, 2, 3, 3, 4, 127]
    u = quantize(values, scale=0.5, zero_point=3, dtype="uint8")
    assert u.dtype == np.uint8 and u.tolist() == [0, 2, 3, 3, 4, 203]
    np.testing.assert_allclose(dequantize(q, 0.5, 3), [-65.5, -0.5, 0.0, 0.0, 0.5, 62.0])


def test_quantized_input_and_output_adaptation() -> None:
    spec = TensorSpec("x", "input", (None, 4, 4, 3), "int8", "NHWC", scale=0.02, zero_point=-5)
    batch = np.random.default_rng(0).uniform(-1, 1, (2, 3, 4, 4)).astype(np.float32)
    ready = to_runtime(batch, spec)
    assert ready.shape == (2, 4, 4, 3) and ready.dtype == np.int8
    back = from_runtime(ready, spec)
    assert back.shape == batch.shape and back.dtype == np.float32
    assert np.abs(back - batch).max() <= 0.01 + 1e-6


def test_float16_input_is_cast() -> None:
    spec = TensorSpec("x", "input", (None, 3, 2, 2), "float16", "NCHW")
    assert to_runtime(np.ones((1, 3, 2, 2), np.float32), spec).dtype == np.float16


def test_an_integer_tensor_without_scale_is_refused() -> None:
    spec = TensorSpec("y", "feature_map", (None, 2, 2, 5), "int8", "NHWC")
    with pytest.raises(ModelSignatureError, match="'y' \\(feature_map\\) is int8 but has no positive scale"):
        from_runtime(np.zeros((1, 2, 2, 5), np.int8), spec)


def test_signature_maps_outputs_by_role_not_position() -> None:
    signature = signature_of(entry_of(ENTRY), "bundle/model-int8.tflite")
    assert signature.input.layout == "NHWC" and signature.input_size == 8
    assert signature.outputs["probabilities"].name == "Identity"
    fmap = signature.outputs["feature_map"]
    assert (fmap.scale, fmap.zero_point, fmap.shape) == (0.05, -128, (None, 2, 2, 5))


def test_signature_needs_a_probabilities_output() -> None:
    entry = {**ENTRY, "outputs": [ENTRY["outputs"][0]]}
    with pytest.raises(ModelSignatureError, match="no output has role 'probabilities'"):
        signature_of(entry_of(entry), "m.tflite")


def test_check_tensor_compares_scale_zero_point_and_shape() -> None:
    fmap = signature_of(entry_of(ENTRY), "m").outputs["feature_map"]
    ok = check_tensor(fmap, (1, 2, 2, 5), "int8", "m.tflite", scale=0.05, zero_point=-128)
    assert ok.shape == (1, 2, 2, 5)
    with pytest.raises(ModelSignatureError, match="scale 0.07 in the file; the manifest says 0.05"):
        check_tensor(fmap, (1, 2, 2, 5), "int8", "m.tflite", scale=0.07, zero_point=-128)
    with pytest.raises(ModelSignatureError, match="zero point 0 in the file; the manifest says -128"):
        check_tensor(fmap, (1, 2, 2, 5), "int8", "m.tflite", scale=0.05, zero_point=0)
    with pytest.raises(ModelSignatureError, match="is uint8 in the file; the manifest says int8"):
        check_tensor(fmap, (1, 2, 2, 5), "uint8", "m.tflite", scale=0.05, zero_point=0)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_threads_must_be_a_positive_int(bad: object) -> None:
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        resolve_threads(bad)  # type: ignore[arg-type]
