"""The settings screen's *Self-test*: run the bundle's golden check on the worker, show it readably.

The check itself is :func:`cxr_core.selftest.run_selftest` (the same golden comparison as
``cxr-export verify`` and
edge-bench, so the screen and the benchmark never disagree); it runs on the app's worker thread
(:meth:`edge_app.worker.PredictionService.selftest`), never on the UI thread. This module only
turns its rows into text (:func:`describe_row`, :func:`overall_line`; no Kivy, testable alone)
and wires the button to the worker (:class:`SelfTestMixin`, a mixin of ``CxrEdgeApp``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_app.worker import Failed, Outcome, SelfTested

logger = logging.getLogger(__name__)

ALL_PASS = "All models reproduce the exported reference on this device."
NO_BUNDLE = "No model bundle is loaded, so there is nothing to self-test; choose a bundle above first."
#: Statuses that mean the model ran (or tried to) and did not reproduce the reference.
FAILED_STATUSES = ("fail", "error")


@dataclass(frozen=True)
class SelfTestLine:
    """One model's row on the screen: ``figures`` is the comparison or, without one, the reason."""

    model: str
    runtime: str
    status: str
    figures: str


def _number(value: Any) -> str:
    return "-" if value is None else f"{float(value):.3g}"


def describe_row(row: Mapping[str, Any]) -> SelfTestLine:
    """The text of one :func:`~cxr_core.selftest.run_selftest` row."""
    tolerance = row.get("tolerance") or {}
    if row.get("max_abs_dp") is None:  # never ran: unavailable runtime or an error; say why
        figures = str(row.get("message") or "no result")
    else:
        figures = (
            f"max |dp| {_number(row['max_abs_dp'])} "
            f"(tolerance {_number(tolerance.get('max_abs_dp'))}), "
            f"feature map {_number(row.get('feature_map_rel_error'))} "
            f"(tolerance {_number(tolerance.get('feature_map_rel_error'))})"
        )
        if row.get("ms") is not None:
            figures += f", {float(row['ms']):.0f} ms"
    runtime = str(row.get("runtime") or "-")
    return SelfTestLine(str(row.get("model")), runtime, str(row.get("status")), figures)


def overall_line(rows: Sequence[Mapping[str, Any]]) -> tuple[str, bool]:
    """The verdict under the list and whether every model passed."""
    if not rows:
        return "The bundle lists no models to check.", False
    failed = [str(r["model"]) for r in rows if r.get("status") in FAILED_STATUSES]
    unchecked = [str(r["model"]) for r in rows if r.get("status") not in FAILED_STATUSES + ("pass",)]
    if not failed and not unchecked:
        return ALL_PASS, True
    passed = len(rows) - len(failed) - len(unchecked)
    parts = []
    if failed:
        parts.append(
            f"{len(failed)} of {len(rows)} models do NOT reproduce the exported reference on this "
            f"device: {', '.join(failed)}. Do not use them here."
        )
    if unchecked:
        parts.append(f"Not checked (runtime not available on this device): {', '.join(unchecked)}.")
    if passed:
        parts.append(f"{passed} of {len(rows)} models pass.")
    return " ".join(parts), False


class SelfTestMixin:
    """The *Self-test* button of the settings screen (a mixin of ``CxrEdgeApp``).

    Uses the app's ``service``, ``options``, ``bundle_path``, ``busy``, ``screens`` and ``_set_busy``;
    writes ``selftest_summary`` and ``selftest_state`` (``""``, ``running``, ``pass``, ``fail``).
    """

    service: Any
    options: Any
    bundle_path: str
    busy: bool
    screens: Any
    selftest_summary: str
    selftest_state: str
    _set_busy: Callable[[str | None], None]
    allow_untrusted_bundles: Callable[[], bool]

    def run_selftest(self) -> None:
        """Check every model of the bundle in use against its golden set, on the worker thread."""
        if self.busy:
            return
        if not self.bundle_path:
            self._show_selftest(None, NO_BUNDLE, "unavailable")
            return
        bundle = Path(self.bundle_path)
        self._show_selftest(None, f"Running the self-test on {bundle.name} ...", "running")
        self._set_busy(f"Self-test: running the golden images of {bundle.name} through every model ...")
        self.service.selftest(
            bundle,
            self._on_selftest,
            threads=self.options.threads,
            allow_untrusted=self.allow_untrusted_bundles(),
        )

    def _on_selftest(self, outcome: Outcome) -> None:
        self._set_busy(None)
        if isinstance(outcome, SelfTested):
            if str(outcome.bundle) != self.bundle_path:  # the bundle changed meanwhile: stale
                self.clear_selftest()
                return
            text, ok = overall_line(outcome.rows)
            self._show_selftest([describe_row(r) for r in outcome.rows], text, "pass" if ok else "fail")
        elif isinstance(outcome, Failed):
            self._show_selftest(None, f"Self-test not run: {outcome.title}. {outcome.message}", "fail")
        else:  # no other job answers this callback; say so rather than show nothing
            logger.error("unexpected self-test outcome %r", outcome)
            self._show_selftest(
                None, f"Self-test not run: unexpected answer {type(outcome).__name__}", "fail"
            )

    def clear_selftest(self) -> None:
        """Forget the shown results (another bundle is in use)."""
        self._show_selftest(None, "", "")

    def _show_selftest(self, lines: list[SelfTestLine] | None, summary: str, state: str) -> None:
        self.selftest_summary = summary
        self.selftest_state = state
        self.screens.get_screen("settings").show_selftest(lines or [])
