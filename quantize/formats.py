"""How each format of the core format table (:mod:`cxr_core.formats`) is built from a checkpoint.

The format itself (name, file name, runtime, precision, layout) is a row of
:data:`cxr_core.formats.FORMATS`; this module adds what only the exporter needs: the pip extra that
provides the toolchain and the builder ``builder(context, path) -> dict`` that writes the file and
returns the manifest's description of it (inputs, outputs, opset, quantization). Adding a format
is one row there and one builder here. A builder that raises becomes a failed row in the export
report; the other formats still build.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from torch import nn

from cxr_core.formats import FORMATS as MODEL_FORMATS
from cxr_core.formats import ModelFormat, UnknownFormatError
from cxr_core.formats import get_format as get_model_format
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
    """A core format row with the exporter's builder and the extra that brings its toolchain."""

    format: ModelFormat
    extra: str
    builder: Builder

    @property
    def name(self) -> str:
        return self.format.name

    @property
    def file_name(self) -> str:
        return self.format.file_name

    @property
    def runtime(self) -> str:
        return self.format.runtime

    @property
    def precision(self) -> str:
        return self.format.precision

    @property
    def int8(self) -> bool:
        return self.format.int8

    @property
    def suffix(self) -> str:
        return self.format.suffix


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


BUILDERS: dict[str, Builder] = {
    "onnx": _build_onnx,
    "onnx-int8": _build_onnx_int8,
    "tflite": _build_tflite,
    "tflite-fp16": _build_tflite_fp16,
    "tflite-int8": _build_tflite_int8,
}
assert set(BUILDERS) == set(MODEL_FORMATS), "every core format needs a builder"

FORMATS: dict[str, ExportFormat] = {
    name: ExportFormat(row, "export", BUILDERS[name]) for name, row in MODEL_FORMATS.items()
}
#: Every format: a format whose toolchain is not installed becomes a failed row (with the pip
#: command), not a crash, so the default never hides a format nor breaks an ONNX-only install.
DEFAULT_FORMATS: tuple[str, ...] = tuple(FORMATS)


def get_format(name: str) -> ExportFormat:
    """The export row of ``name``, or :class:`~cxr_core.formats.UnknownFormatError` (did-you-mean)."""
    if name in FORMATS:
        return FORMATS[name]
    get_model_format(name)  # raises with a did-you-mean over the core table
    raise UnknownFormatError(f"format {name!r} has no builder; expected one of {list(FORMATS)}")


def parse_formats(text: str | Sequence[str]) -> list[ExportFormat]:
    """Rows for a comma-separated list (or a sequence) of format names, in order, without repeats."""
    names = [n.strip() for n in text.split(",")] if isinstance(text, str) else [str(n) for n in text]
    names = [n for n in names if n]
    if not names:
        raise UnknownFormatError(f"no export format given; expected some of {list(FORMATS)}")
    return [get_format(n) for n in dict.fromkeys(names)]
