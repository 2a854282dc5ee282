"""edge-bench end to end on the suite's tiny bundle: files, schema, report, plots, profile, reference row.

Benchmarks measure and print; these tests check structure and consistency, never timings.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from benchmarks.report import markdown_report, terminal_report
from benchmarks.schema import validate_results
from cxr_core.labels import CHESTXRAY14_LABELS
from tests.benchmarks.conftest import EVAL_IMAGES, Run

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_loose_run_passes_every_gate_and_writes_its_files(loose_run: Run) -> None:
    assert loose_run.code == 0, loose_run.stderr[-2000:]
    for name in ("results.json", "results.md", "latency.png", "auc.png", "e2e.png", "predictions.npz"):
        assert (loose_run.out / name).is_file(), name
    assert "exit code 0" in loose_run.stderr
    assert "GATE FAILED" not in loose_run.stderr


def test_results_json_follows_the_schema(loose_run: Run) -> None:
    results = loose_run.results
    assert validate_results(results) == []
    assert results["schema_version"] == 1 and results["tool"] == "edge-bench"
    assert results["device_name"] == "laptop"
    cpu = results["machine"]["cpu"]
    assert isinstance(cpu["arch"], str) and isinstance(cpu["flags"], list)
    assert isinstance(results["machine"]["packages"]["onnxruntime"], str)
    assert isinstance(results["machine"]["thermal"], list)
    rows = {(r["name"], r["threads"]): r for r in results["rows"]}
    assert set(rows) == {(n, t) for n in ("onnx", "onnx-int8", "pytorch-fp32") for t in (1, 2)}
    for row in rows.values():
        assert row["status"] == "ok", row["error"]
        latency = row["latency_ms"]
        assert latency["count"] == len(latency["samples"]) == 5  # --runs 5, nothing dropped
        assert latency["min"] <= latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
        assert 0 <= latency["outliers"]["count"] <= latency["count"]
        assert row["memory"]["peak_rss_mb"] >= row["memory"]["baseline_rss_mb"] > 0
        assert row["load_ms"] > 0
        assert row["throughput"]["batch"] == 8 and row["throughput"]["images_per_s"] > 0
    assert rows[("pytorch-fp32", 1)]["kind"] == "reference"
    assert rows[("onnx-int8", 2)]["int8"] is True and rows[("onnx", 1)]["int8"] is False
    size = (Path(results["bundle"]["path"]) / "model-int8.onnx").stat().st_size
    assert rows[("onnx-int8", 1)]["size_bytes"] == size


def test_parity_figures_are_consistent(loose_run: Run) -> None:
    results = loose_run.results
    formats = {f["name"]: f for f in results["formats"]}
    # Golden: the ONNX FP32 and the PyTorch reference reproduce the bundle's PyTorch outputs.
    assert formats["onnx"]["golden"]["max_abs_dp"] < 1e-4 and formats["onnx"]["golden"]["passed"]
    assert formats["pytorch-fp32"]["golden"]["max_abs_dp"] < 1e-5
    assert formats["onnx-int8"]["golden"]["passed"]
    # Evaluation set: per-class AUC for every finding, INT8 compared with ONNX FP32.
    int8 = formats["onnx-int8"]["eval"]
    assert results["evaluation"]["images"] == EVAL_IMAGES
    assert set(int8["auc"]) == set(CHESTXRAY14_LABELS)
    assert int8["reference_format"] == "onnx"
    assert 0 < int8["max_abs_dp"] < 0.2 and int8["mean_abs_dp"] <= int8["max_abs_dp"]
    assert 0.0 <= int8["call_agreement"] <= 1.0
    fp32 = formats["onnx"]["eval"]
    assert abs(int8["mean_auc_delta"] - (int8["mean_auc"] - fp32["mean_auc"])) < 1e-5
    # The PyTorch reference and the ONNX FP32 rank the images identically.
    assert formats["pytorch-fp32"]["eval"]["auc"] == fp32["auc"]
    predictions = np.load(loose_run.out / "predictions.npz")
    assert predictions["probabilities/onnx"].shape == (EVAL_IMAGES, len(CHESTXRAY14_LABELS))
    np.testing.assert_allclose(
        predictions["probabilities/onnx"], predictions["probabilities/pytorch-fp32"], atol=1e-4
    )


def test_end_to_end_split_and_ratios(loose_run: Run) -> None:
    results = loose_run.results
    for row in results["rows"]:
        if row["kind"] != "format":
            continue
        e2e = row["e2e"]
        assert e2e["status"] == "ok" and e2e["predictions"] == 1
        stages = {"decode", "gate", "preprocess", "inference", "learned_gate", "calibrate", "cam"}
        assert set(e2e["stages_ms"]) == stages
        assert e2e["cam_share_of_inference"] is not None
    ratios = {(r["format"], r["baseline"], r["threads"]) for r in results["ratios"]}
    assert ratios == {(f, b, t) for f, b in (("onnx-int8", "onnx"), ("onnx", "pytorch-fp32")) for t in (1, 2)}


def test_profile_summarises_onnxruntime_operators(loose_run: Run) -> None:
    rows = {(r["name"], r["threads"]): r for r in loose_run.results["rows"]}
    assert rows[("onnx", 1)]["profile"] is None  # profiled at the highest thread count only
    for name in ("onnx", "onnx-int8"):
        profile = rows[(name, 2)]["profile"]
        assert Path(profile["trace_file"]).is_file()
        ops = {o["op_type"]: o for o in profile["ops"]}
        assert abs(sum(o["share"] for o in profile["ops"]) - 1.0) < 0.01
        assert ("QLinearConv" if name == "onnx-int8" else "Conv") in ops
        json.loads(Path(profile["trace_file"]).read_text())


def test_markdown_and_terminal_report(loose_run: Run) -> None:
    markdown = (loose_run.out / "results.md").read_text()
    for heading in (
        "## Latency and memory",
        "## Parity",
        "## AUC per class",
        "## End-to-end split",
        "## Latency ratios (p50)",
        "## Operator profile: onnx-int8 @ 2 threads",
        "## Gates",
    ):
        assert heading in markdown
    assert "| onnx-int8 | onnxruntime | 2 | ok |" in markdown
    assert "![latency.png](latency.png)" in markdown
    for label in CHESTXRAY14_LABELS:
        assert f"| {label} |" in markdown
    assert "== Latency and memory ==" in loose_run.stdout
    assert str(loose_run.out / "results.json") in loose_run.stdout


def test_plots_are_real_pngs(loose_run: Run) -> None:
    for name in loose_run.results["plots"]:
        path = loose_run.out / name
        assert path.read_bytes()[:8] == PNG_MAGIC
        with Image.open(path) as image:
            image.verify()
        with Image.open(path) as image:
            assert image.size[0] >= 400 and image.size[1] >= 150
            # Something was drawn: more than the white background and a few grey lines.
            assert len(image.convert("RGB").getcolors(maxcolors=1 << 16) or range(1 << 16)) > 8
    assert set(loose_run.results["plots"]) == {"latency.png", "auc.png", "e2e.png"}


def test_results_json_validates_against_the_shipped_schema(loose_run: Run) -> None:
    import json

    jsonschema = pytest.importorskip("jsonschema", reason="the dev extra brings jsonschema")
    schema = json.loads(
        (Path(__file__).resolve().parents[2] / "docs/schemas/results.schema.json").read_text()
    )
    validator = jsonschema.Draft202012Validator(schema)
    results = loose_run.results
    assert [e.message for e in validator.iter_errors(results)] == []
    broken = dict(results, rows=[dict(results["rows"][0], status="ok", latency_ms=None)])
    assert list(validator.iter_errors(broken))


def _head(report: str) -> list[str]:
    """The report's lines without the synthetic-data mark (the tiny bundle is phantom-trained)."""
    return [line for line in report.splitlines() if not line.startswith("*** SYNTHETIC")]


def test_report_header_names_the_model_and_the_machine_once(loose_run: Run) -> None:
    results = loose_run.results
    architecture = results["bundle"]["architecture"]
    head = _head(terminal_report(results))[0]
    assert head.count(architecture) == 1 and results["bundle"]["path"] in head
    # A bundle folder named after its architecture: the architecture is not repeated beside it.
    named = {
        **results,
        "bundle": {**results["bundle"], "path": f"bundles/{architecture}", "name": architecture},
    }
    assert _head(terminal_report(named))[0] == f"edge-bench: bundles/{architecture}"
    assert _head(markdown_report(named))[0] == f"# edge-bench: {architecture}"
    # A device named after its CPU model: the model is printed once.
    cpu = results["machine"]["cpu"]["model"]
    same = {**results, "device_name": cpu}
    machine_line = _head(terminal_report(same))[1]
    assert machine_line.count(cpu) == 1, machine_line
    assert _head(terminal_report(results))[1].startswith(f"laptop: {cpu} (")
