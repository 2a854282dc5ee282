"""One format at one thread count, measured inside a fresh child process (see :mod:`benchmarks.worker`).

Order matters for the memory figures: import the runtime (timed), open the model (load time),
time batch-1 latency, snapshot the peak RSS (the figure a batch-1 device sees), run the golden
set (parity), then the larger-batch throughput (second peak, ``peak_rss_batch_mb``), then the
optional evaluation-set pass, and only then the end-to-end split through a Predictor (which opens
its own copy of the model, so it must come after the memory snapshots).
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from benchmarks.latency import TimingPlan, summarize, throughput, time_calls
from benchmarks.memory import current_rss_mb, memory_source, peak_rss_mb
from cxr_core.bundle import Bundle, BundleError, ModelEntry, load_bundle, load_golden
from cxr_core.parity import golden_check, golden_tolerance_for

logger = logging.getLogger(__name__)

#: The module each runtime name imports (timed separately from the model load).
RUNTIME_MODULES = {
    "onnxruntime": "onnxruntime",
    "litert": "ai_edge_litert.interpreter",
    "tflite_runtime": "tflite_runtime.interpreter",
    "tensorflow": "tensorflow",
}


def dynamic_batch(entry: ModelEntry) -> bool:
    """True when the file's input batch axis is symbolic (``"batch"`` in the manifest)."""
    shape = entry.input.shape
    return bool(shape) and shape[0] is None


def sample_inputs(
    bundle: Bundle, golden: Mapping[str, NDArray[Any]] | None, count: int
) -> NDArray[np.float32]:
    """``count`` preprocessed NCHW inputs: golden inputs repeated, else seeded noise of the right shape."""
    if golden is not None and len(golden["inputs"]):
        base = np.asarray(golden["inputs"], dtype=np.float32)
    else:
        size = bundle.spec.input_size
        base = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
    reps = -(-count // len(base))
    return np.ascontiguousarray(np.concatenate([base] * reps)[:count])


def _open(
    bundle: Bundle, entry: ModelEntry, threads: int, settings: Mapping[str, Any] | None = None
) -> tuple[Any, dict[str, float]]:
    from cxr_core.runtime import open_model
    from cxr_core.runtime.settings import DEFAULT_SETTINGS, RuntimeSettings

    chosen = RuntimeSettings.from_dict(dict(settings)) if settings else DEFAULT_SETTINGS

    runtime = entry.runtime
    t0 = time.perf_counter_ns()
    if runtime in RUNTIME_MODULES:
        try:
            importlib.import_module(RUNTIME_MODULES[runtime])
        except ImportError:
            pass  # open_model picks a fallback runtime or raises with the pip hint
    t1 = time.perf_counter_ns()
    backend = open_model(bundle.path(entry), entry, threads=threads, settings=chosen)
    t2 = time.perf_counter_ns()
    return backend, {"import_ms": (t1 - t0) / 1e6, "load_ms": (t2 - t1) / 1e6}


def run_eval(backend: Any, inputs_path: Path, out_path: Path, batch: int) -> dict[str, Any]:
    """Probabilities of every preprocessed evaluation input (a memory-mapped ``.npy``), saved."""
    inputs = np.load(inputs_path, mmap_mode="r")
    chunks = []
    t0 = time.perf_counter_ns()
    for start in range(0, len(inputs), batch):
        chunk = np.ascontiguousarray(inputs[start : start + batch], dtype=np.float32)
        chunks.append(np.asarray(backend(chunk)["probabilities"], dtype=np.float32))
    seconds = (time.perf_counter_ns() - t0) / 1e9
    probs = np.concatenate(chunks) if chunks else np.zeros((0, 0), np.float32)
    np.save(out_path, probs)
    return {"images": int(len(inputs)), "seconds": round(seconds, 3), "probabilities": str(out_path)}


def measure_format(task: Mapping[str, Any]) -> dict[str, Any]:
    """Measure ``task['format']`` of ``task['bundle']`` at ``task['threads']`` threads (see module doc)."""
    bundle = load_bundle(task["bundle"], verify=False)  # the parent verified the hashes once
    entry = bundle.model(task["format"])
    plan = TimingPlan(**task["plan"])
    threads = int(task["threads"])
    golden = optional_golden(bundle)
    result: dict[str, Any] = {"memory": {"source": memory_source(), "baseline_rss_mb": current_rss_mb()}}
    backend, load = _open(bundle, entry, threads, task.get("settings"))
    result.update(load)
    result["runtime"] = getattr(backend, "runtime", None)
    result["memory"]["after_load_rss_mb"] = current_rss_mb()
    try:
        one = sample_inputs(bundle, golden, 1)
        samples, truncated = time_calls(lambda: backend(one), plan)
        result["latency_ms"] = {**summarize(samples), "truncated": truncated, "samples": samples}
        result["memory"]["peak_rss_mb"] = peak_rss_mb()  # only batch-1 calls so far
        if golden is not None:
            outputs = backend(np.asarray(golden["inputs"], dtype=np.float32))
            result["golden"] = golden_check(
                outputs, golden, golden_tolerance_for(entry), bundle.operating_points
            )
        batch = int(task.get("batch", 8))
        if dynamic_batch(entry) and batch > 1:
            many = sample_inputs(bundle, golden, batch)
            runs = max(3, plan.runs // 10)
            result["throughput"] = throughput(
                lambda: backend(many), batch, TimingPlan(runs, 1, plan.max_seconds)
            )
            result["memory"]["peak_rss_batch_mb"] = peak_rss_mb()
        else:
            result["throughput"] = {"batch": 1, "skipped": "the file has a fixed batch of 1"}
        if task.get("eval_inputs"):
            result["eval"] = run_eval(
                backend, Path(task["eval_inputs"]), Path(task["eval_out"]), max(batch, 1)
            )
    finally:
        backend.close()
    if task.get("e2e_images"):
        from benchmarks.e2e import e2e_split

        images, repeats = task["e2e_images"], int(task.get("e2e_repeats", 3))
        result["e2e"] = _extra(
            "end-to-end split", lambda: e2e_split(bundle.root, entry.name, threads, images, repeats)
        )
    if task.get("profile_prefix"):
        from benchmarks.profiling import profile_entry

        result["profile"] = _extra(
            "profile", lambda: profile_entry(bundle, entry, one, threads, plan, task["profile_prefix"])
        )
    return result


def _extra(what: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """An optional part of a row (e2e split, profile): its failure is recorded there, the row stands."""
    try:
        return run()
    except Exception as exc:  # the latency figures already measured must survive
        logger.warning("%s failed: %s: %s", what, type(exc).__name__, exc)
        return {"status": "error", "error": f"{type(exc).__name__}: {exc}"}


def optional_golden(bundle: Bundle) -> dict[str, NDArray[Any]] | None:
    """The bundle's golden set, or None (logged) when it has none or it cannot be read."""
    try:
        return load_golden(bundle)
    except BundleError as exc:
        logger.warning("no usable golden set, golden parity skipped: %s", exc)
        return None
