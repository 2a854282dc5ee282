"""PyTorch checkpoint model -> FP32 ONNX with a dynamic batch axis and two named outputs.

The exported graph takes the preprocessed input (``input``, layout of the PreprocessSpec, NCHW)
and returns:

* ``probabilities`` ``(N, L)``: the probability of each finding, computed inside the graph
  (sigmoid of the logits for the ``binary`` head; softmax over (negative, positive) for
  ``multiclass3``, which equals ``sigmoid(logit_pos - logit_neg)``), exactly what
  :func:`training.models.probabilities` computes;
* ``feature_map`` ``(N, C, h, w)``: the CAM input (CheXNet: the ReLU'd DenseNet features; DGC:
  the transition map before max pooling).

The model is exported in eval mode, so the DGC sampling layer is the identity (z = mu) and
dropout is off. The legacy TorchScript exporter (``dynamo=False``, opset 17) is used: it needs
only the ``onnx`` package and folds the BatchNorms that follow a convolution (docs/toolchain-notes.md).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from cxr_core.errors import CxrEdgeError
from cxr_core.preprocess import PreprocessSpec
from training.models import probabilities

logger = logging.getLogger(__name__)

INPUT_NAME = "input"
PROBABILITIES = "probabilities"
FEATURE_MAP = "feature_map"
OUTPUT_NAMES: tuple[str, str] = (PROBABILITIES, FEATURE_MAP)
DEFAULT_OPSET = 17
BATCH_AXIS = "batch"


class ExportError(CxrEdgeError, RuntimeError):
    """An export failed: the exporter, a graph that does not match the model, no format could be built
    (:func:`quantize.pipeline.export_bundle`), or the export request is invalid. One class for both
    modules, so ``except ExportError`` catches every export failure."""


class ProbabilityModel(nn.Module):
    """Wraps a cxr-edge model so that forward returns ``(probabilities, feature_map)``."""

    def __init__(self, model: nn.Module, head: str) -> None:
        super().__init__()
        self.model = model
        self.head = head

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        logits, feature_map = self.model(x, return_features=True)
        return probabilities(logits, self.head), feature_map


@dataclass(frozen=True)
class OnnxGraphInfo:
    """What the manifest records about an exported graph's interface."""

    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    opset: int

    def to_dict(self) -> dict[str, Any]:
        return {"inputs": self.inputs, "outputs": self.outputs, "opset": self.opset}


def head_of(model: nn.Module) -> str:
    config = getattr(model, "config", None)
    return str(getattr(config, "head", "binary"))


def probability_output_doc(head: str) -> str:
    """One sentence for the manifest on how ``probabilities`` is computed inside the graph."""
    if head == "multiclass3":
        return "softmax over (negative, positive) logits per finding, applied inside the graph"
    return "sigmoid of the logits, applied inside the graph"


def export_onnx(
    model: nn.Module, spec: PreprocessSpec, path: str | Path, opset: int = DEFAULT_OPSET
) -> OnnxGraphInfo:
    """Export ``model`` (put in eval mode) to FP32 ONNX at ``path``; return its interface.

    Raises :class:`ExportError` when the exporter fails or the saved graph does not check.
    """
    onnx = _require_onnx()
    path = Path(path)
    model.eval()
    wrapper = ProbabilityModel(model, head_of(model)).eval()
    if spec.layout != "NCHW":
        raise ExportError(
            f"PreprocessSpec.layout={spec.layout!r}; the PyTorch models take NCHW input, expected 'NCHW'"
        )
    example = torch.zeros((1, *spec.output_shape), dtype=torch.float32)
    dynamic = {INPUT_NAME: {0: BATCH_AXIS}, PROBABILITIES: {0: BATCH_AXIS}, FEATURE_MAP: {0: BATCH_AXIS}}
    try:
        with torch.no_grad():
            shapes = [tuple(t.shape) for t in wrapper(example)]
            torch.onnx.export(
                wrapper,
                (example,),
                str(path),
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_axes=dynamic,
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        graph = onnx.load(str(path))
        _fix_output_dims(graph, shapes)
        onnx.checker.check_model(graph)
        onnx.save(graph, str(path))
    except Exception as exc:  # the exporter raises many types; report them as one
        raise ExportError(f"ONNX export to {path} failed: {type(exc).__name__}: {exc}") from exc
    info = graph_info(graph, spec.layout)
    logger.info("exported %s (%d nodes, opset %d)", path, len(graph.graph.node), opset)
    return info


def _fix_output_dims(graph: Any, shapes: list[tuple[int, ...]]) -> None:
    """Write the concrete non-batch output dims the tracer left symbolic (e.g. after a Reshape)."""
    for value, shape in zip(graph.graph.output, shapes, strict=True):
        dims = value.type.tensor_type.shape.dim
        for index, dim in enumerate(dims):
            if index > 0 and dim.dim_param:
                dim.dim_value = int(shape[index])


def graph_info(graph: Any, layout: str = "NCHW") -> OnnxGraphInfo:
    """Names, shapes (symbolic axes as strings) and layouts of a loaded ONNX model's inputs/outputs."""

    def describe(value: Any, role: str, role_layout: str | None) -> dict[str, Any]:
        dims: list[int | str] = []
        for dim in value.type.tensor_type.shape.dim:
            dims.append(dim.dim_param if dim.dim_param else int(dim.dim_value))
        entry: dict[str, Any] = {"name": value.name, "role": role, "shape": dims, "dtype": "float32"}
        if role_layout:
            entry["layout"] = role_layout
        return entry

    inputs = [describe(v, "input", layout) for v in graph.graph.input]
    outputs = [describe(v, v.name, "NCHW" if v.name == FEATURE_MAP else None) for v in graph.graph.output]
    opset = max((o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return OnnxGraphInfo(inputs=inputs, outputs=outputs, opset=int(opset))


def _require_onnx() -> Any:
    from cxr_core.optional import require

    return require("onnx", extra="export", purpose="ONNX export")
