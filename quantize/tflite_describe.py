"""Describe a .tflite file's inputs and outputs for the bundle manifest, by role (no TensorFlow).

onnx2tf names TFLite outputs ``PartitionedCall:0``/``:1`` and orders them differently in the
FP32, FP16 and INT8 files, so roles are assigned by shape, never by position or name: the one
2-D output is ``probabilities`` ``(batch, L)``, the one 4-D output is ``feature_map``. Every
shape is cross-checked with the FP32 ONNX export the file was converted from: the input must be
``(batch, H, W, C)`` (NHWC) and the feature map ``(batch, h, w, C)`` (NHWC, onnx2tf's layout) or,
if a converter kept it, ``(batch, C, h, w)`` (NCHW). Integer-typed tensors carry their own
per-tensor ``{"scale", "zero_point"}``. Read with the LiteRT interpreter (``ai_edge_litert``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cxr_core.errors import CxrEdgeError
from cxr_core.optional import require

DTYPES = {np.dtype(np.float32): "float32", np.dtype(np.int8): "int8", np.dtype(np.uint8): "uint8"}
DTYPES[np.dtype(np.float16)] = "float16"


class TfliteDescribeError(CxrEdgeError, ValueError):
    """A .tflite file's interface does not match the model it was converted from."""


def interpreter(path: str | Path) -> Any:
    """A LiteRT interpreter for ``path`` (tensors not allocated)."""
    module = require("ai_edge_litert.interpreter", extra="export", purpose="reading .tflite files")
    return module.Interpreter(model_path=str(path))


def _shape(detail: Mapping[str, Any]) -> list[int | str]:
    signature = [int(d) for d in detail.get("shape_signature", detail["shape"])]
    return ["batch" if index == 0 and d < 0 else d for index, d in enumerate(signature)]


def _dims(shape: Sequence[int | str]) -> tuple[int | str, ...]:
    return tuple(shape[1:])


def _entry(path: Path, detail: Mapping[str, Any], role: str, layout: str | None) -> dict[str, Any]:
    dtype = np.dtype(detail["dtype"])
    if dtype not in DTYPES:
        raise TfliteDescribeError(
            f"{path}: tensor {detail['name']!r} has dtype {dtype}; expected one of {sorted(DTYPES.values())}"
        )
    entry: dict[str, Any] = {"name": str(detail["name"]), "role": role, "shape": _shape(detail)}
    entry["dtype"] = DTYPES[dtype]
    if layout:
        entry["layout"] = layout
    if dtype.kind in "iu":
        scales = np.asarray(detail["quantization_parameters"]["scales"]).ravel()
        zeros = np.asarray(detail["quantization_parameters"]["zero_points"]).ravel()
        if scales.size != 1 or zeros.size != 1:
            raise TfliteDescribeError(
                f"{path}: integer tensor {detail['name']!r} has {scales.size} scales; expected one per tensor"
            )
        entry["quantization"] = {"scale": float(scales[0]), "zero_point": int(zeros[0])}
    return entry


def _feature_layout(path: Path, shape: list[int | str], reference: Sequence[int | str]) -> str:
    channels, height, width = (reference[1], reference[2], reference[3])
    if _dims(shape) == (height, width, channels):
        return "NHWC"  # onnx2tf's layout; also taken when C == h == w makes the shape ambiguous
    if _dims(shape) == (channels, height, width):
        return "NCHW"
    raise TfliteDescribeError(
        f"{path}: feature-map output has shape {shape}; expected (batch, {height}, {width}, {channels}) "
        f"(NHWC) like the ONNX feature map {list(reference)}"
    )


def describe_tflite(path: str | Path, onnx_info: Mapping[str, Any]) -> dict[str, Any]:
    """``{"inputs": [...], "outputs": [...]}`` manifest entries of the .tflite file at ``path``.

    ``onnx_info`` is the FP32 ONNX export's description (``inputs``/``outputs`` with roles, NCHW
    shapes) that the file was converted from. Raises :class:`TfliteDescribeError` when the file
    has other than one input and one 2-D plus one 4-D output, or shapes that do not match.
    """
    path = Path(path)
    it = interpreter(path)
    inputs, outputs = it.get_input_details(), it.get_output_details()
    onnx_in = onnx_info["inputs"][0]["shape"]
    onnx_out = {o.get("role", o["name"]): o["shape"] for o in onnx_info["outputs"]}
    if len(inputs) != 1:
        raise TfliteDescribeError(f"{path}: {len(inputs)} inputs; expected exactly one image input")
    expected_in = (onnx_in[2], onnx_in[3], onnx_in[1])
    if _dims(_shape(inputs[0])) != expected_in:
        raise TfliteDescribeError(
            f"{path}: input has shape {_shape(inputs[0])}; expected (batch, {expected_in[0]}, "
            f"{expected_in[1]}, {expected_in[2]}) (NHWC) for the ONNX input {list(onnx_in)}"
        )
    by_rank: dict[int, list[Mapping[str, Any]]] = {}
    for detail in outputs:
        by_rank.setdefault(len(detail["shape"]), []).append(detail)
    if sorted(len(v) for v in by_rank.values()) != [1, 1] or set(by_rank) != {2, 4}:
        shapes = [_shape(d) for d in outputs]
        raise TfliteDescribeError(
            f"{path}: outputs of shape {shapes}; expected one (batch, L) probabilities and one 4-D "
            "feature map"
        )
    probabilities, feature_map = by_rank[2][0], by_rank[4][0]
    if _dims(_shape(probabilities)) != _dims(onnx_out["probabilities"]):
        raise TfliteDescribeError(
            f"{path}: probabilities have shape {_shape(probabilities)}; expected {onnx_out['probabilities']}"
        )
    layout = _feature_layout(path, _shape(feature_map), onnx_out["feature_map"])
    return {
        "inputs": [_entry(path, inputs[0], "input", "NHWC")],
        "outputs": [
            _entry(path, probabilities, "probabilities", None),
            _entry(path, feature_map, "feature_map", layout),
        ],
    }


def head_tensors(path: str | Path) -> list[str]:
    """Output-tensor names of the ops downstream of the feature-map output (the classifier head).

    These are the nodes the INT8 conversion keeps float. Uses the interpreter's op listing.
    """
    it = interpreter(path)
    feature = [d["index"] for d in it.get_output_details() if len(d["shape"]) == 4]
    if len(feature) != 1:
        raise TfliteDescribeError(f"{path}: {len(feature)} 4-D outputs; expected one feature map")
    names = {d["index"]: d["name"] for d in it.get_tensor_details()}
    try:
        ops = it._get_ops_details()  # the interpreter's op listing, in execution (topological) order
    except AttributeError as exc:
        raise TfliteDescribeError(
            f"{path}: this LiteRT interpreter cannot list ops ({exc}); expected ai-edge-litert 2.x"
        ) from exc
    downstream, head = {feature[0]}, []
    for op in ops:
        if downstream.intersection(int(i) for i in op["inputs"]):
            outs = [int(i) for i in op["outputs"]]
            downstream.update(outs)
            head.extend(names[i] for i in outs)
    return head
