"""Give every Concat of a QDQ INT8 model one scale/zero point for its inputs and output.

DenseNet concatenates every layer's output onto its block's running feature map. After ONNX
Runtime's static quantization each input of a ``Concat`` has its own calibrated scale, so the
fused ``QLinearConcat`` requantizes every byte through a lookup table (22% of INT8 inference time
at 128 px in the last profile, docs/benchmarks.md). ONNX Runtime's kernel copies an input whose
scale and zero point equal the output's (``LOOKUP_TABLE_IS_COPY``), so this post-pass makes them
equal.

Tensors that meet at a Concat (its inputs and its output) are grouped with union-find: in DenseNet
one dense block is one group, because the block's input and each layer's new features appear in
every later Concat of the block. The group gets the union of its members' calibrated ranges,
which for MinMax calibration is exactly the range of the block's last (widest) Concat output: the
range a Concat output already had. What is lost is resolution on the narrower members (a layer's
new features quantized on the block's range), which the parity gate measures; the rewrite is
exact in the sense that the QDQ graph still describes what runs.

Only QDQ-format graphs are handled (``QuantizeLinear -> DequantizeLinear`` around each activation,
ONNX Runtime's default and what :mod:`quantize.onnx_int8` writes); a per-tensor uint8 or int8
scale is required for every member, otherwise the group is left alone (logged).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from cxr_core.optional import require

logger = logging.getLogger(__name__)

#: Ops whose output holds a subset of its input's values: they share the input's scale.
PASS_THROUGH = frozenset({"MaxPool", "Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze"})


@dataclass(frozen=True)
class ConcatShareReport:
    """What :func:`share_concat_scales` changed."""

    concats: int  # Concat nodes whose inputs were found quantized
    groups: int  # groups that now share one scale/zero point
    tensors: int  # activations whose quantization parameters were replaced
    skipped_groups: int  # groups left alone (a member without per-tensor QDQ parameters)

    def to_dict(self) -> dict[str, int]:
        return {
            "concats": self.concats,
            "groups": self.groups,
            "tensors": self.tensors,
            "skipped_groups": self.skipped_groups,
        }


class _UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, item: str) -> str:
        self.parent.setdefault(item, item)
        while self.parent[item] != item:
            self.parent[item] = self.parent[self.parent[item]]
            item = self.parent[item]
        return item

    def union(self, a: str, b: str) -> None:
        self.parent[self.find(a)] = self.find(b)


def share_concat_scales(model: Any) -> tuple[Any, ConcatShareReport]:
    """Rewrite ``model`` (an ``onnx.ModelProto`` in QDQ format) in place; return it and a report.

    For each float activation ``T`` the QDQ graph holds ``QuantizeLinear(T, s, z)`` and
    ``DequantizeLinear(., s, z)`` nodes; a Concat consumes the DequantizeLinear outputs of its
    inputs and its output feeds a QuantizeLinear. Each group's members are rewired to one new
    scale / zero-point initializer pair covering the union of their ranges.
    """
    numpy_helper = require("onnx.numpy_helper", extra="export", purpose="INT8 concat scale sharing")
    graph = model.graph
    inits = {init.name: init for init in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def float_source(name: str) -> str | None:
        """The float activation a Concat input dequantizes (``T`` of Q(T) -> DQ -> here)."""
        dq = producer.get(name)
        if dq is None or dq.op_type != "DequantizeLinear":
            return None
        q = producer.get(dq.input[0])
        if q is None or q.op_type != "QuantizeLinear":
            return None
        return str(q.input[0])

    def q_nodes(tensor: str) -> list[Any]:
        return [n for n in consumers.get(tensor, []) if n.op_type == "QuantizeLinear"]

    groups = _UnionFind()
    concats = 0
    for node in graph.node:
        if node.op_type != "Concat":
            continue
        sources = [float_source(name) for name in node.input]
        if any(s is None for s in sources) or not q_nodes(node.output[0]):
            continue
        concats += 1
        for source in sources:
            groups.union(str(source), node.output[0])
    # An op that passes values through unchanged (MaxPool, reshapes) must keep one scale on both
    # sides, or ONNX Runtime runs it in float between a DequantizeLinear and a QuantizeLinear.
    for node in graph.node:
        if node.op_type in PASS_THROUGH and node.output[0] in groups.parent and node.input:
            source = float_source(node.input[0])
            if source is not None:
                groups.union(source, node.output[0])
    members: dict[str, list[str]] = {}
    for tensor in list(groups.parent):
        members.setdefault(groups.find(tensor), []).append(tensor)

    shared = replaced = skipped = 0
    new_inits = []
    for index, tensors in enumerate(sorted(members.values(), key=lambda t: sorted(t)[0])):
        ranges = []
        dtype = None
        ok = True
        for tensor in tensors:
            quantizers = q_nodes(tensor)
            if len(quantizers) != 1 or len(quantizers[0].input) < 3:
                ok = False
                break
            scale = inits.get(quantizers[0].input[1])
            zero = inits.get(quantizers[0].input[2])
            if scale is None or zero is None:
                ok = False
                break
            s = numpy_helper.to_array(scale)
            z = numpy_helper.to_array(zero)
            if s.size != 1 or z.size != 1 or (dtype is not None and z.dtype != dtype):
                ok = False
                break
            dtype = z.dtype
            info = np.iinfo(z.dtype)
            lo = (float(info.min) - float(z.item())) * float(s.item())
            hi = (float(info.max) - float(z.item())) * float(s.item())
            ranges.append((lo, hi))
        if not ok or dtype is None:
            skipped += 1
            logger.info("concat group of %d tensors left alone (not per-tensor QDQ)", len(tensors))
            continue
        info = np.iinfo(dtype)
        rmin = min(0.0, min(r[0] for r in ranges))
        rmax = max(0.0, max(r[1] for r in ranges))
        span = float(info.max) - float(info.min)
        scale_value = np.float32((rmax - rmin) / span) if rmax > rmin else np.float32(1.0)
        zero_value = np.clip(np.round(info.min - rmin / float(scale_value)), info.min, info.max).astype(dtype)
        scale_name, zero_name = f"concat_group{index}_scale", f"concat_group{index}_zero_point"
        new_inits.append(numpy_helper.from_array(np.asarray(scale_value, dtype=np.float32), scale_name))
        new_inits.append(numpy_helper.from_array(np.asarray(zero_value, dtype=dtype), zero_name))
        for tensor in tensors:
            quantizer = q_nodes(tensor)[0]
            quantizer.input[1], quantizer.input[2] = scale_name, zero_name
            for dq in consumers.get(quantizer.output[0], []):
                if dq.op_type == "DequantizeLinear":
                    dq.input[1], dq.input[2] = scale_name, zero_name
                    for user in consumers.get(dq.output[0], []):
                        new_inits += _requantize_bias(user, float(scale_value), inits, producer)
            replaced += 1
        shared += 1
    graph.initializer.extend(new_inits)
    _drop_unused_initializers(graph)
    report = ConcatShareReport(concats=concats, groups=shared, tensors=replaced, skipped_groups=skipped)
    logger.info(
        "concat scale sharing: %d Concat(s), %d group(s) share one scale (%d tensors), %d left alone",
        concats,
        shared,
        replaced,
        skipped,
    )
    return model, report


def _requantize_bias(
    node: Any, input_scale: float, inits: dict[str, Any], producer: dict[str, Any]
) -> list[Any]:
    """Re-express an INT32 bias of ``node`` in its new input scale (QLinearConv needs s_b = s_x * s_w).

    ONNX Runtime fuses ``DQ(x) -> Conv <- DQ(w), DQ(b)`` into QLinearConv only when the bias scale
    equals input scale x weight scale; after the input's scale changes the bias is re-quantized
    from its float value, or the convolution silently runs in float.
    """
    numpy_helper = require("onnx.numpy_helper", extra="export", purpose="INT8 concat scale sharing")
    if node.op_type not in ("Conv", "Gemm", "MatMul") or len(node.input) < 3:
        return []
    weight_dq, bias_dq = producer.get(node.input[1]), producer.get(node.input[2])
    if weight_dq is None or bias_dq is None or "DequantizeLinear" not in (weight_dq.op_type, bias_dq.op_type):
        return []
    if weight_dq.op_type != "DequantizeLinear" or bias_dq.op_type != "DequantizeLinear":
        return []
    needed = [weight_dq.input[1], *bias_dq.input[:2]]
    if any(name not in inits for name in needed):
        return []
    weight_scale = numpy_helper.to_array(inits[weight_dq.input[1]]).astype(np.float64)
    bias_q = numpy_helper.to_array(inits[bias_dq.input[0]])
    bias_scale = numpy_helper.to_array(inits[bias_dq.input[1]]).astype(np.float64)
    if bias_q.dtype != np.int32:
        return []
    bias = bias_q.astype(np.float64) * bias_scale
    new_scale = (input_scale * weight_scale).astype(np.float32)
    new_q = np.clip(np.round(bias / new_scale.astype(np.float64)), -(2**31), 2**31 - 1).astype(np.int32)
    q_name, s_name = f"{bias_dq.input[0]}_shared", f"{bias_dq.input[1]}_shared"
    bias_dq.input[0], bias_dq.input[1] = q_name, s_name
    created = [numpy_helper.from_array(new_q, q_name), numpy_helper.from_array(new_scale, s_name)]
    inits[q_name], inits[s_name] = created
    return created


def _drop_unused_initializers(graph: Any) -> None:
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    keep = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def concat_groups_consistent(model: Any) -> list[str]:
    """Concat nodes whose quantized inputs and output do NOT share one scale/zero point (for checks)."""
    numpy_helper = require("onnx.numpy_helper", extra="export", purpose="INT8 concat scale sharing")
    graph = model.graph
    inits = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)

    def value(node: Any) -> tuple[float, int]:
        return float(inits[node.input[1]].item()), int(inits[node.input[2]].item())

    mismatched = []
    for node in graph.node:
        if node.op_type != "Concat":
            continue
        params = set()
        for name in node.input:
            dq = producer.get(name)
            if dq is not None and dq.op_type == "DequantizeLinear":
                params.add(value(dq))
        for q in consumers.get(node.output[0], []):
            if q.op_type == "QuantizeLinear":
                params.add(value(q))
        if len(params) > 1:
            mismatched.append(str(node.name))
    return mismatched
