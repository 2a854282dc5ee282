"""edge-bench's parts on their own: statistics, evaluation-set reading, parity, gates, schema, machine info,
profile summary, and that importing the bench pulls in no heavy dependency."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.config import BenchConfigError, Gates, parse_threads
from benchmarks.data import load_eval_set
from benchmarks.gates import EXIT_FORMAT_ERROR, EXIT_GATE_FAILED, EXIT_OK, evaluate_gates
from benchmarks.latency import TimingPlan, summarize, time_calls
from benchmarks.machine import machine_info, physical_cores
from benchmarks.parity import eval_parity, reference_for
from benchmarks.profiling import summarize_ort_trace
from benchmarks.schema import validate_results
from cxr_core.errors import DatasetError
from cxr_core.labels import CHESTXRAY14_LABELS
from tests.file_factory import write_png


def test_summary_counts_outliers_and_keeps_them() -> None:
    summary = summarize([10.0] * 9 + [100.0])
    assert summary["p50"] == 10.0 and summary["max"] == 100.0 and summary["count"] == 10
    assert summary["outliers"]["count"] == summary["outliers"]["slow"] == 1
    assert summary["mean"] == pytest.approx(19.0)  # the outlier stays in every figure


def test_timing_loop_warms_up_first_and_stops_at_max_seconds() -> None:
    calls: list[float] = []
    samples, truncated = time_calls(lambda: calls.append(time.sleep(0.01) or 1.0), TimingPlan(1000, 2, 0.05))
    assert truncated and 1 <= len(samples) < 1000
    assert len(calls) == len(samples) + 2
    samples, truncated = time_calls(lambda: None, TimingPlan(7, 0, 10.0))
    assert len(samples) == 7 and not truncated


def test_thread_lists_are_validated() -> None:
    assert parse_threads("1, 2,4,2") == (1, 2, 4)
    with pytest.raises(BenchConfigError, match="'x' is not a positive integer"):
        parse_threads("1,x")
    with pytest.raises(BenchConfigError, match="need a labelled set"):
        Gates(fail_under=0.8).check(has_data=False)
    with pytest.raises(BenchConfigError, match="fraction"):
        Gates(min_agreement=1.5).check(has_data=True)


def _nih_root(root: Path) -> Path:
    """A ChestX-ray14-style root as cxr-synth writes it: CSV, split lists, images_001/images/."""
    (root / "images_001" / "images").mkdir(parents=True)
    rows = [
        "Image Index,Finding Labels,Follow-up #,Patient ID",
        "a.png,Effusion|Mass,0,1",
        "b.png,No Finding,0,2",
        "c.png,Hernia,0,3",
        "d.png,Edema,0,4",
    ]
    (root / "Data_Entry_2017.csv").write_text("\n".join(rows) + "\n")
    (root / "train_val_list.txt").write_text("a.png\n")
    (root / "test_list.txt").write_text("d.png\nb.png\nc.png\n")
    for name in "abcd":
        write_png(root / "images_001" / "images" / f"{name}.png", np.full((8, 8), 0.5))
    return root


def test_chestxray14_layout_uses_the_test_split_in_list_order(tmp_path: Path) -> None:
    eval_set = load_eval_set(_nih_root(tmp_path), CHESTXRAY14_LABELS)
    assert [p.name for p in eval_set.paths] == ["d.png", "b.png", "c.png"]
    assert eval_set.labels[0, CHESTXRAY14_LABELS.index("Edema")] == 1 and eval_set.labels[0].sum() == 1
    assert eval_set.labels[1].sum() == 0 and eval_set.mask.all()
    assert "test split" in eval_set.source
    assert len(load_eval_set(tmp_path / "Data_Entry_2017.csv", CHESTXRAY14_LABELS, limit=2)) == 2


def test_wide_csv_masks_unknown_labels_and_resolves_paths(tmp_path: Path) -> None:
    write_png(tmp_path / "x.png", np.full((8, 8), 0.5))
    (tmp_path / "labels.csv").write_text("path,Effusion,Mass\nx.png,1,-1\nx.png,0,\n")
    eval_set = load_eval_set(tmp_path, CHESTXRAY14_LABELS)
    k_eff, k_mass = CHESTXRAY14_LABELS.index("Effusion"), CHESTXRAY14_LABELS.index("Mass")
    assert eval_set.labels[:, k_eff].tolist() == [1.0, 0.0] and eval_set.mask[:, k_eff].all()
    assert not eval_set.mask[:, k_mass].any()  # -1 (uncertain) and blank are unknown
    assert not eval_set.mask[:, CHESTXRAY14_LABELS.index("Hernia")].any()  # no column


def test_chexpert_layout_reads_valid_csv_with_paths_relative_to_the_root(tmp_path: Path) -> None:
    from cxr_core.labels import CHEXPERT_LABELS

    small = tmp_path / "CheXpert-v1.0-small"
    (small / "valid" / "p1" / "s1").mkdir(parents=True)
    write_png(small / "valid" / "p1" / "s1" / "view1_frontal.png", np.full((8, 8), 0.5))
    header = "Path,Sex,Age,Frontal/Lateral,AP/PA," + ",".join(CHEXPERT_LABELS)
    row = "CheXpert-v1.0-small/valid/p1/s1/view1_frontal.png,Male,50,Frontal,PA,0.0,,1.0,-1.0" + ",0.0" * 10
    (small / "valid.csv").write_text(f"{header}\n{row}\n")
    (small / "train.csv").write_text(f"{header}\n")
    eval_set = load_eval_set(tmp_path, CHEXPERT_LABELS)  # the cxr-synth output folder
    assert eval_set.paths == (small / "valid" / "p1" / "s1" / "view1_frontal.png",)
    assert eval_set.mask[0].tolist() == [True, False, True, False] + [True] * 10
    assert eval_set.labels[0, 2] == 1.0


def test_evaluation_set_errors_name_the_problem(tmp_path: Path) -> None:
    (tmp_path / "labels.csv").write_text("path,Effusion\nmissing.png,1\n")
    with pytest.raises(DatasetError, match=r"missing\.png"):
        load_eval_set(tmp_path, CHESTXRAY14_LABELS)
    (tmp_path / "labels.csv").write_text("path,Efusion\nmissing.png,1\n")
    with pytest.raises(DatasetError, match="no column named after a bundle label"):
        load_eval_set(tmp_path, CHESTXRAY14_LABELS)
    with pytest.raises(DatasetError, match="not a folder or a .csv"):
        load_eval_set(tmp_path / "nothing", CHESTXRAY14_LABELS)


def test_reference_format_rules() -> None:
    formats = {
        "onnx": {"int8": False, "fp16": False, "runtime": "onnxruntime"},
        "onnx-int8": {"int8": True, "fp16": False, "runtime": "onnxruntime"},
        "tflite": {"int8": False, "fp16": False, "runtime": "litert"},
        "tflite-fp16": {"int8": False, "fp16": True, "runtime": "litert"},
        "tflite-int8": {"int8": True, "fp16": False, "runtime": "litert"},
    }
    assert [reference_for(n, formats) for n in formats] == [None, "onnx", "onnx", "tflite", "tflite"]
    only_int8 = {"tflite-int8": formats["tflite-int8"], "onnx": formats["onnx"]}
    assert reference_for("tflite-int8", only_int8) == "onnx"


def test_eval_parity_figures() -> None:
    truth = np.array([[1, 0], [1, 1], [0, 0], [0, 1]], dtype=np.float32)
    fp32 = np.array([[0.9, 0.2], [0.8, 0.7], [0.1, 0.3], [0.2, 0.6]])
    int8 = np.array(
        [[0.9, 0.2], [0.25, 0.7], [0.3, 0.3], [0.2, 0.6]]
    )  # image 1 drops below image 2 on class 0
    formats = {
        "onnx": {"int8": False, "runtime": "onnxruntime"},
        "onnx-int8": {"int8": True, "runtime": "onnxruntime"},
    }
    parity = eval_parity(
        ["A", "B"], truth, np.ones_like(truth, bool), {"onnx": fp32, "onnx-int8": int8}, formats, [0.5, 0.5]
    )
    assert parity["onnx"]["auc"] == {"A": 1.0, "B": 1.0} and parity["onnx"]["reference_format"] is None
    q = parity["onnx-int8"]
    assert q["auc"]["A"] == 0.75 and q["auc_delta"]["A"] == -0.25 and q["mean_auc_delta"] == -0.125
    assert q["max_abs_dp"] == pytest.approx(0.55) and q["call_agreement"] == pytest.approx(7 / 8)


def _summary(name: str, **figures: float) -> dict:
    golden = {
        "max_abs_dp": figures.get("golden_dp", 0.0),
        "call_agreement": 1.0,
        "passed": figures.get("ok", True),
        "feature_map_rel_error": 0.0,
        "tolerance": {"max_abs_dp": 0.1, "feature_map_rel_error": 0.25},
    }
    evaluation = {
        "mean_auc": figures.get("auc", 0.8),
        "mean_auc_delta": figures.get("delta", 0.0),
        "max_abs_dp": figures.get("dp", 0.01),
        "call_agreement": figures.get("agree", 1.0),
        "reference_format": "onnx",
    }
    return {"name": name, "kind": "format", "status": "ok", "golden": golden, "eval": evaluation}


@pytest.mark.parametrize(
    ("gates", "figures", "gate"),
    [
        (Gates(fail_under=0.7), {"auc": 0.69}, "fail-under"),
        (Gates(max_auc_drop=0.01), {"delta": -0.02}, "max-auc-drop"),
        (Gates(max_dp=0.05), {"dp": 0.06}, "max-dp"),
        (Gates(max_dp=0.05), {"golden_dp": 0.06}, "max-dp"),
        (Gates(min_agreement=0.95), {"agree": 0.94}, "min-agreement"),
        (Gates(), {"ok": False}, "golden"),
    ],
)
def test_each_gate_trips_and_passes(gates: Gates, figures: dict, gate: str) -> None:
    tripped = evaluate_gates({"formats": [_summary("onnx-int8", **figures)]}, gates)
    assert tripped["exit_code"] == EXIT_GATE_FAILED and [f["gate"] for f in tripped["failures"]] == [gate]
    assert tripped["failures"][0]["format"] == "onnx-int8" and gate in tripped["failures"][0]["message"]
    assert evaluate_gates({"formats": [_summary("onnx-int8")]}, gates)["exit_code"] == EXIT_OK


def test_an_errored_format_exits_3_unless_a_gate_tripped() -> None:
    errored = {
        "name": "tflite",
        "kind": "format",
        "status": "error",
        "error": "boom",
        "golden": None,
        "eval": None,
    }
    assert evaluate_gates({"formats": [_summary("onnx"), errored]}, Gates())["exit_code"] == EXIT_FORMAT_ERROR
    unavailable = {**errored, "status": "unavailable"}
    assert evaluate_gates({"formats": [_summary("onnx"), unavailable]}, Gates())["exit_code"] == EXIT_OK
    assert evaluate_gates({"formats": [unavailable]}, Gates())["exit_code"] == EXIT_FORMAT_ERROR


def test_schema_validator_finds_missing_keys_and_wrong_types() -> None:
    problems = validate_results({"schema_version": "1", "rows": [{"name": "onnx", "status": "weird"}]})
    assert any("schema_version: got str" in p for p in problems)
    assert any("missing key 'machine'" in p for p in problems)
    assert any("rows[0].status: 'weird'" in p for p in problems)


def test_machine_info_and_core_count() -> None:
    text = (
        "processor : 0\nphysical id : 0\ncore id : 0\n\nprocessor : 1\nphysical id : 0\ncore id : 0\n\n"
        "processor : 2\nphysical id : 0\ncore id : 1\n"
    )
    assert physical_cores(text) == 2  # 3 logical CPUs, 2 cores (hyper-threading)
    info = machine_info()
    json.dumps(info)
    assert info["python"] == sys.version.split()[0] and info["cpu"]["logical_cores"] >= 1
    assert set(info["frequency"]) == {"governor", "current_mhz", "max_mhz"}


def test_onnxruntime_trace_summary_skips_warmup_runs() -> None:
    def node(ts: int, op: str, dur: int) -> dict:
        return {
            "cat": "Node",
            "name": f"{op}_{ts}_kernel_time",
            "ts": ts,
            "dur": dur,
            "args": {"op_name": op, "provider": "CPUExecutionProvider"},
        }

    trace = [
        {"cat": "Session", "name": "model_run", "ts": 0, "dur": 100},
        node(10, "Conv", 90),
        {"cat": "Session", "name": "model_run", "ts": 200, "dur": 100},
        node(210, "Conv", 30),
        node(250, "Relu", 10),
    ]
    summary = summarize_ort_trace(trace, warmup=1)
    assert summary["runs"] == 1
    assert [(o["op_type"], o["ms_per_run"], o["share"]) for o in summary["ops"]] == [
        ("Conv", 0.03, 0.75),
        ("Relu", 0.01, 0.25),
    ]


def test_importing_the_bench_loads_no_heavy_dependency() -> None:
    code = (
        "import sys, pkgutil, importlib, benchmarks\n"
        "for m in pkgutil.iter_modules(benchmarks.__path__, 'benchmarks.'):\n"
        "    if m.name != 'benchmarks.__main__': importlib.import_module(m.name)\n"
        "heavy = ('torch', 'onnx', 'onnxruntime', 'tensorflow', 'sklearn', 'matplotlib',\n"
        "         'training', 'quantize')\n"
        "print(sorted(n for n in heavy if n in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_nan_figures_are_written_as_null(tmp_path: Path) -> None:
    from benchmarks.fileio import write_json_atomic

    write_json_atomic(tmp_path / "r.json", {"auc": math.nan, "rows": [math.inf, 1.0]})
    assert json.loads((tmp_path / "r.json").read_text()) == {"auc": None, "rows": [None, 1.0]}
