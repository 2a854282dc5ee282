"""benchmarks.speed_study: the MAC count behind the compute bound, and one real run on the tiny bundle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.speed_study import count_macs, main
from cxr_core.bundle import load_bundle


def test_mac_count_scales_with_the_input_area(session_bundle: Path) -> None:
    bundle = load_bundle(session_bundle, allow_untrusted=True)
    path = bundle.path(bundle.model("onnx"))
    small, large = count_macs(path, 64), count_macs(path, 128)
    assert small > 0
    # convolutions scale with the area (4x); only the small classifier Gemm does not
    assert 3.9 < large / small <= 4.0


@pytest.mark.slow
def test_one_command_prints_the_table_with_bound_ratios(
    session_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [str(session_bundle), "--rounds", "1", "--runs", "3", "--no-peer", "--allow-untrusted"]
    assert main([*argv, "--pairs", "4", "--out", str(tmp_path / "study")]) == 0
    out = capsys.readouterr().out
    assert "| onnx-int8 |" in out and "x bound" in out
    assert "ONNX Runtime INT8 2-thread / 1-thread" in out
    assert "paired in one process, onnx-int8 2 threads, spin,opt-all / 1 thread" in out
    assert (tmp_path / "study" / "results.json").is_file()
    scaling = json.loads((tmp_path / "study" / "thread-scaling.json").read_text())
    assert [row["pairs"] for row in scaling["rows"]] == [4, 4]


def test_one_pair_is_refused_before_anything_is_timed(
    session_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([str(session_bundle), "--pairs", "1", "--out", str(tmp_path / "study")])
    assert exit_info.value.code == 2
    assert "--pairs 1" in capsys.readouterr().err
    assert not (tmp_path / "study").exists()
