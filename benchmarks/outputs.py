"""Write a run's files into ``--out``: its attachments, the plots, results.json and results.md.

The earlier run's artefacts that this run does not replace are removed first (``--out`` then holds
one run's files only; docs/benchmarks.md, "Output"), and Ctrl-C is held back until every file is
written, so an interrupted run never leaves a half-published set.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from benchmarks.e2e import STAGES
from benchmarks.fileio import write_bytes_atomic, write_json_atomic, write_text_atomic
from benchmarks.outdir import remove_stale
from benchmarks.plots import write_plots
from benchmarks.report import markdown_report

RESULTS_JSON = "results.json"
RESULTS_MD = "results.md"


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT back inside the block and raise KeyboardInterrupt after it, if one came."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, _frame: FrameType | None) -> None:
        received.append(signum)

    previous = signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def write_outputs(results: dict[str, Any], out: Path) -> dict[str, Path]:
    """Attachments and plots first (the plots' names go into results["plots"]), then JSON and Markdown."""
    attachments: dict[str, bytes] = getattr(results, "attachments", {})
    with interrupts_deferred():
        out.mkdir(parents=True, exist_ok=True)
        remove_stale(out, keep=set(attachments))  # the rest (results, plots) is rewritten below
        extra = {name: write_bytes_atomic(out / name, data) for name, data in attachments.items()}
        results["plots"] = write_plots(results, out, STAGES)
        paths = {
            "json": write_json_atomic(out / RESULTS_JSON, results),
            "markdown": write_text_atomic(out / RESULTS_MD, markdown_report(results, results["plots"])),
        }
    paths.update({name: out / name for name in results["plots"]})
    paths.update(extra)
    return paths
