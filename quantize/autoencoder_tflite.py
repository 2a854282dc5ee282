"""The gate's autoencoder as FP32 and full-integer INT8 TFLite, by the classifier's own route.

The autoencoder's FP32 ONNX goes through :func:`quantize.tflite_export.convert_float` (onnx2tf, in a
child process, offline) and :func:`quantize.tflite_export.convert_int8` (the TFLite converter's
full-integer quantization, float32 input and output, calibrated on training images), in a work
folder of its own. A conversion that fails is logged and leaves that format out; the exporter then
warns for each LiteRT classifier model that runs without the reconstruction check.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cxr_core.bundle.schema import RECONSTRUCTION_ROLE, AutoencoderFile, TensorSpec
from cxr_core.errors import CxrEdgeError
from cxr_core.formats import FORMATS

logger = logging.getLogger(__name__)


@dataclass
class _Context:
    """What :mod:`quantize.tflite_export`'s conversion steps need (see its ``Context``)."""

    onnx: Path
    calibration: NDArray[np.float32]
    work_dir: Path
    quant: Any = field(default=None)

    def fp32_onnx(self) -> Path:
        return self.onnx


def _spec(path: Path, detail: dict[str, Any], role: str, size: int) -> TensorSpec:
    """A float32 ``(batch, s, s, 1)`` (NHWC) or ``(batch, 1, s, s)`` (NCHW: onnx2tf keeps the output so)."""
    shape = tuple(int(d) for d in detail.get("shape_signature", detail["shape"]))
    layouts = {(size, size, 1): "NHWC", (1, size, size): "NCHW"}
    dtype = np.dtype(detail["dtype"]).name
    if shape[1:] not in layouts or dtype != "float32":
        raise CxrEdgeError(
            f"{path}: tensor {detail['name']!r} is {dtype} {list(shape)}; expected float32 "
            f"(batch, {size}, {size}, 1) or (batch, 1, {size}, {size})"
        )
    return TensorSpec(
        name=str(detail["name"]),
        role=role,
        shape=tuple(None if i == 0 and d < 0 else d for i, d in enumerate(shape)),
        dtype=dtype,
        layout=layouts[shape[1:]],  # type: ignore[arg-type]
    )


def describe(path: Path, size: int) -> tuple[TensorSpec, TensorSpec]:
    """The input and output specs of an autoencoder .tflite file (one float32 grey image each)."""
    from quantize.tflite_describe import interpreter

    it = interpreter(path)
    (source,), (target,) = it.get_input_details(), it.get_output_details()
    return _spec(path, source, "input", size), _spec(path, target, RECONSTRUCTION_ROLE, size)


def build_tflite(
    fp32_onnx: Path,
    formats: set[str],
    folder: Path,
    work: Path,
    calibration: NDArray[np.float32],
    size: int,
    names: dict[str, str],
    tolerances: dict[str, float],
) -> dict[str, AutoencoderFile]:
    """Write the autoencoder's ``tflite`` / ``tflite-int8`` files of ``formats`` into ``folder``."""
    from quantize.tflite_export import TfliteInt8Config, convert_float, convert_int8

    context = _Context(fp32_onnx, np.ascontiguousarray(calibration, dtype=np.float32), work / "autoencoder")
    parts: dict[str, AutoencoderFile] = {}
    for fmt in sorted(formats):
        try:
            if fmt == "tflite":
                result = convert_float(context)
                source, quantization = result["files"]["float32"], None
            else:
                config = TfliteInt8Config(keep_head_float=False)
                result = convert_int8(context, config)
                source = result["files"]["int8"]
                quantization = {
                    "scheme": "TFLite full-integer post-training quantization",
                    "calibration": "minmax",
                    "calibration_images": int(len(calibration)),
                    **config.to_dict(),
                }
            target = folder / names[fmt]
            shutil.copyfile(source, target.with_name(target.name + ".tmp"))
            os.replace(target.with_name(target.name + ".tmp"), target)
            source_spec, output_spec = describe(target, size)
        except (CxrEdgeError, OSError, KeyError, ValueError) as exc:
            logger.warning("autoencoder %s failed: %s: %s", fmt, type(exc).__name__, exc)
            (folder / names[fmt]).unlink(missing_ok=True)
            continue
        row = FORMATS[fmt]
        parts[fmt] = AutoencoderFile(
            file=names[fmt],
            format=fmt,
            precision=row.precision,
            runtime=row.runtime,
            input=source_spec,
            output=output_spec,
            golden_ssim=(),
            golden_tolerance=tolerances[row.precision],
            quantization=quantization,
        )
    return parts
