"""PyTorch eager FP32 reference row (``edge-bench --reference-torch CHECKPOINT``), in a child process.

The device never has torch; a development machine does, and the issue asks for the eager model
as the yardstick ("ONNX Runtime FP32 no slower than PyTorch eager"). The row is measured like a
format (same golden input, same timing plan, same thread count, own process for its RSS) and
computes what the exported graphs compute: probabilities and the feature map. torch is imported
here only, lazily, with an install hint when absent.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.latency import TimingPlan, summarize, throughput, time_calls
from benchmarks.measure import optional_golden, sample_inputs
from benchmarks.memory import current_rss_mb, memory_source, peak_rss_mb
from cxr_core.bundle import load_bundle
from cxr_core.optional import require
from cxr_core.parity import DEFAULT_GOLDEN_TOLERANCE, golden_check

REFERENCE_NAME = "pytorch-fp32"


def torch_installed() -> bool:
    """Whether torch can be imported here (checked without importing it)."""
    return importlib.util.find_spec("torch") is not None


def measure_torch(task: Mapping[str, Any]) -> dict[str, Any]:
    """Load the checkpoint and measure it like a format (see the module docstring)."""
    memory: dict[str, Any] = {"source": memory_source(), "baseline_rss_mb": current_rss_mb()}
    t0 = time.perf_counter_ns()
    torch = require("torch", "train", "the PyTorch reference row (--reference-torch)")
    from training.checkpoint import load_model
    from training.models import probabilities

    threads = int(task["threads"])
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set in this process
    t1 = time.perf_counter_ns()
    model, _ = load_model(task["checkpoint"])
    t2 = time.perf_counter_ns()
    head = getattr(model.config, "head", "binary")
    memory["after_load_rss_mb"] = current_rss_mb()

    def forward(batch: np.ndarray) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            logits, feature_map = model(torch.from_numpy(batch), return_features=True)
            return {"probabilities": probabilities(logits, head).numpy(), "feature_map": feature_map.numpy()}

    bundle = load_bundle(task["bundle"], verify=False)
    golden = optional_golden(bundle)
    plan = TimingPlan(**task["plan"])
    result: dict[str, Any] = {"runtime": "torch", "import_ms": (t1 - t0) / 1e6, "load_ms": (t2 - t1) / 1e6}
    one = sample_inputs(bundle, golden, 1)
    samples, truncated = time_calls(lambda: forward(one), plan)
    result["latency_ms"] = {**summarize(samples), "truncated": truncated, "samples": samples}
    memory["peak_rss_mb"] = peak_rss_mb()  # only batch-1 calls so far
    if golden is not None:
        outputs = forward(np.asarray(golden["inputs"], dtype=np.float32))
        result["golden"] = golden_check(
            outputs, golden, DEFAULT_GOLDEN_TOLERANCE["fp32"], bundle.operating_points
        )
    batch = int(task.get("batch", 8))
    if batch > 1:
        many = sample_inputs(bundle, golden, batch)
        result["throughput"] = throughput(
            lambda: forward(many), batch, TimingPlan(max(3, plan.runs // 10), 1, plan.max_seconds)
        )
        memory["peak_rss_batch_mb"] = peak_rss_mb()
    result["memory"] = memory
    if task.get("eval_inputs"):
        inputs = np.load(task["eval_inputs"], mmap_mode="r")
        chunks = [
            forward(np.ascontiguousarray(inputs[s : s + max(batch, 1)], dtype=np.float32))["probabilities"]
            for s in range(0, len(inputs), max(batch, 1))
        ]
        np.save(task["eval_out"], np.concatenate(chunks).astype(np.float32))
        result["eval"] = {"images": int(len(inputs)), "probabilities": str(Path(task["eval_out"]))}
    return result
