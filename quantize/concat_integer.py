"""Run the Concats of a scale-shared QDQ INT8 model on the quantized bytes, one block's chained.

After :mod:`quantize.concat_scales` every ``DequantizeLinear -> Concat -> QuantizeLinear`` of
DenseNet has one scale and zero point on all its inputs and its output, so the dequantize, concat,
quantize round trip returns exactly the input bytes. This pass removes it: the ``Concat`` takes the
uint8 tensors directly and produces what the ``QuantizeLinear`` produced (ONNX's ``Concat``
accepts every tensor type). ONNX Runtime then runs its plain ``Concat`` (a parallel strided copy)
instead of ``QLinearConcat``, and still fuses every convolution into ``QLinearConv`` (their
``DequantizeLinear`` inputs stay).

DenseNet's dense layer ``i`` concatenates the block input and all ``i - 1`` earlier layers' new
features: as many inputs as layers so far, copied piece by piece. When one Concat's inputs begin
with all of an earlier Concat's inputs (same axis), the pass replaces that prefix by the earlier
Concat's output: two inputs, the same bytes in the same order.

Both rewrites are exact: the outputs are bit-identical to the scale-shared model's (tested). On the
224 px DenseNet-121 they made ONNX Runtime INT8 5-8% faster at 1 and 2 threads (docs/benchmarks.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from cxr_core.errors import CxrEdgeError

logger = logging.getLogger(__name__)


class ConcatRewriteError(CxrEdgeError, ValueError):
    """The rewritten graph lost an input or gained a cycle (a bug here, never a user's input)."""


@dataclass(frozen=True)
class IntegerConcatReport:
    """What :func:`concat_on_integers` changed."""

    integer_concats: int  # Concats now run on the quantized bytes
    chained_concats: int  # Concats whose leading inputs were replaced by an earlier Concat's output

    def to_dict(self) -> dict[str, int]:
        return {"integer_concats": self.integer_concats, "chained_concats": self.chained_concats}


def _consumers(graph: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            out.setdefault(name, []).append(node)
    return out


def _axis(node: Any) -> int | None:
    for attribute in node.attribute:
        if attribute.name == "axis":
            return int(attribute.i)
    return None


def concat_on_integers(model: Any) -> tuple[Any, IntegerConcatReport]:
    """Rewrite ``model`` (an ``onnx.ModelProto`` after scale sharing) in place; return it and a report.

    A Concat qualifies when every input comes from a ``DequantizeLinear`` and its only consumer is a
    ``QuantizeLinear``, all with the same scale and zero-point tensors (by name, as scale sharing
    leaves them). Others are left as they are.
    """
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    consumers = _consumers(graph)
    graph_outputs = {o.name for o in graph.output}
    dropped: set[int] = set()
    rewired = 0
    for node in graph.node:
        if node.op_type != "Concat" or not node.input:
            continue
        dqs = [producer.get(name) for name in node.input]
        users = consumers.get(node.output[0], [])
        if (
            any(dq is None or dq.op_type != "DequantizeLinear" or len(dq.input) < 3 for dq in dqs)
            or len(users) != 1
            or users[0].op_type != "QuantizeLinear"
            or len(users[0].input) < 3
            or node.output[0] in graph_outputs
        ):
            continue
        quantizer = users[0]
        params = {(dq.input[1], dq.input[2]) for dq in dqs} | {(quantizer.input[1], quantizer.input[2])}
        if len(params) != 1:
            continue
        node.input[:] = [dq.input[0] for dq in dqs]
        node.output[0] = quantizer.output[0]
        dropped.add(id(quantizer))
        rewired += 1
    keep = [node for node in graph.node if id(node) not in dropped]
    del graph.node[:]
    graph.node.extend(keep)

    chained = _chain(graph)
    _prune(graph)
    report = IntegerConcatReport(integer_concats=rewired, chained_concats=chained)
    logger.info("concats on quantized bytes: %d rewired, %d chained onto an earlier concat", rewired, chained)
    return model, report


def _chain(graph: Any) -> int:
    """Replace each Concat's longest leading run of inputs that an earlier Concat joined (same axis)."""
    concats = [node for node in graph.node if node.op_type == "Concat"]
    chained = 0
    for node in concats:
        inputs = list(node.input)
        best = None
        for earlier in concats:
            prefix = list(earlier.input)
            if (
                earlier is not node
                and 2 <= len(prefix) < len(inputs)
                and inputs[: len(prefix)] == prefix
                and _axis(earlier) == _axis(node)
                and (best is None or len(prefix) > len(best.input))
            ):
                best = earlier
        if best is not None:
            node.input[:] = [best.output[0], *inputs[len(best.input) :]]
            chained += 1
    if chained:
        _sort_topologically(graph)
    return chained


def _sort_topologically(graph: Any) -> None:
    """Reorder ``graph.node`` so that every node follows the producers of its inputs."""
    available = {i.name for i in graph.input} | {init.name for init in graph.initializer} | {""}
    pending = list(graph.node)
    ordered: list[Any] = []
    while pending:
        ready = [node for node in pending if all(name in available for name in node.input)]
        if not ready:
            missing = sorted({name for node in pending for name in node.input if name not in available})
            raise ConcatRewriteError(
                f"concat chaining left {len(pending)} node(s) without their inputs {missing[:5]}; "
                "expected every input produced earlier in the graph"
            )
        ready_ids = {id(node) for node in ready}
        for node in ready:
            ordered.append(node)
            available.update(node.output)
        pending = [node for node in pending if id(node) not in ready_ids]
    del graph.node[:]
    graph.node.extend(ordered)


def _prune(graph: Any) -> None:
    """Drop nodes none of whose outputs is used (the dequantizers the Concats no longer read), then
    the initializers nothing reads any more."""
    outputs = {o.name for o in graph.output}
    while True:
        used = {name for node in graph.node for name in node.input} | outputs
        keep = [node for node in graph.node if any(name in used for name in node.output)]
        if len(keep) == len(graph.node):
            break
        del graph.node[:]
        graph.node.extend(keep)
    inits = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(inits)
