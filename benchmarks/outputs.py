"""Write a run's files into ``--out``: results.json, results.md and the plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from benchmarks.e2e import STAGES
from benchmarks.fileio import write_json_atomic, write_text_atomic
from benchmarks.plots import write_plots
from benchmarks.report import markdown_report

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"


def write_outputs(results: dict[str, Any], out: Path) -> dict[str, Path]:
    """Plots first (their names go into results["plots"]), then the JSON and the Markdown."""
    out.mkdir(parents=True, exist_ok=True)
    results["plots"] = write_plots(results, out, STAGES)
    paths = {
        "json": write_json_atomic(out / RESULTS_JSON, results),
        "markdown": write_text_atomic(out / RESULTS_MD, markdown_report(results, results["plots"])),
    }
    paths.update({name: out / name for name in results["plots"]})
    return paths
