"""edge-bench on the suite's all-formats bundle: ONNX and FP32/FP16/INT8 TFLite side by side.

Checks the LiteRT rows (dynamic batch, so a throughput figure too), the reference of each TFLite
format, the op census that stands in for LiteRT's missing Python profiler, and the gates over all
five formats. The bundle's onnx2tf conversion dominates the time (built once per session).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.benchmarks.conftest import FAST, RunBench

pytestmark = [pytest.mark.needs_tflite, pytest.mark.slow]


def test_edge_bench_measures_every_format(
    session_bundle_all_formats: Path, eval_dir: Path, tmp_path: Path, run_bench: RunBench
) -> None:
    argv = [
        str(session_bundle_all_formats),
        *FAST,
        "--threads",
        "1",
        "--data",
        str(eval_dir),
        "--profile",
        "--e2e-images",
        "1",
        "--e2e-repeats",
        "1",
        "--max-dp",
        "0.5",
    ]
    run = run_bench(argv, tmp_path / "out")
    assert run.code == 0, run.stderr[-3000:]
    results = run.results
    rows = {r["name"]: r for r in results["rows"]}
    assert set(rows) == {"onnx", "onnx-int8", "tflite", "tflite-fp16", "tflite-int8"}
    for name, row in rows.items():
        assert row["status"] == "ok", (name, row["error"])
        assert row["latency_ms"]["count"] == 5 and row["e2e"]["status"] == "ok"
        assert row["runtime"] == ("litert" if name.startswith("tflite") else "onnxruntime")
    for name in ("tflite", "tflite-fp16", "tflite-int8"):
        assert rows[name]["throughput"]["images_per_s"] > 0  # the exporter's files take a dynamic batch
        census = rows[name]["profile"]
        assert census["available"] is False and "--enable_op_profiling=true" in census["hint"]
        assert any(op.startswith("CONV_2D") for op in census["op_counts"])
    formats = {f["name"]: f for f in results["formats"]}
    assert formats["tflite"]["reference_format"] == "onnx"
    assert formats["tflite-fp16"]["reference_format"] == "tflite"
    assert formats["tflite-int8"]["reference_format"] == "tflite"
    assert formats["tflite"]["eval"]["max_abs_dp"] < 1e-3  # the conversion error: FP32 vs FP32
    assert all(f["golden"]["passed"] for f in formats.values())
    ratios = {(r["format"], r["baseline"]) for r in results["ratios"]}
    assert {("onnx-int8", "onnx"), ("tflite-int8", "tflite"), ("tflite-fp16", "tflite")} <= ratios
    assert "benchmark_model --graph=" in (run.out / "results.md").read_text()
