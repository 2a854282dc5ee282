"""The main job end to end at a tiny size: phantoms -> train -> export -> cxr-predict -> edge-bench."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cxr_demo.main_job import main


@pytest.mark.timeout(900)
def test_the_whole_chain_runs_and_prints_every_artefact(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "demo"
    argv = [
        "--out", str(out), "--images", "64", "--size", "256", "--input-size", "32", "--epochs", "1",
        "--encoder", "tiny-densenet", "--batch-size", "8", "--num-workers", "0", "--no-progress",
        "--formats", "onnx,onnx-int8", "--bench-threads", "1", "--bench-runs", "3", "--bench-images", "8",
        "--no-parity-gate",
    ]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    manifest = json.loads((out / "bundle" / "manifest.json").read_text())
    assert [m["name"] for m in manifest["models"]] == ["onnx", "onnx-int8"]
    predictions = json.loads((out / "predictions.json").read_text())
    assert len(predictions["results"]) == 4
    # the chain trusts its own key through OUT/trusted-keys only, and leaves the environment as it was
    assert predictions["bundle_trust"]["state"] == "trusted"
    assert [p.stem for p in (out / "trusted-keys").glob("*.pub")] == [predictions["bundle_trust"]["key_id"]]
    assert os.environ["CXR_EDGE_TRUSTED_KEYS"] != str(out / "trusted-keys")
    assert len(list((out / "heatmaps").glob("*.png"))) == 4
    bench = json.loads((out / "bench" / "results.json").read_text())
    assert {row["name"] for row in bench["rows"] if row["status"] == "ok"} >= {"onnx", "onnx-int8"}
    for name in ("bundle", "predictions", "heatmaps", "bench_results", "bench_report"):
        assert name in printed
    assert "not a diagnosis" in printed
    # A second run into the same folder replaces the first's artefacts (edge-bench refuses an
    # occupied results folder unless told to overwrite it; the demo owns OUT/bench).
    assert main(argv) == 0
    assert json.loads((out / "bench" / "results.json").read_text())["rows"]


#: cxr-demo with the [export] packages made unimportable, as after ``pip install -e '.[train]'`` only.
WITHOUT_EXPORT = """
import importlib.abc, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"onnx", "onnxruntime"}:
            raise ImportError(f"No module named {name!r} (blocked by the test)")
        return None
sys.meta_path.insert(0, Refuse())
from cxr_demo.main_job import main
sys.exit(main(sys.argv[1:]))
"""


def test_without_the_export_extra_it_stops_before_training_and_names_the_extra(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_EXPORT, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert "pip install -e '.[export]'" in result.stderr and "'onnx'" in result.stderr
    assert not out.exists()  # nothing generated or trained
