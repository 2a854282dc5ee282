"""``run_benchmark(config) -> results``: the whole measurement, returned as the results.json dict.

The dict (schema in :mod:`benchmarks.schema`, version :data:`SCHEMA_VERSION`) has one row per
(format, thread count) in ``rows`` (the PyTorch reference rows among them, ``kind: "reference"``),
one summary per format in ``formats`` (golden parity and, with ``--data``, the evaluation-set
parity), the INT8/FP32 and FP32/PyTorch latency ratios, the learned input gate's cost next to
inference (``gate_cost``) and, with ``--gate-in``/``--gate-ood``, its refusal rates
(``gate_rates``; :mod:`benchmarks.gate_bench`), the machine, the settings and the gates.
"""

from __future__ import annotations

import datetime as _dt
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.config import BenchConfig, check_formats
from benchmarks.data import load_eval_set, preprocess_eval_set
from benchmarks.e2e import write_sample_radiograph
from benchmarks.gate_bench import gate_costs, gate_rates
from benchmarks.gates import evaluate_gates
from benchmarks.machine import load_average, machine_info, package_versions, thermal_state
from benchmarks.outdir import check_out, check_writable_folder, claim_out
from benchmarks.parity import eval_parity, reference_for
from benchmarks.progress import Reporter
from benchmarks.runner import Variant, describe_formats, merge_rounds, plan_variants, run_variants, work_dir
from benchmarks.torch_ref import REFERENCE_NAME
from cxr_core.bundle import Bundle, load_bundle

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
ROW_KEYS = ("import_ms", "load_ms", "latency_ms", "throughput", "memory", "golden", "e2e", "profile")
PREDICTIONS_FILE = "predictions.npz"


class BenchResults(dict[str, Any]):
    """The results.json dict, plus the files the run made for ``--out`` (``attachments``: file name ->
    bytes: predictions.npz, profiler traces), which :func:`benchmarks.outputs.write_outputs` writes
    beside results.json: nothing lands in ``--out`` before the run has finished."""

    def __init__(self, data: dict[str, Any], attachments: dict[str, bytes] | None = None) -> None:
        super().__init__(data)
        self.attachments: dict[str, bytes] = dict(attachments or {})


def check_destinations(config: BenchConfig) -> None:
    """Before measuring: ``--out`` can take this run's files, and the ``--tune`` cache is a folder."""
    check_out(config.out, config.overwrite)
    if config.tune:
        from cxr_core.runtime.tuning import TUNING_DIR_ENV, tuning_dir

        flag = "--tune-cache" if config.tune_dir is not None else f"the tuning cache (${TUNING_DIR_ENV})"
        expected = "a folder (new, or existing and writable) for the tuning cache"
        check_writable_folder(config.tune_dir or tuning_dir(), flag, expected)


def _bundle_block(bundle: Bundle) -> dict[str, Any]:
    provenance = bundle.manifest.provenance
    return {
        "path": str(bundle.root),
        "name": bundle.root.name,
        "architecture": bundle.architecture,
        "labels": list(bundle.labels),
        "input_size": bundle.spec.input_size,
        "operating_points": list(bundle.operating_points) if bundle.operating_points else None,
        "recommended": dict(bundle.manifest.recommended) or None,
        "exported_at": provenance.exported_at,
        "checkpoint_sha256": provenance.checkpoint_sha256,
        "trust": None if bundle.trust is None else bundle.trust.describe(),
    }


def _row(variant: Variant, infos: dict[str, dict[str, Any]]) -> dict[str, Any]:
    merged = merge_rounds(variant.results)
    if variant.kind == "peer":
        base = infos.get(variant.format or "", {"file": None, "size_bytes": None})
        info = {
            "int8": False,
            "fp16": False,
            "runtime": variant.peer,
            "file": base["file"],
            "size_bytes": base["size_bytes"],
        }
    else:
        info = infos.get(
            variant.name, {"int8": False, "fp16": False, "runtime": "torch", "file": None, "size_bytes": None}
        )
    row: dict[str, Any] = {
        "name": variant.name,
        "kind": "reference" if variant.kind == "torch" else "format",
        "threads": variant.threads,
        "status": merged.get("status", "error"),
        "error": merged.get("error"),
        "runtime": merged.get("runtime") or info["runtime"],
        "int8": info["int8"],
        "fp16": info["fp16"],
        "file": info["file"],
        "size_bytes": info["size_bytes"],
        "rounds": merged.get("rounds", len(variant.results)),
    }
    row.update({key: merged.get(key) for key in ROW_KEYS})
    row["kind"] = "peer" if variant.kind == "peer" else row["kind"]
    row["variant"] = variant.label
    row["settings"] = variant.settings.to_dict() if variant.settings is not None else None
    row["peer"] = merged.get("peer")
    return row


def is_default_row(row: dict[str, Any]) -> bool:
    """A row of a format (or the reference) with the default runtime settings: not A/B, not a peer."""
    return row.get("variant", "default") == "default" and row.get("kind") != "peer"


def _vs_default(rows: list[dict[str, Any]]) -> None:
    """``vs_default``: an A/B row's p50 / the same format's default p50 at the same threads."""
    p50 = {
        (r["name"], r["threads"]): r["latency_ms"]["p50"]
        for r in rows
        if r["status"] == "ok" and is_default_row(r)
    }
    for row in rows:
        base = p50.get((row["name"], row["threads"]))
        ok = row["status"] == "ok" and row["kind"] != "peer" and not is_default_row(row) and base
        row["vs_default"] = round(row["latency_ms"]["p50"] / base, 4) if ok else None


def _prepare(config: BenchConfig, bundle: Bundle, work: Path, reporter: Reporter) -> dict[str, Any]:
    """Preprocess the evaluation set once and pick the end-to-end image files."""
    shared: dict[str, Any] = {"eval_count": 0}
    if config.data is not None:
        eval_set = load_eval_set(config.data, bundle.labels, config.limit)
        with reporter.bar(len(eval_set), "preprocessing the evaluation set") as step:
            path, kept, skipped = preprocess_eval_set(eval_set, bundle.spec, work / "eval_inputs.npy", step)
        shared.update(
            eval_inputs=str(path), eval_count=len(kept), eval_set=eval_set, kept=kept, skipped=skipped
        )
        images = [str(eval_set.paths[i]) for i in kept[: config.e2e_images]]
    else:
        images = []
    if config.e2e_images and not images:  # a scratch input, removed with the work folder
        images = [str(write_sample_radiograph(work / "e2e_sample.png"))]
    shared["e2e_images"] = images
    return shared


def _npz_bytes(arrays: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def _evaluation(
    bundle: Bundle,
    shared: dict[str, Any],
    infos: dict[str, dict[str, Any]],
    work: Path,
    attachments: dict[str, bytes],
) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
    """Evaluation-set parity per format, and the block describing the set; the predictions go into
    ``attachments`` (written beside results.json)."""
    if "eval_set" not in shared:
        return {}, None
    eval_set, kept = shared["eval_set"], shared["kept"]
    truth, mask = eval_set.labels[kept], eval_set.mask[kept]
    probs = {p.name.removesuffix(".probs.npy"): np.load(p) for p in sorted(work.glob("*.probs.npy"))}
    probs = {name: p for name, p in probs.items() if p.shape == truth.shape}
    parity = eval_parity(bundle.labels, truth, mask, probs, infos, bundle.operating_points)
    arrays = {"labels": truth, "mask": mask, "paths": np.asarray([str(eval_set.paths[i]) for i in kept])}
    arrays["label_names"] = np.asarray(bundle.labels)
    arrays.update({f"probabilities/{n}": p for n, p in probs.items()})
    attachments[PREDICTIONS_FILE] = _npz_bytes(arrays)
    block = {
        "source": eval_set.source,
        "images": int(len(kept)),
        "skipped": shared["skipped"],
        "positives": {label: int(truth[mask[:, k], k].sum()) for k, label in enumerate(bundle.labels)},
        "predictions_file": PREDICTIONS_FILE,
    }
    return parity, block


def _format_summaries(
    rows: list[dict[str, Any]], infos: dict[str, dict[str, Any]], parity: dict[str, dict[str, Any]]
) -> list[dict[str, Any]]:
    rows = [r for r in rows if is_default_row(r) or r["kind"] == "peer"]
    names = list(dict.fromkeys(r["name"] for r in rows))
    out = []
    for name in names:
        mine = [r for r in rows if r["name"] == name]
        ok = [r for r in mine if r["status"] == "ok"]
        best = max(ok, key=lambda r: r["threads"]) if ok else mine[0]
        out.append(
            {
                "name": name,
                "kind": best["kind"],
                "runtime": best["runtime"],
                "int8": best["int8"],
                "fp16": best["fp16"],
                "size_bytes": best["size_bytes"],
                "status": "ok" if ok else best["status"],
                "error": None if ok else best["error"],
                "reference_format": reference_for(name, infos) if name in infos else None,
                "golden": best.get("golden"),
                "eval": parity.get(name),
            }
        )
    return out


def latency_ratios(rows: list[dict[str, Any]], infos: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """p50 ratios at each thread count: reduced-precision format / its FP32 reference, FP32 / PyTorch,
    and every format / each peer row (``--peer``: below 1 = ahead of the peer)."""
    p50 = {
        (r["name"], r["threads"]): r["latency_ms"]["p50"]
        for r in rows
        if r["status"] == "ok" and is_default_row(r)
    }
    peers = {
        (r["name"], r["threads"]): r["latency_ms"]["p50"]
        for r in rows
        if r["status"] == "ok" and r["kind"] == "peer"
    }
    ratios = []
    for (name, threads), value in sorted(p50.items()):
        if name in infos:
            ref = reference_for(name, infos)
            if ref is not None and (ref, threads) in p50 and (infos[name]["int8"] or infos[name]["fp16"]):
                ratios.append(
                    {
                        "threads": threads,
                        "format": name,
                        "baseline": ref,
                        "ratio": round(value / p50[(ref, threads)], 4),
                    }
                )
            if not infos[name]["int8"] and not infos[name]["fp16"] and (REFERENCE_NAME, threads) in p50:
                ratios.append(
                    {
                        "threads": threads,
                        "format": name,
                        "baseline": REFERENCE_NAME,
                        "ratio": round(value / p50[(REFERENCE_NAME, threads)], 4),
                    }
                )
        if name in infos:
            for (peer, peer_threads), peer_value in sorted(peers.items()):
                if peer_threads == threads:
                    ratios.append(
                        {
                            "threads": threads,
                            "format": name,
                            "baseline": peer,
                            "ratio": round(value / peer_value, 4),
                        }
                    )
    return ratios


def _attach_traces(rows: list[dict[str, Any]], work: Path, out: Path, attachments: dict[str, bytes]) -> None:
    """Profiler traces in the work folder become attachments; their rows then name their place in ``out``."""
    for row in rows:
        profile = row.get("profile") or {}
        trace = Path(str(profile.get("trace_file") or ""))
        if profile.get("trace_file") and trace.parent == work and trace.is_file():
            attachments[trace.name] = trace.read_bytes()
            profile["trace_file"] = str(out / trace.name)


def _tune(config: BenchConfig, results: dict[str, Any], bundle: Bundle) -> dict[str, Any] | None:
    if not config.tune:
        return None
    from benchmarks.tune import tune_choice

    return tune_choice(results, bundle, config.tune_dir)


def run_benchmark(config: BenchConfig, reporter: Reporter | None = None) -> BenchResults:
    """Measure every requested format of ``config.bundle`` (see the module docstring).

    ``--out`` and the tuning cache are checked first (:func:`check_destinations`); the run writes
    nothing into ``--out`` but a scratch folder, removed on every exit: its files are returned as
    :attr:`BenchResults.attachments` for :func:`benchmarks.outputs.write_outputs`.
    """
    reporter = reporter or Reporter(enabled=False)
    check_destinations(config)
    started = _dt.datetime.now(_dt.UTC)
    machine = machine_info()  # load average and thermal state before the run ...
    # verify the signature and every hash once, here; the measuring child processes trust this check
    bundle = load_bundle(config.bundle, allow_untrusted=config.allow_untrusted)
    infos = describe_formats(bundle)
    formats = check_formats(config.formats, list(infos), config.bundle) if config.formats else tuple(infos)
    claim_out(config.out)
    attachments: dict[str, bytes] = {}
    with work_dir(config.out) as tmp:
        work = Path(tmp)
        shared = _prepare(config, bundle, work, reporter)
        variants = plan_variants(config, formats, infos)
        with reporter.bar(len(variants) * config.rounds, "measuring") as step:
            run_variants(config, variants, shared, work, reporter.variant_callback(step))
        rows = [_row(v, infos) for v in variants]
        _vs_default(rows)
        _attach_traces(rows, work, config.out, attachments)
        parity, eval_block = _evaluation(bundle, shared, infos, work, attachments)
    rates = None
    if config.gate_in is not None and config.gate_ood is not None:
        logger.info("measuring the input gate's refusal rates (--gate-in, --gate-ood)")
        rates = gate_rates(
            config.bundle, formats, config.gate_in, config.gate_ood, max(config.threads), config.gate_limit
        )
    results: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "tool": "edge-bench",
        "cxr_edge_version": package_versions(("cxr-edge",))["cxr-edge"],
        "created_at": started.isoformat(timespec="seconds"),
        "duration_s": round((_dt.datetime.now(_dt.UTC) - started).total_seconds(), 2),
        "device_name": config.device_name or machine["hostname"] or "unknown",
        # the synthetic-data mark travels with every figure of such a bundle (cxr_core.bundle.clinical)
        "synthetic_training_data": bundle.synthetic,
        "notices": [bundle.clinical.notice] if bundle.clinical.notice else [],
        "machine": {
            **machine,
            "load_average_end": load_average(),
            "thermal_end": thermal_state(),
        },  # ... and after
        "bundle": _bundle_block(bundle),
        "settings": config.to_dict(),
        "evaluation": eval_block,
        "rows": rows,
        "formats": _format_summaries(rows, infos, parity),
        "ratios": latency_ratios(rows, infos),
        "gate_cost": gate_costs(rows),
        "gate_rates": rates,
    }
    results["gates"] = evaluate_gates(results, config.gates)
    results["tune"] = _tune(config, results, bundle)
    return BenchResults(results, attachments)
