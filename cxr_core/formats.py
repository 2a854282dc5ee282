"""The one table of model formats a bundle may hold (numpy-free, torch-free).

Every part of cxr-edge that needs to know something about a format reads it here: the exporter
(which builder writes it and which parity thresholds it gets), the runtime (which family of
runtimes opens it), the app (which files Android's LiteRT can run) and ``edge-bench`` (precision
columns, the FP32 reference of each format). Precision is a field of the row, never guessed from a
name. Adding a format is one row here plus, in ``quantize.formats``, the builder that writes it.

>>> get_format("tflite-int8").precision
'int8'
>>> format_for_file("scan-model.onnx").runtime
'onnxruntime'
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import PurePath
from typing import Literal

from cxr_core.errors import CxrEdgeError

Precision = Literal["fp32", "fp16", "int8"]
Layout = Literal["NCHW", "NHWC"]

#: Runtime families: the manifest's ``runtime`` key and the keys of its ``recommended`` block.
RUNTIME_FAMILIES: tuple[str, ...] = ("onnxruntime", "litert")
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")


class UnknownFormatError(CxrEdgeError, ValueError):
    """A format name (or a model file suffix) that is not in the format table."""


@dataclass(frozen=True)
class ModelFormat:
    """One row of the table: how a format is named, stored, run and compared."""

    name: str
    file_name: str
    runtime: str
    precision: Precision
    layout: Layout
    description: str

    @property
    def suffix(self) -> str:
        return PurePath(self.file_name).suffix

    @property
    def int8(self) -> bool:
        return self.precision == "int8"

    @property
    def reduced_precision(self) -> bool:
        """True for FP16 and INT8 files: parity against FP32 is a tolerance, not numerical noise."""
        return self.precision != "fp32"


FORMATS: dict[str, ModelFormat] = {
    row.name: row
    for row in (
        ModelFormat("onnx", "model.onnx", "onnxruntime", "fp32", "NCHW", "FP32 ONNX"),
        ModelFormat("onnx-int8", "model-int8.onnx", "onnxruntime", "int8", "NCHW", "INT8 ONNX (QDQ, static)"),
        ModelFormat("tflite", "model.tflite", "litert", "fp32", "NHWC", "FP32 TFLite"),
        ModelFormat("tflite-fp16", "model-fp16.tflite", "litert", "fp16", "NHWC", "FP16-weight TFLite"),
        ModelFormat("tflite-int8", "model-int8.tflite", "litert", "int8", "NHWC", "full-integer INT8 TFLite"),
    )
}
#: File suffix -> runtime family, for files that are not (or not yet) named by a table row.
SUFFIX_RUNTIME: dict[str, str] = {".onnx": "onnxruntime", ".tflite": "litert"}


def format_names() -> list[str]:
    """Every format name, in table order."""
    return list(FORMATS)


def get_format(name: str) -> ModelFormat:
    """The row called ``name``, or :class:`UnknownFormatError` with a did-you-mean."""
    if name in FORMATS:
        return FORMATS[name]
    hint = difflib.get_close_matches(str(name), list(FORMATS), n=1)
    did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
    raise UnknownFormatError(f"unknown model format {name!r}; expected one of {list(FORMATS)}{did_you_mean}")


def formats_for_runtime(runtime: str) -> list[ModelFormat]:
    """The rows a runtime family runs (``onnxruntime`` or ``litert``), in table order."""
    return [row for row in FORMATS.values() if row.runtime == runtime]


def format_for_file(path: str | PurePath) -> ModelFormat:
    """The FP32 row of a file's runtime, from its suffix alone (for files outside a bundle)."""
    suffix = PurePath(str(path)).suffix.lower()
    runtime = SUFFIX_RUNTIME.get(suffix)
    if runtime is None:
        raise UnknownFormatError(
            f"{path}: suffix {suffix or '(none)'!r} is not a model format; "
            f"expected one of {list(SUFFIX_RUNTIME)}"
        )
    return next(row for row in formats_for_runtime(runtime) if row.precision == "fp32")
