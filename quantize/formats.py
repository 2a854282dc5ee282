"""The one table of export formats (docs/architecture.md, "One home per contract").

Each row names a format, its file suffix, the pip extra that provides its toolchain, whether it is
INT8, and the builder that writes it. Adding a format is one more row and one
builder function ``builder(context, path) -> dict`` that returns the manifest's description of the
file (inputs, outputs, opset, quantization). A builder that raises becomes a failed row in the
export report; the other formats still build.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from torch import nn

from cxr_core.preprocess import PreprocessSpec
from quantize.onnx_int8 import QuantConfig


@dataclass
class BuildContext:
    """What builders share: the model, its spec, calibration tensors and a work folder for intermediates."""

    model: nn.Module
    spec: PreprocessSpec
    calibration: NDArray[np.float32]
    work_dir: Path
    quant: QuantConfig = field(default_factory=QuantConfig)
    _fp32_onnx: Path | None = None

    def fp32_onnx(self) -> Path:
        """An FP32 ONNX export in the work folder (made once; INT8 formats start from it)."""
        if self._fp32_onnx is None:
            from quantize.onnx_export import export_onnx

            path = self.work_dir / "fp32-intermediate.onnx"
            export_onnx(self.model, self.spec, path)
            self._fp32_onnx = path
        return self._fp32_onnx


Builder = Callable[[BuildContext, Path], dict[str, Any]]


@dataclass(frozen=True)
class ExportFormat:
    """One row of the registry."""

    name: str
    file_name: str
    extra: str
    int8: bool
    runtime: str
    builder: Builder

    @property
    def suffix(self) -> str:
        return Path(self.file_name).suffix


def _build_onnx(context: BuildContext, path: Path) -> dict[str, Any]:
    import shutil

    import onnx

    from quantize.onnx_export import graph_info

    # The one FP32 export the INT8 formats also start from: export once, copy into the bundle.
    shutil.copyfile(context.fp32_onnx(), path)
    info = graph_info(onnx.load(str(path)), context.spec.layout)
    return {**info.to_dict(), "quantization": None}


def _build_onnx_int8(context: BuildContext, path: Path) -> dict[str, Any]:
    import onnx

    from quantize.onnx_export import graph_info
    from quantize.onnx_int8 import quantize_int8

    quantization = quantize_int8(context.fp32_onnx(), path, context.calibration, context.quant)
    info = graph_info(onnx.load(str(path)), context.spec.layout)
    return {**info.to_dict(), "quantization": quantization}


# The TFLite builders import nothing heavy here: quantize.tflite_export checks the toolchain (a
# missing one is a failed row with the pip commands) and runs the converter in a child process.
def _build_tflite(context: BuildContext, path: Path) -> dict[str, Any]:
    from quantize.tflite_export import build_fp32

    return build_fp32(context, path)


def _build_tflite_fp16(context: BuildContext, path: Path) -> dict[str, Any]:
    from quantize.tflite_export import build_fp16

    return build_fp16(context, path)


def _build_tflite_int8(context: BuildContext, path: Path) -> dict[str, Any]:
    from quantize.tflite_export import build_int8

    return build_int8(context, path)


FORMATS: dict[str, ExportFormat] = {
    row.name: row
    for row in (
        ExportFormat("onnx", "model.onnx", "export", False, "onnxruntime", _build_onnx),
        ExportFormat("onnx-int8", "model-int8.onnx", "export", True, "onnxruntime", _build_onnx_int8),
        ExportFormat("tflite", "model.tflite", "export", False, "litert", _build_tflite),
        ExportFormat("tflite-fp16", "model-fp16.tflite", "export", False, "litert", _build_tflite_fp16),
        ExportFormat("tflite-int8", "model-int8.tflite", "export", True, "litert", _build_tflite_int8),
    )
}
#: Every format: a format whose toolchain is not installed becomes a failed row (with the pip
#: command), not a crash, so the default never hides a format nor breaks an ONNX-only install.
DEFAULT_FORMATS: tuple[str, ...] = tuple(FORMATS)


def get_format(name: str) -> ExportFormat:
    """The registry row ``name``, or ValueError with a suggestion."""
    if name not in FORMATS:
        hint = difflib.get_close_matches(name, list(FORMATS), n=1)
        did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise ValueError(f"unknown export format {name!r}; expected some of {list(FORMATS)}{did_you_mean}")
    return FORMATS[name]


def parse_formats(text: str | Sequence[str]) -> list[ExportFormat]:
    """Rows for a comma-separated list (or a sequence) of format names, in order, without repeats."""
    names = [n.strip() for n in text.split(",")] if isinstance(text, str) else [str(n) for n in text]
    names = [n for n in names if n]
    if not names:
        raise ValueError(f"no export format given; expected some of {list(FORMATS)}")
    return [get_format(n) for n in dict.fromkeys(names)]
