"""edge-bench refuses what it cannot honour before measuring, and never leaves misleading files.

Gate thresholds must be finite and within range; ``--threads`` takes ASCII digits only; ``--out``
and ``--tune-cache`` must be folders; Ctrl-C ends in one line and exit 130 with nothing left in
``--out``; a folder holding another run's results is refused unless ``--overwrite``, which removes
that run's files; a bundle trained on synthetic data carries the mark on the screen, in results.md,
results.json and the plots. Real runs on the suite's tiny bundle, kept small; no timing is asserted.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from benchmarks.cli import build_parser
from benchmarks.cli import main as bench_main
from benchmarks.config import BenchConfigError, Gates, parse_threads
from benchmarks.outputs import interrupts_deferred
from benchmarks.plots import WARNING_RED
from benchmarks.schema import validate_results
from benchmarks.tune import tune_choice
from tests.benchmarks.conftest import FAST, Run, RunBench

#: One INT8 format at one thread, three timed runs: the smallest real run.
TINY = ["--formats", "onnx-int8", "--threads", "1", "--runs", "3", "--warmup", "1", "--idle-seconds", "0"]
MARK = "SYNTHETIC TRAINING DATA: NOT FOR PATIENTS"


@pytest.mark.parametrize("flag", ["--max-dp", "--max-auc-drop", "--fail-under", "--min-agreement"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-0.1", "1.5", "abc"])
def test_a_gate_threshold_must_be_a_finite_number_in_range(
    flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(["bundle", f"{flag}={value}"])  # = : "-inf" is not an option
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {flag}: '{value}'" in err and "from 0 to 1" in err, err


def test_the_library_gates_refuse_non_finite_thresholds_too() -> None:
    for name in ("fail_under", "max_auc_drop", "max_dp", "min_agreement"):
        for value in (math.nan, math.inf, -0.5, 2.0):
            with pytest.raises(BenchConfigError, match=f"--{name.replace('_', '-')} .* from 0 to 1"):
                Gates(**{name: value}).check(has_data=True)
    Gates(0.0, 1.0, 0.0, 1.0).check(has_data=True)  # the bounds themselves are fine


@pytest.mark.parametrize("text", ["²", "1,①", "٣"])
def test_threads_take_ascii_digits_only(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(BenchConfigError, match="is not a positive integer"):
        parse_threads(text)
    assert bench_main(["bundle", "--threads", text, "--no-progress"]) == 2
    assert "edge-bench: error: --threads" in capsys.readouterr().err


def test_out_naming_a_file_is_a_usage_error_before_measuring(
    session_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x\n")
    assert bench_main([str(session_bundle), *TINY, "--no-progress", "--out", str(afile)]) == 2
    err = capsys.readouterr().err
    assert f"--out {afile}: is a file, not a folder; expected a folder" in err
    assert afile.read_text() == "x\n"
    below = afile / "sub"
    assert bench_main([str(session_bundle), *TINY, "--no-progress", "--out", str(below)]) == 2
    assert f"--out {below}" in capsys.readouterr().err
    assert bench_main(["compare", str(afile), "--out", str(afile)]) == 2
    assert f"--out {afile}: is a file" in capsys.readouterr().err


def test_a_tune_cache_that_is_a_file_is_refused_before_measuring(
    session_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x\n")
    out = tmp_path / "run"
    argv = [str(session_bundle), *TINY, "--no-progress", "--tune", "--tune-cache", str(afile)]
    assert bench_main([*argv, "--out", str(out)]) == 2
    assert f"--tune-cache {afile}: is a file, not a folder" in capsys.readouterr().err
    assert not out.exists()


def test_a_failed_cache_write_keeps_the_choice_and_says_why(session_bundle: Path, tmp_path: Path) -> None:
    from cxr_core.bundle import load_bundle

    blocker = tmp_path / "afile"
    blocker.write_text("x\n")
    row = {
        "name": "onnx-int8",
        "kind": "format",
        "status": "ok",
        "runtime": "onnxruntime",
        "threads": 1,
        "variant": "default",
        "settings": None,
        "latency_ms": {"p50": 1.0},
        "golden": {"passed": True, "max_abs_dp": 0.01},
    }
    results = {"rows": [row], "gates": {"failures": []}}
    block = tune_choice(results, load_bundle(session_bundle), blocker / "cache")
    assert block["status"] == "not cached" and block["cache_file"] is None
    assert block["choice"]["model"] == "onnx-int8" and str(blocker) in block["error"]


def test_sigint_is_held_back_while_the_files_are_written() -> None:
    done = []
    with pytest.raises(KeyboardInterrupt), interrupts_deferred():
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        done.append(True)
    assert done == [True]


def test_ctrl_c_ends_in_one_line_exit_130_and_leaves_nothing(session_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    argv = [str(session_bundle), "--formats", "onnx", "--threads", "1", "--runs", "100000"]
    argv += ["--max-seconds", "60", "--warmup", "1", "--idle-seconds", "0", "--e2e-images", "1"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks", *argv, "--no-progress", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not list(out.glob(".edge-bench-*/*.task.json")) and time.monotonic() < deadline:
        time.sleep(0.1)  # measuring has begun once the first child's task file is there
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr[-2000:]
    assert stderr.strip().splitlines()[-1] == "edge-bench: interrupted" and "Traceback" not in stderr
    assert not out.exists(), sorted(p.name for p in out.iterdir())  # the run created it: removed again


@pytest.fixture(scope="module")
def data_run(session_bundle: Path, eval_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Run:
    """One tiny run with --data and the end-to-end split: every artefact kind (auc.png, predictions)."""
    out = tmp_path_factory.mktemp("safety") / "res"
    argv = [str(session_bundle), *TINY, "--quiet", "--data", str(eval_dir), "--limit", "8"]
    argv += ["--e2e-images", "1", "--e2e-repeats", "1", "--out", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", *argv], capture_output=True, text=True, timeout=300, check=False
    )
    return Run(done.returncode, done.stdout, done.stderr, out)


def test_a_synthetic_bundle_is_marked_everywhere(data_run: Run) -> None:
    assert data_run.code == 0, data_run.stderr[-2000:]
    assert data_run.stdout.startswith(f"*** {MARK} ***")
    assert data_run.stdout.rstrip().splitlines().count(f"*** {MARK} ***") == 2  # above and below the tables
    md = (data_run.out / "results.md").read_text().splitlines()
    assert md[2] == f"> **{MARK}**"  # right under the title
    results = data_run.results
    assert results["synthetic_training_data"] is True
    assert results["notices"] == ["Synthetic training data: not for patients"]
    assert validate_results(results) == []
    assert sorted(results["plots"]) == ["auc.png", "e2e.png", "latency.png"]
    for name in results["plots"]:
        with Image.open(data_run.out / name) as image:
            assert image.convert("RGB").getpixel((2, 2)) == WARNING_RED  # the banner on top


def test_a_folder_with_another_runs_results_is_refused_unless_overwrite(
    session_bundle: Path, data_run: Run, tmp_path: Path, run_bench: RunBench
) -> None:
    assert data_run.code == 0, data_run.stderr[-2000:]
    out = tmp_path / "res"
    shutil.copytree(data_run.out, out)
    (out / "notes.txt").write_text("mine\n")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    argv = [str(session_bundle), *TINY, *FAST[-1:], "--e2e-images", "0"]
    refused = run_bench(argv, out)
    assert refused.code == 2 and "already holds the results of another run" in refused.stderr
    assert "--overwrite" in refused.stderr and "Traceback" not in refused.stderr
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # untouched

    replaced = run_bench([*argv, "--overwrite"], out)
    assert replaced.code == 0, replaced.stderr[-2000:]
    results = replaced.results
    assert results["evaluation"] is None and results["plots"] == ["latency.png"]
    # only this run's files are left beside the results; files edge-bench never writes stay
    assert sorted(p.name for p in out.iterdir()) == ["latency.png", "notes.txt", "results.json", "results.md"]
    assert json.loads((out / "results.json").read_text())["created_at"] == results["created_at"]
