"""edge-bench --ab / --tune / --peer: flag validation, the missing-peer message, and real runs.

Benchmarks measure and print; these tests check structure and choices, never timings.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from benchmarks.cli import build_parser, config_from_args
from benchmarks.config import BenchConfigError
from benchmarks.peers import check_peers
from benchmarks.runner import plan_variants
from benchmarks.schema import validate_results
from benchmarks.variants import extra_settings
from cxr_core.runtime.settings import DEFAULT_SETTINGS, RuntimeSettings
from tests.benchmarks.conftest import FAST, RunBench

OPENVINO = importlib.util.find_spec("openvino") is not None


def _config(*argv: str):  # noqa: ANN202
    return config_from_args(build_parser().parse_args(["bundle", *argv]))


def test_missing_openvino_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed: find_spec returns None
    with pytest.raises(BenchConfigError, match="pip install openvino") as caught:
        check_peers(("openvino",))
    assert "never a dependency" in str(caught.value)
    with pytest.raises(BenchConfigError, match="pip install openvino"):
        _config("--peer", "openvino")


def test_unknown_peer_and_tune_cache_without_tune_are_refused() -> None:
    with pytest.raises(SystemExit) as caught:
        build_parser().parse_args(["bundle", "--peer", "tensorrt"])
    assert caught.value.code == 2
    with pytest.raises(BenchConfigError, match="--tune-cache DIR .* add --tune"):
        _config("--tune-cache", "/tmp/x")
    with pytest.raises(BenchConfigError, match="not a known peer"):
        check_peers(("tensorrt",))


def test_ab_and_tune_plan_one_setting_changed_per_row() -> None:
    config = _config("--ab", "--tune", "--threads", "1,2")
    infos = {
        "onnx-int8": {"runtime": "onnxruntime", "precision": "int8"},
        "tflite-int8": {"runtime": "litert", "precision": "int8"},
    }
    variants = plan_variants(config, ("onnx-int8", "tflite-int8"), infos)
    labels = {(v.name, v.threads, v.label) for v in variants}
    assert ("onnx-int8", 2, "spin,opt-all") in labels
    assert ("onnx-int8", 2, "nospin,opt-all,pinned") in labels
    assert ("onnx-int8", 1, "nospin,opt-basic") in labels
    assert ("onnx-int8", 1, "spin,opt-all") not in labels  # one thread has no pool to spin
    assert ("tflite-int8", 1, "no-xnnpack") in labels
    assert sum(v.is_default for v in variants) == 4  # 2 formats x 2 thread counts
    for v in variants:
        if v.settings is not None:
            changed = {k for k, val in v.settings.to_dict().items() if DEFAULT_SETTINGS.to_dict()[k] != val}
            assert len(changed) == 1, v
    assert extra_settings("onnxruntime", ab=False, tune=False, threads=2) == []


def test_runtime_settings_are_validated() -> None:
    from cxr_core.runtime.settings import RuntimeSettingsError

    with pytest.raises(RuntimeSettingsError, match="optimization='max'"):
        RuntimeSettings(optimization="max")
    with pytest.raises(RuntimeSettingsError, match="spinning='yes'"):
        RuntimeSettings(spinning="yes")  # type: ignore[arg-type]
    with pytest.raises(RuntimeSettingsError, match="unknown runtime setting"):
        RuntimeSettings.from_dict({"spin": True})
    assert RuntimeSettings.from_dict({"spinning": True}) == RuntimeSettings(spinning=True)


@pytest.mark.slow
def test_tune_run_caches_a_passing_choice_that_open_backend_uses(
    session_bundle: Path, tmp_path: Path, run_bench: RunBench, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cxr_core.bundle import load_bundle
    from cxr_core.runtime import open_backend
    from cxr_core.runtime.tuning import TUNING_DIR_ENV, load_choice

    cache = tmp_path / "cache"
    argv = [str(session_bundle), *FAST, "--threads", "2", "--e2e-images", "0", "--ab", "--tune"]
    run = run_bench([*argv, "--tune-cache", str(cache), "--allow-untrusted"], tmp_path / "out")
    assert run.code == 0, run.stderr[-2000:]
    results = run.results
    assert validate_results(results) == []
    ab = [r for r in results["rows"] if r["variant"] != "default"]
    assert ab and all(r["settings"] is not None and r["vs_default"] is not None for r in ab)
    assert {f["name"] for f in results["formats"]} == {"onnx", "onnx-int8"}  # summaries: defaults only
    tune = results["tune"]
    assert tune["status"] == "cached" and Path(tune["cache_file"]).parent == cache
    fastest = min(tune["candidates"], key=lambda c: c["p50_ms"])
    assert tune["choice"]["model"] == fastest["model"] and tune["choice"]["p50_ms"] == fastest["p50_ms"]
    assert "Runtime settings A/B and peers" in run.stdout and "Tuning (--tune)" in run.stdout

    monkeypatch.setenv(TUNING_DIR_ENV, str(cache))
    bundle = load_bundle(session_bundle, allow_untrusted=True)
    choice = load_choice(bundle)
    assert choice is not None and choice.model == tune["choice"]["model"]
    with open_backend(bundle, tuned=True) as backend:
        assert backend.model_name == choice.model
        assert backend.threads == choice.threads
        assert backend.settings == choice.settings  # type: ignore[attr-defined]


@pytest.mark.slow
@pytest.mark.skipif(not OPENVINO, reason="OpenVINO is optional and not installed here")
def test_openvino_peer_rows_run_the_fp32_file_with_golden_parity(
    session_bundle: Path, tmp_path: Path, run_bench: RunBench
) -> None:
    argv = [str(session_bundle), *FAST, "--threads", "1", "--e2e-images", "0", "--formats", "onnx"]
    run = run_bench([*argv, "--peer", "openvino", "--allow-untrusted"], tmp_path / "out")
    assert run.code == 0, run.stderr[-2000:]
    results = run.results
    assert validate_results(results) == []
    peers = {r["name"]: r for r in results["rows"] if r["kind"] == "peer"}
    assert set(peers) == {"openvino-fp32", "openvino-default"}
    fp32 = peers["openvino-fp32"]
    assert fp32["status"] == "ok", fp32["error"]
    assert fp32["peer"]["inference_precision"] in ("f32", "float32")
    assert fp32["golden"]["passed"] is True and fp32["golden"]["max_abs_dp"] < 1e-4
    assert peers["openvino-default"]["peer"]["inference_precision"]  # reported, whatever it is
    ratios = {(r["format"], r["baseline"]) for r in results["ratios"]}
    assert ("onnx", "openvino-fp32") in ratios
