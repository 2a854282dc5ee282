"""Run every (format, thread count) variant in its own child process and collect one row each.

The parent verifies the bundle once, prepares the shared inputs (the preprocessed evaluation set
as a memory-mappable ``.npy``, the end-to-end image files), then starts
``python -m benchmarks.worker`` per variant, idling briefly between variants so one session's
thread pool does not slow the next (docs/toolchain-notes.md). With ``rounds > 1`` the whole sweep repeats,
interleaved, and the rounds' samples are merged: on a shared machine this spreads drift over
every variant instead of penalising whichever ran during a busy minute.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.config import BenchConfig
from benchmarks.fileio import write_json_atomic
from benchmarks.latency import summarize
from benchmarks.torch_ref import REFERENCE_NAME, torch_installed
from cxr_core.bundle import Bundle
from cxr_core.optional import install_hint
from cxr_core.runtime.settings import RuntimeSettings

logger = logging.getLogger(__name__)

Progress = Callable[[str, dict[str, Any] | None], None]


@dataclass
class Variant:
    """One row to measure: a format (or the PyTorch reference, or a peer) at one thread count.

    ``settings`` None = the runtime defaults; otherwise the row is an A/B or tuning alternative
    (``label`` names it). A peer row runs ``format`` (the FP32 ONNX file) with ``peer``.
    """

    name: str
    threads: int
    kind: str  # "format" | "torch" | "peer"
    results: list[dict[str, Any]] = field(default_factory=list)
    settings: RuntimeSettings | None = None
    label: str = "default"
    format: str | None = None
    peer: str | None = None

    @property
    def is_default(self) -> bool:
        return self.settings is None and self.kind != "peer"


def describe_formats(bundle: Bundle) -> dict[str, dict[str, Any]]:
    """Precision / runtime / file / size of each model entry (for rows and reference choice).

    Precision is the entry's (the core format table's), never guessed from a name; ``int8`` and
    ``fp16`` stay as the results.json columns derived from it.
    """
    info = {}
    for entry in bundle.models:
        path = bundle.path(entry)
        info[entry.name] = {
            "precision": entry.precision,
            "int8": entry.precision == "int8",
            "fp16": entry.precision == "fp16",
            "runtime": entry.runtime,
            "file": entry.file,
            "size_bytes": int(entry.size_bytes or (path.stat().st_size if path.exists() else 0)),
        }
    return info


def child_timeout(config: BenchConfig, eval_images: int) -> float:
    """Generous wall-clock limit of one child: load + timed loop + throughput + evaluation pass."""
    return 300.0 + 3.0 * config.plan.max_seconds + 2.0 * eval_images


def spawn(task: dict[str, Any], work: Path, timeout: float) -> dict[str, Any]:
    """Run one task in a fresh interpreter; a crash, timeout or missing result becomes an error result."""
    label = "".join(c if c.isalnum() or c in "-_" else "_" for c in str(task.get("label", "default")))
    stem = f"{task['name']}-{label}-t{task['threads']}-r{task['round']}"
    task_path, out_path = work / f"{stem}.task.json", work / f"{stem}.result.json"
    write_json_atomic(task_path, task)
    command = [sys.executable, "-m", "benchmarks.worker", str(task_path), str(out_path)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"status": "error", "error": f"timed out after {timeout:.0f} s"}
    if out_path.is_file():
        return json.loads(out_path.read_text(encoding="utf-8"))
    tail = (done.stderr or "").strip().splitlines()[-5:]
    return {"status": "error", "error": f"child exited with code {done.returncode}: {' | '.join(tail)}"}


def plan_variants(
    config: BenchConfig, formats: tuple[str, ...], infos: dict[str, dict[str, Any]] | None = None
) -> list[Variant]:
    """Formats x threads (each followed by its ``--ab``/``--tune`` alternatives), then the PyTorch
    reference x threads when asked for, then the peers' rows on the FP32 ONNX file."""
    from benchmarks.variants import extra_settings

    infos = infos or {}
    variants = []
    for name in formats:
        family = infos.get(name, {}).get("runtime", "")
        for t in config.threads:
            variants.append(Variant(name, t, "format"))
            for settings in extra_settings(family, config.ab, config.tune, t):
                variants.append(Variant(name, t, "format", settings=settings, label=settings.label(family)))
    if config.reference_torch is not None:
        variants += [Variant(REFERENCE_NAME, t, "torch") for t in config.threads]
    if config.peers:
        from benchmarks.peers import peer_rows

        fp32 = next(
            (n for n, i in infos.items() if i["runtime"] == "onnxruntime" and i["precision"] == "fp32"), None
        )
        for peer in config.peers:
            for row in peer_rows(peer):
                for t in config.threads:
                    variants.append(Variant(row, t, "peer", label=row, format=fp32, peer=peer))
    return variants


def build_task(
    config: BenchConfig, variant: Variant, round_index: int, shared: dict[str, Any], work: Path
) -> dict[str, Any]:
    """The JSON task of one variant in one round (evaluation, e2e and profile only where due)."""
    top_threads = variant.threads == max(config.threads)
    task: dict[str, Any] = {
        "kind": variant.kind,
        "name": variant.name,
        "format": variant.format or variant.name,
        "label": variant.label,
        "settings": variant.settings.to_dict() if variant.settings is not None else None,
        "peer": variant.peer,
        "bundle": str(config.bundle),
        "threads": variant.threads,
        "round": round_index,
        "plan": {
            "runs": config.plan.runs,
            "warmup": config.plan.warmup,
            "max_seconds": config.plan.max_seconds,
        },
        "batch": config.batch,
    }
    if variant.kind == "torch":
        task["checkpoint"] = str(config.reference_torch)
    if not variant.is_default:
        return task  # A/B, tuning and peer rows: latency and golden parity only
    if round_index == 0 and top_threads and shared.get("eval_inputs"):
        task["eval_inputs"] = shared["eval_inputs"]
        task["eval_out"] = str(work / f"{variant.name}.probs.npy")
    if round_index == 0 and variant.kind == "format":
        task["e2e_images"] = shared.get("e2e_images") or []
        task["e2e_repeats"] = config.e2e_repeats
        if config.profile and top_threads:
            # into the work folder: run_benchmark hands the trace to write_outputs for --out
            task["profile_prefix"] = str(work / f"profile_{variant.name}_t{variant.threads}")
    return task


def run_variants(
    config: BenchConfig, variants: list[Variant], shared: dict[str, Any], work: Path, progress: Progress
) -> None:
    """Measure every variant ``config.rounds`` times (interleaved), appending results in place."""
    timeout = child_timeout(config, int(shared.get("eval_count", 0)))
    first = True
    for round_index in range(config.rounds):
        for variant in variants:
            if variant.kind == "peer" and variant.format is None:
                if round_index == 0:
                    variant.results.append(
                        {
                            "status": "unavailable",
                            "error": "the bundle has no FP32 ONNX model for the peer to run",
                        }
                    )
                continue
            if variant.kind == "torch" and not torch_installed():
                if round_index == 0:
                    variant.results.append(
                        {
                            "status": "unavailable",
                            "error": (
                                "PyTorch is not installed, so there is no reference row: "
                                + install_hint("train")
                            ),
                        }
                    )
                continue
            if not first and config.idle_seconds > 0:
                time.sleep(config.idle_seconds)
            first = False
            extra = "" if variant.label == "default" else f" [{variant.label}]"
            where = f"round {round_index + 1}/{config.rounds}"
            label = f"{variant.name}{extra} @ {variant.threads} thread(s), {where}"
            progress(label, None)
            result = spawn(build_task(config, variant, round_index, shared, work), work, timeout)
            variant.results.append(result)
            progress(label, result)


def merge_rounds(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from a variant's rounds: samples pooled, load time median, memory peaks max."""
    failed = [r for r in results if r.get("status") != "ok"]
    if failed or not results:
        return dict(failed[0]) if failed else {"status": "error", "error": "not measured"}
    row = dict(results[0])
    if len(results) == 1:
        return row
    samples = [s for r in results for s in r["latency_ms"]["samples"]]
    row["latency_ms"] = {
        **summarize(samples),
        "truncated": any(r["latency_ms"]["truncated"] for r in results),
        "samples": samples,
    }
    loads = [r["load_ms"] for r in results]
    row["load_ms"], row["load_ms_rounds"] = float(np.median(loads)), loads
    for key in ("peak_rss_mb", "peak_rss_batch_mb", "after_load_rss_mb"):
        values = [r["memory"].get(key) for r in results if r["memory"].get(key) is not None]
        if values:
            row["memory"][key] = max(values)
    rates = [r for r in results if "images_per_s" in r.get("throughput", {})]
    if rates:
        rates.sort(key=lambda r: r["throughput"]["images_per_s"])
        row["throughput"] = rates[len(rates) // 2]["throughput"]
    row["rounds"] = len(results)
    return row


def work_dir(out: Path) -> tempfile.TemporaryDirectory[str]:
    """A scratch folder inside ``out`` for tasks, results and the evaluation tensors (removed after)."""
    out.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix=".edge-bench-", dir=out)
