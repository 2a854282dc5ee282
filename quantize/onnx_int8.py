"""FP32 ONNX -> INT8 ONNX with ONNX Runtime static QDQ quantization.

The recipe measured fastest and faithful here (docs/toolchain-notes.md): u8 activations, s8 per-channel
weights, ``reduce_range=True`` (x86 without VNNI), MinMax calibration over a fixed recorded
image list, the pre-activation BatchNorms rewritten as 1x1 depthwise convolutions first so that
every convolution fuses, and the classifier head (pooling, Gemm/MatMul, Sigmoid) kept in float so
probabilities do not move in 1/255 steps. Optionally (``QuantConfig.share_concat_scales``, off by
default) every Concat's inputs and output then share one scale/zero point
(:mod:`quantize.concat_scales`), and those Concats then run on the quantized bytes, each dense
block's chained (:mod:`quantize.concat_integer`): copies instead of requantizing DenseNet's
concatenations.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cxr_core.errors import CxrEdgeError
from cxr_core.optional import require
from quantize.concat_integer import concat_on_integers
from quantize.concat_scales import share_concat_scales
from quantize.graph_rewrite import batchnorm_to_depthwise
from quantize.int8_sensitivity import nodes_around, rank_activations
from quantize.onnx_export import FEATURE_MAP, INPUT_NAME

logger = logging.getLogger(__name__)

CALIBRATION_METHODS = ("minmax", "percentile")
#: Rows of the layer-wise sensitivity ranking recorded in the manifest.
LAYER_REPORT_ROWS = 10


class QuantizationError(CxrEdgeError, RuntimeError):
    """ONNX Runtime quantization failed, or its settings are invalid."""


@dataclass(frozen=True)
class QuantConfig:
    """Settings of the static INT8 quantization, validated on creation and recorded in the manifest.

    Fields:
        calibration: ``minmax`` (default; entropy through quantize_static silently equals MinMax
            and forcing bins clipped hard, docs/toolchain-notes.md) or ``percentile``.
        percentile: the percentile kept by ``percentile`` calibration.
        per_channel: per-output-channel weight scales.
        reduce_range: 7-bit weights, needed for exactness on x86 without VNNI.
        rewrite_batchnorm: apply the BatchNorm -> depthwise Conv rewrite before quantizing.
        keep_head_float: leave every node downstream of the feature map in float.
        keep_float_layers: re-quantize with the nodes around this many of the most sensitive
            activations (lowest SQNR in the layer-wise comparison) left in float.
        layer_report: rank the activations by sensitivity and record the worst in the manifest.
        share_concat_scales: give each Concat's inputs and output one scale/zero point and run the
            Concats on the quantized bytes (:mod:`quantize.concat_scales`,
            :mod:`quantize.concat_integer`): copies instead of requantizing.
    """

    calibration: str = "minmax"
    percentile: float = 99.999
    per_channel: bool = True
    reduce_range: bool = True
    rewrite_batchnorm: bool = True
    keep_head_float: bool = True
    keep_float_layers: int = 0
    layer_report: bool = True
    share_concat_scales: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.keep_float_layers, int) or self.keep_float_layers < 0:
            raise QuantizationError(
                f"QuantConfig.keep_float_layers={self.keep_float_layers!r}; expected an integer >= 0"
            )
        if self.calibration not in CALIBRATION_METHODS:
            raise QuantizationError(
                f"QuantConfig.calibration={self.calibration!r}; expected one of {list(CALIBRATION_METHODS)}"
            )
        if not 90.0 <= float(self.percentile) < 100.0:
            raise QuantizationError(
                f"QuantConfig.percentile={self.percentile!r}; expected a value in [90, 100)"
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "scheme": "onnxruntime static QDQ",
            "activations": "uint8 (asymmetric)",
            "weights": "int8 per-channel" if self.per_channel else "int8 per-tensor",
            **asdict(self),
        }


def head_nodes(model: Any, feature_map: str = FEATURE_MAP) -> list[str]:
    """Names of the nodes that consume the feature map or anything computed from it."""
    downstream = {feature_map}
    names: list[str] = []
    changed = True
    seen: set[int] = set()
    while changed:
        changed = False
        for index, node in enumerate(model.graph.node):
            if index in seen or not downstream.intersection(node.input):
                continue
            seen.add(index)
            downstream.update(node.output)
            names.append(node.name)
            changed = True
    return names


def _reader(tensors: NDArray[np.float32]) -> Any:
    """A CalibrationDataReader feeding the recorded calibration tensors one image at a time."""
    quantization = require("onnxruntime.quantization", extra="export", purpose="INT8 quantization")

    class ArrayReader(quantization.CalibrationDataReader):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            self._items: Iterator[dict[str, NDArray[np.float32]]] = iter(())
            self.rewind()

        def get_next(self) -> dict[str, NDArray[np.float32]] | None:
            return next(self._items, None)

        def rewind(self) -> None:
            self._items = iter([{INPUT_NAME: tensors[i : i + 1]} for i in range(len(tensors))])

    return ArrayReader()


def quantize_int8(
    fp32_path: str | Path,
    out_path: str | Path,
    tensors: NDArray[np.float32],
    config: QuantConfig | None = None,
) -> dict[str, Any]:
    """Quantize the FP32 ONNX model ``fp32_path`` into ``out_path``; return the manifest's quantization info.

    ``tensors`` are the preprocessed calibration images ``(N, C, H, W)``.
    """
    config = config or QuantConfig()
    onnx = require("onnx", extra="export", purpose="INT8 quantization")
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if len(tensors) == 0:
        raise QuantizationError("INT8 calibration got no images; expected at least one preprocessed image")
    with tempfile.TemporaryDirectory(prefix="cxr-int8-") as work:
        rewritten = Path(work) / "rewritten.onnx"
        prepared = Path(work) / "prepared.onnx"
        model = onnx.load(str(fp32_path))
        replaced = 0
        if config.rewrite_batchnorm:
            model, replaced = batchnorm_to_depthwise(model)
        onnx.save(model, str(rewritten))
        quant_pre_process(str(rewritten), str(prepared), skip_symbolic_shape=False)
        prepared_model = onnx.load(str(prepared))
        excluded = head_nodes(prepared_model) if config.keep_head_float else []
        shared = _quantize_static(prepared, out_path, tensors, config, excluded, fp32_path)
        ranking: list[dict[str, Any]] = []
        if config.layer_report or config.keep_float_layers:
            ranking = rank_activations(prepared, out_path, tensors, _reader)
        if config.keep_float_layers:
            worst = [row["tensor"] for row in ranking[: config.keep_float_layers]]
            excluded = sorted(set(excluded) | set(nodes_around(prepared_model, worst)))
            shared = _quantize_static(prepared, out_path, tensors, config, excluded, fp32_path)
    logger.info(
        "INT8 model %s: %d BatchNorm(s) rewritten, %d node(s) kept float",
        out_path,
        replaced,
        len(excluded),
    )
    return {
        **config.to_dict(),
        "batchnorms_rewritten": replaced,
        "nodes_kept_float": excluded,
        "calibration_images": int(len(tensors)),
        "most_sensitive_activations": ranking[:LAYER_REPORT_ROWS],
        "concat_scale_sharing": shared,
    }


def _quantize_static(
    prepared: Path,
    out_path: str | Path,
    tensors: NDArray[np.float32],
    config: QuantConfig,
    excluded: list[str],
    fp32_path: str | Path,
) -> dict[str, int] | None:
    """quantize_static with ``config``, then the Concat scale sharing; returns its report (or None)."""
    quantization = require("onnxruntime.quantization", extra="export", purpose="INT8 quantization")
    method = (
        quantization.CalibrationMethod.MinMax
        if config.calibration == "minmax"
        else quantization.CalibrationMethod.Percentile
    )
    extra = {"CalibPercentile": config.percentile} if config.calibration == "percentile" else {}
    try:
        quantization.quantize_static(
            str(prepared),
            str(out_path),
            _reader(tensors),
            quant_format=quantization.QuantFormat.QDQ,
            activation_type=quantization.QuantType.QUInt8,
            weight_type=quantization.QuantType.QInt8,
            per_channel=config.per_channel,
            reduce_range=config.reduce_range,
            calibrate_method=method,
            nodes_to_exclude=excluded,
            extra_options=extra,
        )
    except Exception as exc:  # onnxruntime raises assorted types
        raise QuantizationError(
            f"INT8 quantization of {fp32_path} failed: {type(exc).__name__}: {exc}"
        ) from exc
    if not config.share_concat_scales:
        return None
    onnx = require("onnx", extra="export", purpose="INT8 quantization")
    model, report = share_concat_scales(onnx.load(str(out_path)))
    model, integer = concat_on_integers(model)
    onnx.save(model, str(out_path))
    return {**report.to_dict(), **integer.to_dict()}
