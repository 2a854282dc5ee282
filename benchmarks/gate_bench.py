"""edge-bench's learned input gate figures: its cost next to inference, and its refusal rates.

* **Cost** (always, from the end-to-end split): per variant the wall time the learned gate adds to a
  prediction against the model's own time, and their ratio. The Predictor runs the gate's image
  signals beside the model, so no stage shows the whole cost: the split times every prediction
  also with the gate taken out (alternating which runs first), and the gate adds the median of the
  paired wall-time differences (``learned_gate_added_ms``), against the inference stage of the gate-less
  runs (``inference_without_gate_ms``). The issue's target: at most 15% of the INT8 classifier's
  inference at 2 threads (:data:`COST_TARGET`); the report marks those rows.
* **Refusal rates** (``--gate-in FOLDER --gate-ood FOLDER``): each format runs every image of both
  folders through the :class:`~cxr_core.predictor.Predictor` (rules on the file, then every learned
  signal) via :func:`benchmarks.gate_study.judge`: the false refusal rate on the in-distribution
  folder, the true refusal rate on the out-of-distribution one (and per sub-folder, taken as a
  category), how many images each signal and the rules refused, and each signal's AUROC
  (in-distribution vs out-of-distribution scores, where the signal scored both).

It measures and reports; it asserts nothing.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.config import BenchConfigError
from benchmarks.gate_study import Verdict, auroc_of, judge, oriented
from cxr_core.imaging_common import IMAGE_SUFFIXES

logger = logging.getLogger(__name__)

#: The learned gate may cost at most this share of the INT8 classifier's inference ...
COST_TARGET = 0.15
#: ... at this many threads (issue 12).
COST_TARGET_THREADS = 2
#: Images read from each of --gate-in / --gate-ood at most (sorted by path).
DEFAULT_GATE_LIMIT = 500


def gate_costs(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per measured variant whose end-to-end split ran the learned gate."""
    costs = []
    for row in rows:
        e2e = row.get("e2e") or {}
        stages = e2e.get("stages_ms") or {}
        if e2e.get("status") != "ok" or row.get("kind") != "format" or "learned_gate" not in stages:
            continue
        gate = float(stages["learned_gate"]["mean"])
        inference = float(stages["inference"]["mean"])
        bare = e2e.get("inference_without_gate_ms")
        model_ms = float(bare) if bare is not None else inference
        # results from before the gate ran beside the model have no gate-less run: the stage is all
        added = float(e2e.get("learned_gate_added_ms", gate))
        target_row = bool(row.get("int8")) and row["threads"] == COST_TARGET_THREADS
        ratio = round(added / model_ms, 4) if model_ms > 0 else None
        costs.append(
            {
                "format": row["name"],
                "threads": row["threads"],
                "int8": bool(row.get("int8")),
                "learned_gate_ms": round(gate, 4),
                "inference_ms": round(inference, 4),
                "inference_without_gate_ms": round(float(bare), 4) if bare is not None else None,
                "added_ms": round(added, 4),
                "ratio": ratio,
                "target_row": target_row,
                "within_target": None if not target_row or ratio is None else ratio <= COST_TARGET,
            }
        )
    return costs


def image_files(folder: Path, limit: int, flag: str) -> list[Path]:
    """The image files under ``folder`` (recursively, sorted), at most ``limit``."""
    if not folder.is_dir():
        raise BenchConfigError(
            f"{flag} {folder}: not a folder; expected a folder of PNG, JPEG or DICOM images"
        )
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise BenchConfigError(
            f"{flag} {folder}: no image files (looked for {', '.join(IMAGE_SUFFIXES)} in it and below)"
        )
    return files[:limit]


def _counts(verdicts: Sequence[Verdict]) -> dict[str, Any]:
    by_signal: dict[str, int] = {}
    for verdict in verdicts:
        for signal in {d.signal for d in verdict.signals if not d.accepted}:
            by_signal[signal] = by_signal.get(signal, 0) + 1
    refused = sum(v.refused for v in verdicts)
    return {
        "images": len(verdicts),
        "refused": refused,
        "rate": round(refused / len(verdicts), 4) if verdicts else None,
        "refused_by_signal": by_signal,
        "refused_by_rules": sum(v.outcome == "rule" for v in verdicts),
        "unreadable": sum(v.outcome == "unreadable" for v in verdicts),
    }


def _scores(verdicts: Sequence[Verdict]) -> dict[str, list[float]]:
    """Per signal, its finite scores oriented so that higher means 'more unlike the training data'."""
    scores: dict[str, list[float]] = {}
    for verdict in verdicts:
        for d in verdict.signals:
            if math.isfinite(d.score):
                scores.setdefault(d.signal, []).append(oriented(d.score, d.refuse_above))
    return scores


def signal_aurocs(inside: Sequence[Verdict], outside: Sequence[Verdict]) -> dict[str, float | None]:
    """Each signal's AUROC, out-of-distribution as positives (None where it scored only one side)."""
    scores_in, scores_out = _scores(inside), _scores(outside)
    return {
        signal: auroc_of(scores_in.get(signal, []), scores_out.get(signal, []))
        for signal in sorted(set(scores_in) | set(scores_out))
    }


def _category(path: Path, root: Path) -> str:
    parts = path.relative_to(root).parts
    return parts[0] if len(parts) > 1 else "(top level)"


def format_rates(
    predictor: Any, inside: Sequence[Path], outside: Sequence[Path], ood_root: Path
) -> dict[str, Any]:
    """One format's refusal rates over both folders (``predictor`` opened on that format)."""
    verdicts_in = [judge(predictor, p) for p in inside]
    verdicts_out = [judge(predictor, p) for p in outside]
    in_counts, out_counts = _counts(verdicts_in), _counts(verdicts_out)
    categories: dict[str, list[Verdict]] = {}
    for path, verdict in zip(outside, verdicts_out, strict=True):
        categories.setdefault(_category(path, ood_root), []).append(verdict)
    return {
        "signals": list(predictor.learned_gate.signals),
        "in_images": in_counts["images"],
        "false_refusals": in_counts["refused"],
        "false_refusal_rate": in_counts["rate"],
        "ood_images": out_counts["images"],
        "true_refusals": out_counts["refused"],
        "true_refusal_rate": out_counts["rate"],
        "in_refused_by_signal": in_counts["refused_by_signal"],
        "ood_refused_by_signal": out_counts["refused_by_signal"],
        "in_refused_by_rules": in_counts["refused_by_rules"],
        "ood_refused_by_rules": out_counts["refused_by_rules"],
        "unreadable": in_counts["unreadable"] + out_counts["unreadable"],
        "auroc": signal_aurocs(verdicts_in, verdicts_out),
        "categories": {
            name: {"images": len(v), "refused": sum(x.refused for x in v)}
            for name, v in sorted(categories.items())
        },
    }


def gate_rates(
    bundle_dir: Path,
    formats: Sequence[str],
    in_folder: Path,
    ood_folder: Path,
    threads: int,
    limit: int = DEFAULT_GATE_LIMIT,
) -> dict[str, Any]:
    """The ``gate_rates`` block of results.json: every format over both folders."""
    from cxr_core.predictor import Predictor

    inside = image_files(in_folder, limit, "--gate-in")
    outside = image_files(ood_folder, limit, "--gate-ood")
    block: dict[str, Any] = {
        "in_folder": str(in_folder),
        "ood_folder": str(ood_folder),
        "threads": threads,
        "formats": {},
    }
    for name in formats:
        logger.info("input gate rates of %s over %d + %d images", name, len(inside), len(outside))
        # the parent checked the bundle's signature and hashes (results.run_benchmark)
        with Predictor.load(bundle_dir, model=name, threads=threads, allow_untrusted=True) as predictor:
            block["formats"][name] = format_rates(predictor, inside, outside, ood_folder)
    return block
