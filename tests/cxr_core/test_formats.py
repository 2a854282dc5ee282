"""The one format table: every reader derives its format knowledge from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from cxr_core.formats import FORMATS, UnknownFormatError, format_for_file, formats_for_runtime, get_format
from cxr_core.runtime.select import FAMILIES


def test_every_format_has_a_runtime_family_a_precision_and_a_layout() -> None:
    for row in FORMATS.values():
        assert row.runtime in FAMILIES
        assert row.precision in ("fp32", "fp16", "int8")
        assert row.layout == ("NHWC" if row.runtime == "litert" else "NCHW")
        assert row.suffix == (".tflite" if row.runtime == "litert" else ".onnx")
    assert [r.name for r in formats_for_runtime("litert")] == ["tflite", "tflite-fp16", "tflite-int8"]


def test_the_exporter_builds_exactly_the_core_formats() -> None:
    pytest.importorskip("torch")
    from quantize.formats import BUILDERS
    from quantize.formats import FORMATS as EXPORT_FORMATS

    assert set(BUILDERS) == set(FORMATS)
    for name, row in EXPORT_FORMATS.items():
        assert row.format is FORMATS[name] and row.precision == FORMATS[name].precision


def test_unknown_formats_get_a_did_you_mean() -> None:
    with pytest.raises(UnknownFormatError, match=r"'tflite-int9'.*did you mean 'tflite-int8'"):
        get_format("tflite-int9")
    with pytest.raises(UnknownFormatError, match=r"suffix '.pt' is not a model format"):
        format_for_file("model.pt")
    assert format_for_file(Path("x/y.TFLITE")).name == "tflite"


def test_edge_bench_takes_precision_from_the_table(session_bundle: Path) -> None:
    from benchmarks.runner import describe_formats
    from cxr_core.bundle import load_bundle

    info = describe_formats(load_bundle(session_bundle))
    for name, row in info.items():
        assert row["precision"] == FORMATS[name].precision
        assert row["int8"] == (FORMATS[name].precision == "int8")


def test_no_code_guesses_precision_or_runtime_from_a_name() -> None:
    """Precision and runtime come from the table: no ``"fp16" in name`` / ``.endswith(".tflite")`` left."""
    root = Path(__file__).resolve().parents[2]
    offenders = []
    for package in ("cxr_core", "quantize", "benchmarks", "edge_app", "cxr_demo"):
        for path in (root / package).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            for needle in ('"fp16" in', 'endswith(".tflite")', 'endswith(".onnx")', 'manifest["models"]'):
                if needle in text:
                    offenders.append(f"{path.relative_to(root)}: {needle}")
    assert offenders == []
