"""Each gate trips (exit 1, the failing figure named) on a threshold it must fail; a broken format is a
row with its error (exit 3); a damaged golden set trips the golden gate; compare merges two runs.

The gates that depend on the model's behaviour are made to fail for certain, not by luck: the
evaluation labels are built from the FP32 scores so that FP32 ranks every finding perfectly and
INT8 does not (AUC drop > 0), and one operating point is placed between an FP32 and an INT8
probability so that one positive call must flip (agreement < 1).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.benchmarks.conftest import FAST, Run, RunBench, rehash, write_labels_csv
from tests.signing import resign


def _crafted_labels(fp32: np.ndarray, int8: np.ndarray) -> np.ndarray:
    """Per finding: positives = the top-j images by FP32, with j chosen where INT8's top-j differs."""
    labels = np.zeros_like(fp32, dtype=np.int64)
    inverted = 0
    for k in range(fp32.shape[1]):
        order_fp32, order_int8 = np.argsort(-fp32[:, k]), np.argsort(-int8[:, k])
        cuts = [j for j in range(1, len(fp32)) if set(order_fp32[:j]) != set(order_int8[:j])]
        j = cuts[0] if cuts else len(fp32) // 2
        inverted += bool(cuts)
        labels[order_fp32[:j], k] = 1
    assert inverted > 0, (
        "INT8 ranks every finding exactly like FP32: the AUC-drop gate cannot be made to trip"
    )
    return labels


@pytest.fixture
def tight_inputs(
    loose_run: Run, bundle_copy_factory: Callable[[str], Path], tmp_path: Path
) -> tuple[Path, Path]:
    """(bundle with a flip-forcing operating point, evaluation set with FP32-perfect labels)."""
    predictions = np.load(loose_run.out / "predictions.npz")
    fp32, int8 = predictions["probabilities/onnx"], predictions["probabilities/onnx-int8"]
    data = tmp_path / "data"
    data.mkdir()
    names = []
    for path in predictions["paths"]:
        shutil.copy(path, data / Path(str(path)).name)
        names.append(Path(str(path)).name)
    write_labels_csv(data / "labels.csv", names, _crafted_labels(fp32, int8))
    bundle = bundle_copy_factory("tight")
    manifest = json.loads((bundle / "manifest.json").read_text())
    i, k = np.unravel_index(np.argmax(np.abs(fp32 - int8)), fp32.shape)
    manifest["operating_points"][k] = float((fp32[i, k] + int8[i, k]) / 2)
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    resign(bundle)  # a deliberate edit by the exporter, signed again
    return bundle, data


def test_every_gate_trips_on_a_threshold_it_must_fail(
    tight_inputs: tuple[Path, Path], run_bench: RunBench, tmp_path: Path
) -> None:
    bundle, data = tight_inputs
    argv = [
        str(bundle),
        *FAST,
        "--threads",
        "1",
        "--data",
        str(data),
        "--e2e-images",
        "0",
        "--fail-under",
        "1.0",
        "--max-auc-drop",
        "0",
        "--max-dp",
        "0",
        "--min-agreement",
        "1.0",
    ]
    run = run_bench(argv, tmp_path / "out")
    assert run.code == 1, run.stderr[-2000:]
    failures = run.results["gates"]["failures"]
    tripped = {(f["gate"], f["format"]) for f in failures}
    assert ("fail-under", "onnx-int8") in tripped and ("fail-under", "onnx") not in tripped  # FP32 AUC is 1.0
    assert ("max-auc-drop", "onnx-int8") in tripped
    assert ("max-dp", "onnx-int8") in tripped
    assert ("min-agreement", "onnx-int8") in tripped
    for failure in failures:
        assert f"GATE FAILED: {failure['message']}" in run.stderr
    assert "exit code 1" in run.stderr
    assert "mean AUC = " in run.stderr and "eval call agreement = " in run.stderr
    assert run.results["gates"]["exit_code"] == 1 and not run.results["gates"]["passed"]


def test_a_broken_format_is_a_row_with_its_error(
    bundle_copy_factory: Callable[[str], Path], run_bench: RunBench, tmp_path: Path
) -> None:
    bundle = bundle_copy_factory("broken")
    (bundle / "model-int8.onnx").write_bytes(b"this is not an ONNX model")
    rehash(bundle, "model-int8.onnx")
    run = run_bench(
        [str(bundle), *FAST, "--threads", "1", "--e2e-images", "1", "--e2e-repeats", "1"], tmp_path / "out"
    )
    assert run.code == 3, run.stderr[-2000:]
    rows = {r["name"]: r for r in run.results["rows"]}
    assert rows["onnx"]["status"] == "ok"
    assert rows["onnx-int8"]["status"] == "error"
    assert "model-int8.onnx" in rows["onnx-int8"]["error"] or "ONNX" in rows["onnx-int8"]["error"]
    assert rows["onnx-int8"]["latency_ms"] is None
    assert "FORMAT FAILED: onnx-int8" in run.stderr and "exit code 3" in run.stderr
    assert "onnx-int8 @ 1 thread(s): error:" in (run.out / "results.md").read_text()
    # Without --data the end-to-end split reads the 1024 px PNG edge-bench writes itself: a scratch
    # input, removed with the run's work folder (never left in --out beside the results).
    assert rows["onnx"]["e2e"]["status"] == "ok" and rows["onnx"]["e2e"]["images"] == 1
    assert not (run.out / "e2e_sample.png").exists()


def test_a_damaged_golden_set_trips_the_golden_gate(
    bundle_copy_factory: Callable[[str], Path], run_bench: RunBench, tmp_path: Path
) -> None:
    bundle = bundle_copy_factory("golden")
    with np.load(bundle / "golden.npz") as golden:
        arrays = {k: golden[k] for k in golden.files}
    arrays["probabilities"] = 1.0 - arrays["probabilities"]
    np.savez(bundle / "golden.npz", **arrays)
    rehash(bundle, "golden.npz")
    run = run_bench(
        [str(bundle), *FAST, "--threads", "1", "--formats", "onnx", "--e2e-images", "0"], tmp_path / "out"
    )
    assert run.code == 1
    assert [f["gate"] for f in run.results["gates"]["failures"]] == ["golden"]
    assert "GATE FAILED: onnx: golden set max |dp|" in run.stderr


def test_flags_and_inputs_that_cannot_work_exit_2(
    session_bundle: Path, run_bench: RunBench, tmp_path: Path
) -> None:
    run = run_bench([str(session_bundle), "--formats", "onnx-int9"], tmp_path / "a")
    assert run.code == 2 and "did you mean 'onnx-int8'" in run.stderr
    run = run_bench([str(session_bundle), "--fail-under", "0.9"], tmp_path / "b")
    assert run.code == 2 and "need a labelled set" in run.stderr
    run = run_bench([str(tmp_path / "nowhere")], tmp_path / "c")
    assert run.code == 2 and "nowhere" in run.stderr


def test_compare_merges_two_devices(loose_run: Run, tmp_path: Path, run_bench: RunBench) -> None:
    other = json.loads((loose_run.out / "results.json").read_text())
    other["device_name"] = "pi5"
    other_path = tmp_path / "pi5" / "results.json"
    other_path.parent.mkdir()
    other_path.write_text(json.dumps(other))
    import subprocess
    import sys

    out = tmp_path / "cmp"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks",
            "compare",
            str(loose_run.out / "results.json"),
            str(other_path),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    merged = json.loads((out / "compare.json").read_text())
    assert len(merged["rows"]) == 2 * len(other["rows"])
    assert {r["device"] for r in merged["rows"]} == {"laptop", "pi5"}
    first = merged["rows"][:2]  # sorted by format, threads, device: the same variant on both devices
    assert first[0]["format"] == first[1]["format"] and first[0]["threads"] == first[1]["threads"]
    assert "| laptop |" in (out / "compare.md").read_text() and "pi5" in done.stdout
    # the session bundle is trained on synthetic data: the merged table says so, as each results.json does
    mark = "SYNTHETIC TRAINING DATA: NOT FOR PATIENTS"
    assert other["notices"] and merged["notices"] == other["notices"]
    assert done.stdout.count(mark) == 2 and mark in (out / "compare.md").read_text()
    assert all(s["synthetic_training_data"] for s in merged["sources"])
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"schema_version": 1, "rows": []}))
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "compare", str(broken)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2 and "broken.json" in done.stderr and "missing key" in done.stderr
