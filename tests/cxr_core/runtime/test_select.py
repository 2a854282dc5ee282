"""Choosing a runtime and a model: recommended key, did-you-mean, missing runtimes (real subprocesses)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cxr_core.bundle import load_bundle
from cxr_core.runtime import (
    RuntimeUnavailableError,
    UnknownRuntimeError,
    available_runtimes,
    open_backend,
    open_model,
)
from cxr_core.runtime.select import FAMILIES, canonical_runtime
from tests.manifest_entries import entry_of
from tests.signing import resign


def _set_recommended(bundle_dir: Path, recommended: dict[str, str] | None) -> None:
    path = bundle_dir / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["recommended"] = recommended
    if recommended is None:
        del manifest["recommended"]
    path.write_text(json.dumps(manifest))
    resign(bundle_dir)


def test_available_runtimes_lists_installed_ones_in_preference_order() -> None:
    found = available_runtimes()
    assert "onnxruntime" in found
    order = ["onnxruntime", "litert", "tflite_runtime", "tensorflow"]
    assert found == [name for name in order if name in found]


def test_without_a_recommendation_the_first_model_of_an_installed_runtime_runs(bundle_copy: Path) -> None:
    _set_recommended(bundle_copy, None)
    with open_backend(load_bundle(bundle_copy), threads=1) as backend:
        assert backend.model_name == "onnx" and backend.runtime == "onnxruntime"


def test_the_recommended_format_is_chosen(bundle_copy: Path) -> None:
    _set_recommended(bundle_copy, {"onnxruntime": "onnx-int8", "litert": "tflite-int8"})
    with open_backend(load_bundle(bundle_copy), threads=1) as backend:
        assert backend.model_name == "onnx-int8"
    with open_backend(load_bundle(bundle_copy), model="onnx", threads=1) as backend:
        assert backend.model_name == "onnx"


def test_an_unknown_runtime_name_gets_a_did_you_mean(session_bundle: Path) -> None:
    with pytest.raises(UnknownRuntimeError, match="unknown runtime 'onxruntime'.*did you mean 'onnxruntime'"):
        open_backend(load_bundle(session_bundle), runtime="onxruntime")
    with pytest.raises(UnknownRuntimeError, match="did you mean 'litert'"):
        canonical_runtime("litrt")
    assert canonical_runtime("ai-edge-litert") == "litert" and canonical_runtime("ORT") == "onnxruntime"


def test_a_runtime_that_cannot_run_the_format_is_refused(session_bundle: Path) -> None:
    bundle = load_bundle(session_bundle)
    entry = bundle.model("onnx")
    with pytest.raises(UnknownRuntimeError, match="runtime 'litert' cannot run model.onnx"):
        open_model(bundle.path(entry), entry, runtime="litert")
    with pytest.raises(RuntimeUnavailableError, match="has no model for runtime 'litert'"):
        open_backend(bundle, runtime="litert")


def test_the_family_comes_from_the_runtime_key_the_format_or_the_suffix() -> None:
    io = {"inputs": [], "outputs": []}
    assert entry_of({"name": "a", "runtime": "litert", "format": "x", **io}).runtime == "litert"
    assert entry_of({"name": "b", "format": "tflite-fp16", **io}).runtime == "litert"
    assert entry_of({"name": "c", "format": "custom", **io}, file="m.onnx").runtime == "onnxruntime"
    assert set(FAMILIES) == {"onnxruntime", "litert"}


#: Python code run with onnxruntime (and the LiteRT family) made unimportable, as on a device without them.
WITHOUT_RUNTIMES = """
import importlib.abc, json, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('onnxruntime', 'ai_edge_litert', 'tflite_runtime', 'tensorflow'):
            raise ImportError('blocked by test: ' + name)
        return None
sys.meta_path.insert(0, Refuse())
from cxr_core.bundle import load_bundle
from cxr_core.runtime import RuntimeUnavailableError, available_runtimes, open_backend
from quantize.verify import verify_bundle
result = {"available": available_runtimes()}
try:
    open_backend(load_bundle(sys.argv[1]))
except RuntimeUnavailableError as exc:
    result["error"] = str(exc)
    result["is_import_error"] = isinstance(exc, ImportError)
result["golden"] = verify_bundle(sys.argv[1])["golden"]
print(json.dumps(result))
"""


def test_a_missing_runtime_gives_the_pip_hint_and_verify_skips(session_bundle: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-c", WITHOUT_RUNTIMES, str(session_bundle)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["available"] == []
    assert "[runtime]" in result["error"] and "pip install" in result["error"] and result["is_import_error"]
    assert [row["status"] for row in result["golden"]] == ["unavailable", "unavailable"]
    assert all("[runtime]" in row["message"] for row in result["golden"])
