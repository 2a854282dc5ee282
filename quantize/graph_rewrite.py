"""FP32 graph rewrites applied before INT8 quantization.

DenseNet's pre-activation BatchNorms (``norm1`` of every dense layer, the transition norms and
``norm5``) follow a concatenation, not a convolution, so the exporter cannot fold them. Under QDQ
quantization they stay float, ONNX Runtime cannot fuse the surrounding convolutions into
QLinearConv chains and inserts a Transpose pair around each, and INT8 barely beats FP32
(docs/toolchain-notes.md). An inference-mode BatchNorm on a 4-D tensor is a per-channel affine map
``y = x * s + t`` with ``s = gamma / sqrt(var + eps)`` and ``t = beta - mean * s``, which is
exactly a 1x1 depthwise convolution (``group = C``, weight ``s`` of shape ``(C, 1, 1, 1)``,
bias ``t``). The quantizer then treats it like any other convolution.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from cxr_core.optional import require

logger = logging.getLogger(__name__)


def _onnx() -> Any:
    return require("onnx", extra="export", purpose="ONNX graph rewriting")


def _ranks(model: Any) -> dict[str, int]:
    """Rank of every tensor whose shape ONNX shape inference can tell."""
    onnx = _onnx()
    inferred = onnx.shape_inference.infer_shapes(model)
    ranks: dict[str, int] = {}
    graph = inferred.graph
    for value in list(graph.value_info) + list(graph.input) + list(graph.output):
        if value.type.tensor_type.HasField("shape"):
            ranks[value.name] = len(value.type.tensor_type.shape.dim)
    return ranks


def batchnorm_to_depthwise(model: Any) -> tuple[Any, int]:
    """Replace every inference BatchNormalization on a 4-D tensor with a 1x1 depthwise Conv.

    Returns the rewritten model (a new ``ModelProto``) and the number of nodes replaced. BatchNorms
    whose statistics are not constant initializers, or whose input rank is not 4, are left alone.
    """
    onnx = _onnx()
    from onnx import helper, numpy_helper

    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    consts = _constants(graph)
    ranks = _ranks(model)
    new_nodes = []
    replaced = 0
    for node in graph.node:
        params = list(node.input[1:5])
        if (
            node.op_type != "BatchNormalization"
            or len(node.output) != 1
            or ranks.get(node.input[0]) != 4
            or not all(name in consts for name in params)
        ):
            new_nodes.append(node)
            continue
        gamma, beta, mean, var = (consts[name].astype(np.float64) for name in params)
        eps = next((a.f for a in node.attribute if a.name == "epsilon"), 1e-5)
        scale = gamma / np.sqrt(var + eps)
        shift = beta - mean * scale
        channels = scale.shape[0]
        base = (node.name or node.output[0]).replace("/", "_").strip("_")
        w_name, b_name = f"{base}_dw_weight", f"{base}_dw_bias"
        graph.initializer.append(
            numpy_helper.from_array(scale.astype(np.float32).reshape(channels, 1, 1, 1), w_name)
        )
        graph.initializer.append(numpy_helper.from_array(shift.astype(np.float32), b_name))
        new_nodes.append(
            helper.make_node(
                "Conv",
                [node.input[0], w_name, b_name],
                list(node.output),
                name=f"{base}_as_depthwise",
                group=channels,
                kernel_shape=[1, 1],
            )
        )
        replaced += 1
    del graph.node[:]
    graph.node.extend(new_nodes)
    _drop_unused(graph)
    onnx.checker.check_model(model)
    logger.info("replaced %d BatchNormalization node(s) with 1x1 depthwise convolutions", replaced)
    return model, replaced


def _constants(graph: Any) -> dict[str, np.ndarray]:
    """Values of tensors that are constant: initializers, Constant nodes and Identity chains of them.

    The TorchScript exporter shares BatchNorm statistics through Identity nodes, so the inputs of
    a BatchNormalization are not always initializers themselves.
    """
    from onnx import numpy_helper

    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            tensor = next((a.t for a in node.attribute if a.name == "value"), None)
            if tensor is not None:
                values[node.output[0]] = numpy_helper.to_array(tensor)
        elif node.op_type == "Identity" and node.input[0] in values:
            values[node.output[0]] = values[node.input[0]]
    return values


def _drop_unused(graph: Any) -> None:
    """Remove initializers and Identity/Constant nodes nothing reads any more."""
    while True:
        used = {name for node in graph.node for name in node.input} | {out.name for out in graph.output}
        dead = [n for n in graph.node if n.op_type in ("Identity", "Constant") and n.output[0] not in used]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    _drop_unused_initializers(graph)


def _drop_unused_initializers(graph: Any) -> None:
    used = {name for node in graph.node for name in node.input}
    used |= {out.name for out in graph.output}
    keep = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def rewrite_file(source: str | Path, target: str | Path) -> int:
    """Apply :func:`batchnorm_to_depthwise` to the ONNX file ``source``; save to ``target``."""
    onnx = _onnx()
    model, replaced = batchnorm_to_depthwise(onnx.load(str(source)))
    onnx.save(model, str(target))
    return replaced
