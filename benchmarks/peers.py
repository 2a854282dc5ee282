"""Peer runtimes measured side by side with the bundle's formats: ``edge-bench --peer openvino``.

A peer is what an engineer would pick instead of cxr-edge's runtimes on the same device. It runs
the bundle's own FP32 ONNX file, in its own child process like every row, with the same golden
inputs, timing plan and golden tolerance (the FP32 entry's), so "ahead of the peer" is a ratio of
two figures measured in one run. Peers are optional: never a dependency of cxr-edge; asking for
one that is not installed stops the run before measuring, with the pip command.

OpenVINO rows (``openvino`` package, CPU plugin):

* ``openvino-fp32``: ``INFERENCE_PRECISION_HINT=f32``, OpenVINO computing in float32;
* ``openvino-default``: OpenVINO's default precision on this CPU, which it picks silently: bf16 on
  CPUs with AVX-512 BF16 or AMX (recorded in the row as ``peer.inference_precision``), f32 elsewhere.

Both with ``PERFORMANCE_HINT=LATENCY`` and ``INFERENCE_NUM_THREADS`` = the row's thread count.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from benchmarks.config import BenchConfigError
from benchmarks.latency import TimingPlan, summarize, time_calls
from benchmarks.memory import current_rss_mb, memory_source, peak_rss_mb

#: Peer name -> (module that must be importable, pip command).
PEERS: dict[str, tuple[str, str]] = {"openvino": ("openvino", "pip install openvino")}
#: Rows per peer: name -> requested inference precision (None = the peer's default).
OPENVINO_ROWS: dict[str, str | None] = {"openvino-fp32": "f32", "openvino-default": None}


def check_peers(peers: tuple[str, ...]) -> None:
    """Every requested peer is known and importable, else :class:`BenchConfigError` with the pip command."""
    for peer in peers:
        if peer not in PEERS:
            raise BenchConfigError(f"--peer {peer!r} is not a known peer; expected one of {list(PEERS)}")
        module, pip = PEERS[peer]
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise BenchConfigError(
                f"--peer {peer}: the {module!r} package is not installed. It is optional and never a "
                f"dependency of cxr-edge; to measure it side by side install it with: {pip}"
            )


def peer_rows(peer: str) -> dict[str, str | None]:
    """Row names of ``peer`` and the precision each requests."""
    if peer == "openvino":
        return dict(OPENVINO_ROWS)
    raise BenchConfigError(f"--peer {peer!r} is not a known peer; expected one of {list(PEERS)}")


def _compile_openvino(path: str, threads: int, precision: str | None) -> tuple[Any, dict[str, Any]]:
    import openvino as ov

    core = ov.Core()
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": int(threads)}
    if precision is not None:
        config["INFERENCE_PRECISION_HINT"] = precision
    compiled = core.compile_model(path, "CPU", config)
    actual = str(compiled.get_property("INFERENCE_PRECISION_HINT"))
    info = {
        "peer": "openvino",
        "version": ov.__version__,
        "requested_precision": precision or "default",
        "inference_precision": actual.split(".")[-1].replace("<Type: '", "").rstrip("'>"),
        "device": str(core.get_property("CPU", "FULL_DEVICE_NAME")),
    }
    return compiled, info


def measure_peer(task: Mapping[str, Any]) -> dict[str, Any]:
    """Measure one peer row (``task['name']`` of ``task['peer']``) on the bundle's FP32 ONNX file."""
    from benchmarks.measure import optional_golden, sample_inputs
    from cxr_core.bundle import load_bundle
    from cxr_core.parity import golden_check, golden_tolerance_for

    bundle = load_bundle(task["bundle"], verify=False)  # the parent verified the hashes once
    entry = bundle.model(task["format"])
    plan = TimingPlan(**task["plan"])
    threads = int(task["threads"])
    precision = peer_rows(task["peer"])[task["name"]]
    golden = optional_golden(bundle)
    result: dict[str, Any] = {"memory": {"source": memory_source(), "baseline_rss_mb": current_rss_mb()}}
    t0 = time.perf_counter_ns()
    import openvino  # noqa: F401  (timed: the import is part of what a user waits for)

    t1 = time.perf_counter_ns()
    compiled, info = _compile_openvino(str(bundle.path(entry)), threads, precision)
    t2 = time.perf_counter_ns()
    result.update(import_ms=(t1 - t0) / 1e6, load_ms=(t2 - t1) / 1e6, runtime="openvino", peer=info)
    result["memory"]["after_load_rss_mb"] = current_rss_mb()
    names = {str(spec.role): spec.name for spec in entry.outputs}
    request = compiled.create_infer_request()

    def run(batch: np.ndarray) -> dict[str, np.ndarray]:
        outputs = request.infer({0: batch})
        by_name = {}
        for port, value in outputs.items():
            for name in port.get_names():
                by_name[name] = np.asarray(value, dtype=np.float32)
        return {
            "probabilities": by_name[names.get("probabilities", "probabilities")],
            "feature_map": by_name[names.get("feature_map", "feature_map")],
        }

    one = sample_inputs(bundle, golden, 1)
    samples, truncated = time_calls(lambda: run(one), plan)
    result["latency_ms"] = {**summarize(samples), "truncated": truncated, "samples": samples}
    result["memory"]["peak_rss_mb"] = peak_rss_mb()
    if golden is not None:
        inputs = np.asarray(golden["inputs"], dtype=np.float32)
        parts = [run(np.ascontiguousarray(inputs[i : i + 1])) for i in range(len(inputs))]
        outputs = {
            role: np.concatenate([p[role] for p in parts]) for role in ("probabilities", "feature_map")
        }
        result["golden"] = golden_check(outputs, golden, golden_tolerance_for(entry), bundle.operating_points)
    result["throughput"] = {"batch": 1, "skipped": "peer rows are measured at batch 1 only"}
    return result
