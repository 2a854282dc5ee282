"""``edge-bench --tune``: the fastest (format, threads, settings) that passes parity, cached per device.

Candidates are the run's format rows (defaults plus the ``--tune`` alternatives of
:mod:`benchmarks.variants`, and the ``--ab`` ones when asked for) that measured ``ok`` and passed
the golden parity check with the entry's tolerance; a format that tripped a gate of this run
(``--max-dp``, ``--fail-under`` ...) is not a candidate. The lowest batch-1 p50 wins. The choice is
written to the tuning cache (:mod:`cxr_core.runtime.tuning`) where ``open_backend(bundle,
tuned=True)`` finds it. Peer rows and the PyTorch reference are never candidates.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from cxr_core.bundle import Bundle
from cxr_core.runtime.settings import DEFAULT_SETTINGS, RuntimeSettings
from cxr_core.runtime.tuning import TunedChoice, machine_key, now, save_choice

logger = logging.getLogger(__name__)


def candidates(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every row that may be chosen, fastest first, each with why it qualifies."""
    failed = {f.get("format") for f in results["gates"]["failures"]}
    out = []
    for row in results["rows"]:
        golden = row.get("golden") or {}
        if row["kind"] != "format" or row["status"] != "ok" or row["name"] in failed:
            continue
        if not golden.get("passed"):
            continue
        out.append(
            {
                "model": row["name"],
                "runtime": row["runtime"],
                "threads": row["threads"],
                "variant": row.get("variant", "default"),
                "settings": row.get("settings") or DEFAULT_SETTINGS.to_dict(),
                "p50_ms": row["latency_ms"]["p50"],
                "golden_max_abs_dp": golden.get("max_abs_dp"),
            }
        )
    return sorted(out, key=lambda c: c["p50_ms"])


def tune_choice(results: dict[str, Any], bundle: Bundle, folder: Path | None = None) -> dict[str, Any]:
    """Pick the fastest passing candidate, cache it, and return the ``tune`` block of results.json."""
    ranked = candidates(results)
    if not ranked:
        logger.warning("--tune: no format passed the golden parity check; nothing cached")
        return {
            "status": "no passing candidate",
            "machine": machine_key(),
            "choice": None,
            "cache_file": None,
            "candidates": [],
        }
    best = ranked[0]
    entry = bundle.model(best["model"])
    choice = TunedChoice(
        model=best["model"],
        runtime=entry.runtime,
        threads=int(best["threads"]),
        settings=RuntimeSettings.from_dict(best["settings"]),
        p50_ms=float(best["p50_ms"]),
        golden_max_abs_dp=best["golden_max_abs_dp"],
        tuned_at=now(),
        candidates=ranked,
    )
    block = {
        "status": "cached",
        "machine": machine_key(),
        "choice": {k: v for k, v in choice.to_dict().items() if k != "candidates"},
        "cache_file": None,
        "candidates": ranked,
    }
    try:
        block["cache_file"] = str(save_choice(bundle, choice, folder))
    except OSError as exc:  # the measurements stand: report the cache failure, keep the results
        where = folder if folder is not None else "the tuning cache folder"
        block["status"] = "not cached"
        block["error"] = f"cannot write the tuning cache in {where}: {exc}"
        logger.warning("--tune: %s; the results are kept, nothing was cached", block["error"])
    return block
