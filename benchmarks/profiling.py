"""Per-operator profiles: where the milliseconds go inside a format (``edge-bench --profile``).

ONNX Runtime: a separate session with ``SessionOptions.enable_profiling`` runs the same batch-1
input; its Chrome-trace JSON is kept beside results.json and summarised per operator type (ms
per inference, share of operator time, node count). This is how one sees whether an INT8 graph
really runs ``QLinearConv`` / fused ``ConvInteger`` kernels or spends its time in
``DequantizeLinear`` / ``Transpose`` / float ``BatchNormalization`` nodes (docs/toolchain-notes.md).

LiteRT: the Python ``Interpreter`` exposes no per-operator timings (its profiler is reachable
only from C++); this records the operator census of the file instead and points to the
``benchmark_model`` tool (``--enable_op_profiling=true``) for timings.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from benchmarks.latency import TimingPlan
from cxr_core.bundle import Bundle, ModelEntry
from cxr_core.optional import require

logger = logging.getLogger(__name__)

LITERT_HINT = (
    "the LiteRT Python API exposes no per-operator timings; build or download TensorFlow's "
    "benchmark_model tool and run: benchmark_model --graph={model} --num_threads={threads} "
    "--use_xnnpack=true --enable_op_profiling=true"
)


def summarize_ort_trace(trace: list[dict[str, Any]], warmup: int) -> dict[str, Any]:
    """Per-op-type totals of an ONNX Runtime profile, over the runs after the first ``warmup``.

    Node events (``cat == "Node"``, name ending ``_kernel_time``) are assigned to the
    ``model_run`` event whose time window holds them.
    """
    runs = sorted(
        (e for e in trace if e.get("cat") == "Session" and e.get("name") == "model_run"),
        key=lambda e: e["ts"],
    )[warmup:]
    windows = [(int(e["ts"]), int(e["ts"]) + int(e["dur"])) for e in runs]
    total_us: dict[str, float] = defaultdict(float)
    nodes: dict[str, set[str]] = defaultdict(set)
    providers: Counter[str] = Counter()
    for event in trace:
        if event.get("cat") != "Node" or not str(event.get("name", "")).endswith("_kernel_time"):
            continue
        ts = int(event["ts"])
        if not any(lo <= ts <= hi for lo, hi in windows):
            continue
        args = event.get("args") or {}
        op = str(args.get("op_name", "?"))
        total_us[op] += float(event.get("dur", 0))
        nodes[op].add(str(event["name"]))
        providers[str(args.get("provider", "?"))] += 1
    count = max(len(windows), 1)
    all_ops = sum(total_us.values())
    ops = [
        {
            "op_type": op,
            "ms_per_run": round(us / count / 1000.0, 4),
            "share": round(us / all_ops, 4) if all_ops else 0.0,
            "nodes": len(nodes[op]),
        }
        for op, us in sorted(total_us.items(), key=lambda kv: -kv[1])
    ]
    run_ms = [(hi - lo) / 1000.0 for lo, hi in windows]
    return {
        "runs": len(windows),
        "run_ms_p50": round(float(np.median(run_ms)), 4) if run_ms else None,
        "op_ms_per_run": round(all_ops / count / 1000.0, 4),
        "ops": ops,
        "providers": dict(providers),
    }


def profile_onnxruntime(
    model_path: Path, input_name: str, one: NDArray[np.float32], threads: int, plan: TimingPlan, prefix: str
) -> dict[str, Any]:
    """Run a profiling ONNX Runtime session and summarise its trace (kept at the returned path)."""
    ort = require("onnxruntime", extra="runtime", purpose="profiling ONNX models (--profile)")

    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = prefix
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
    warmup = max(1, plan.warmup)
    runs = min(plan.runs, 20)
    for _ in range(warmup + runs):
        session.run(None, {input_name: one})
    trace_path = Path(session.end_profiling())
    trace = json.loads(trace_path.read_text(encoding="utf-8"))
    summary = summarize_ort_trace(trace, warmup)
    return {"tool": "onnxruntime profiler", "trace_file": str(trace_path), **summary}


def litert_op_census(model_path: Path, threads: int) -> dict[str, Any]:
    """Operator types of a .tflite file (no timings: see the module docstring)."""
    result: dict[str, Any] = {
        "tool": "litert",
        "available": False,
        "hint": LITERT_HINT.format(model=model_path, threads=threads),
    }
    try:
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(model_path), num_threads=threads)
        ops = interpreter._get_ops_details()  # private, but the only census the Python API offers
    except (ImportError, AttributeError, RuntimeError, ValueError) as exc:
        result["census_error"] = f"{type(exc).__name__}: {exc}"
        return result
    census = Counter(str(op.get("op_name", "?")) for op in ops)
    result["op_counts"] = dict(census.most_common())
    return result


def profile_entry(
    bundle: Bundle, entry: ModelEntry, one: NDArray[np.float32], threads: int, plan: TimingPlan, prefix: str
) -> dict[str, Any]:
    """Profile one model entry with the tool its format allows."""
    path = bundle.path(entry)
    if entry.runtime == "onnxruntime":
        spec = entry.input
        feed = np.ascontiguousarray(one.transpose(0, 2, 3, 1)) if spec.layout == "NHWC" else one
        return profile_onnxruntime(path, spec.name, feed, threads, plan, prefix)
    if entry.runtime == "litert":
        return litert_op_census(path, threads)
    return {"tool": None, "available": False, "hint": f"no profiler for {entry.runtime} files"}


def top_ops(profile: Mapping[str, Any], count: int = 6) -> list[dict[str, Any]]:
    """The ``count`` most expensive op types of a summarised profile (for the report)."""
    return list(profile.get("ops") or [])[:count]
