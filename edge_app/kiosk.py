"""Kiosk services of the app: the watch folder, the study log and the inactivity reset (a mixin).

Driven by Kivy ``Clock`` intervals on the UI thread; the logic itself has no Kivy:
:class:`edge_app.kiosk_engine.StudyQueue` (watch folder -> study log -> next study) and
:class:`edge_app.studylog.StudyLog`. Every file that becomes ready is recorded in the log at
once, whatever the app is doing; a study is started only when the app is free (bundle loaded,
no report being written, no self-test running), and the next one as soon as it is free again.
Each study's outcome goes into the log and its report (PNG + JSON) is written automatically.
Kiosk *looks* -- fullscreen, no cursor, larger targets -- are set by
``edge_app.main.configure_kivy`` and ``CxrEdgeApp.build``.
"""

from __future__ import annotations

import logging
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from kivy.clock import Clock

from edge_app.kiosk_engine import BundleIdentity, StudyQueue, study_stem
from edge_app.storage import remove_stale_temp_files
from edge_app.studylog import Study, StudyLog, StudyLogError, open_log
from edge_app.watch import FolderWatcher
from edge_app.worker import Outcome, Refused, Scored

logger = logging.getLogger(__name__)

#: Seconds between two applications of the retention setting while the app runs (also at start).
RETENTION_CHECK_S = 3600.0
#: After SIGTERM, the longest wait for the study in hand before the app closes anyway (systemd
#: kills a service that has not stopped after 90 s by default).
STOP_GRACE_S = 60.0
#: Seconds between two looks at whether SIGTERM has arrived.
SIGTERM_CHECK_S = 0.25


class KioskMixin:
    """Watch folder polling and the reset to the start screen after inactivity.

    Uses the app's ``options``, ``busy``, ``screens``, ``open_path`` and ``go_home``.
    """

    options: Any
    watcher: FolderWatcher | None
    watch_text: str
    kiosk_health_text: str
    reports_dir: str
    settings: Any
    service: Any
    bundle_title: str
    model_ready: bool
    report_text: str
    last_export: Any
    busy: bool
    screens: Any
    _last_activity: float
    study_log: StudyLog | None = None
    study_queue: StudyQueue | None = None
    last_study: Study | None = None
    _study: Study | None = None
    #: The kiosk study whose refusal is on screen and may be scored anyway, with that refusal.
    _refused_study: tuple[Study, Refused] | None = None
    _override_study: Study | None = None
    _bundle_identity: BundleIdentity | None = None
    _stop_requested: bool = False
    _closing: bool = False
    _grace_event: Any = None
    _previous_sigterm: Any = None
    _sigterm_received: bool = False
    _sigterm_check: Any = None

    # ------------------------------------------------------------------ a stop asked by the system

    def install_stop_signal(self) -> None:
        """SIGTERM (``systemctl stop`` or restart of the kiosk service) lets the study in hand finish
        and be logged, then closes the app. Without it SDL turns SIGTERM into a quit and the app
        closed at once under the study: a study cut short is analysed again at the next start and
        counts towards the attempts after which it is given up. ``cxr-app`` installs it before the
        app runs, from the main thread (where Python runs signal handlers, and before SDL would
        install its own); :meth:`remove_stop_signal` (on stop) puts the previous handler back."""
        if threading.current_thread() is not threading.main_thread():
            return
        self._previous_sigterm = signal.signal(signal.SIGTERM, self._on_sigterm)
        # The handler only sets a flag: it may run in the middle of Kivy's own code (the clock's
        # bookkeeping included), so the clock looks at the flag instead.
        self._sigterm_check = Clock.schedule_interval(self._check_sigterm, SIGTERM_CHECK_S)

    def remove_stop_signal(self) -> None:
        if self._sigterm_check is not None:
            self._sigterm_check.cancel()
            self._sigterm_check = None
        if self._previous_sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._previous_sigterm = None

    def _on_sigterm(self, _signum: int, _frame: Any) -> None:
        self._sigterm_received = True

    def _check_sigterm(self, _dt: float) -> None:
        """Every :data:`SIGTERM_CHECK_S`: once SIGTERM has arrived, close as soon as nothing is in hand
        (a study, a bundle load, a report ...)."""
        if self._sigterm_received:
            self._begin_stop()
            self._stop_if_idle()

    def _begin_stop(self) -> None:
        """Start no new study (once): :meth:`_check_sigterm` closes the app when the one in hand is
        done, or :data:`STOP_GRACE_S` from now at the latest."""
        if self._stop_requested:
            return
        self._stop_requested = True
        logger.warning("asked to stop: finishing the study in hand, then closing")
        self._grace_event = Clock.schedule_once(lambda _dt: self._close_now(), STOP_GRACE_S)

    def _stop_if_idle(self) -> None:
        if self._study is not None or self._override_study is not None:
            return
        if self.busy or (self.service is not None and self.service.busy):
            return
        self._close_now()

    def _close_now(self) -> None:
        if self._grace_event is not None:
            self._grace_event.cancel()
            self._grace_event = None
        if not self._closing:
            self._closing = True
            self.stop()  # type: ignore[attr-defined]

    def open_study_log(self) -> None:
        """Open (or create) the study log in the data folder; remove temp files of interrupted writes."""
        data_dir = Path(self.data_dir)
        removed = remove_stale_temp_files(data_dir) + remove_stale_temp_files(Path(self.reports_dir))
        if removed:
            logger.info("removed %d temp file(s) left by interrupted writes", removed)
        try:
            self.study_log = open_log(data_dir)
        except (StudyLogError, OSError, sqlite3.Error) as exc:
            logger.error("the study log in %s cannot be opened: %s", data_dir, exc)
            self.kiosk_health_text = f"Study log unavailable: {exc}"
            return
        watch = Path(self.options.watch) if self.options.watch is not None else None
        self.study_queue = StudyQueue(self.study_log, data_dir, watch, settle_s=self.options.watch_settle_s)
        self.study_queue.apply_retention(self.settings.retention_days, self.settings.retention_count)

    def close_study_log(self) -> None:
        if self.study_log is not None:
            self.study_log.close()
        self.study_log = self.study_queue = None

    def start_kiosk_services(self) -> list[Any]:
        """Open the study log; schedule the watch-folder poll and the inactivity check."""
        events = []
        self.open_study_log()
        if self.options.watch is not None and self.study_queue is not None:
            self.watcher = self.study_queue.watcher
            self._update_watch_text()
            self._update_health()
            self.bind(busy=self._free_again, model_ready=self._free_again)
            self._poll_watch(0.0)  # a first look now: what is there is queued while the bundle loads
            events.append(Clock.schedule_interval(self._poll_watch, self.options.watch_interval_s))
        if self.study_queue is not None:
            events.append(Clock.schedule_interval(self._apply_retention, RETENTION_CHECK_S))
        if self.options.idle_reset is not None:
            interval = min(1.0, self.options.idle_reset / 4.0)
            events.append(Clock.schedule_interval(self._check_idle, interval))
        return events

    def _touched(self, *_args: Any) -> None:
        self._last_activity = time.monotonic()

    def _check_idle(self, _dt: float) -> None:
        limit = self.options.idle_reset
        if limit is None or self.busy:
            return
        if self.screens.current in ("start", "first_run"):
            return
        if time.monotonic() - self._last_activity >= limit:
            logger.info("no activity for %.0f s: back to the start screen", limit)
            self.go_home()

    def _update_watch_text(self) -> None:
        folder = self.options.watch
        if self.watcher is not None and self.watcher.available:
            self.watch_text = f"Watching {folder}: new images there are analysed automatically."
        else:
            self.watch_text = f"Waiting for the watch folder {folder} (plug in the drive)."

    def _poll_watch(self, _dt: float) -> None:
        """Record the files that became ready (whatever the app is doing), then start the next study."""
        if self.study_queue is None or self.watcher is None:
            return
        added = self.study_queue.scan()
        self._update_watch_text()
        if added:
            self._update_health()
        self.next_study()

    def _apply_retention(self, _dt: float) -> None:
        if self.study_queue is not None and not self.busy:
            self.study_queue.apply_retention(self.settings.retention_days, self.settings.retention_count)

    def _free_again(self, *_args: Any) -> None:
        if not self.busy and self.model_ready:
            Clock.schedule_once(lambda _dt: self.next_study(), 0)

    def on_bundle_ready(self, bundle: Path, model_name: str, runtime: str) -> None:
        """A bundle was loaded: remember what judges the studies from now on, start the queue."""
        try:
            self._bundle_identity = BundleIdentity.of(bundle, model_name, runtime)
        except Exception as exc:  # noqa: BLE001 -- the bundle just loaded; its manifest is readable
            logger.error("cannot identify the bundle %s: %s", bundle, exc)
            self._bundle_identity = None

    def next_study(self) -> None:
        """Start the oldest pending study, if the app is free and has a model."""
        queue = self.study_queue
        if queue is None or self.options.watch is None or self._study is not None or self._stop_requested:
            return
        if not self.model_ready or self.busy or self.service is None or self.service.busy:
            return
        study = queue.claim_next(self._bundle_identity)
        self._update_health()
        if study is None:
            return
        self._study = study
        self._last_activity = time.monotonic()
        self._set_busy(f"Analysing {study.name} ...")
        title = self.bundle_title
        self.service.process_study(
            Path(study.path), Path(self.reports_dir), study_stem(study), title, self._on_study
        )

    def _on_study(self, outcome: Outcome) -> None:
        study, self._study = self._study, None
        if study is not None and self.study_queue is not None:
            self.last_study = self.study_queue.complete(study, outcome, self._bundle_identity)
        self._update_health()
        # A refusal the user may override on the refusal screen: "Score anyway" must find its study.
        overridable = isinstance(outcome, Refused) and outcome.overridable and study is not None
        self._refused_study = (study, outcome) if overridable else None
        self._on_outcome(outcome)  # shows the result or the refusal, as for a picked image
        self._show_study_report(outcome)

    def _show_study_report(self, outcome: Outcome) -> None:
        if isinstance(outcome, Scored) and outcome.report is not None:
            self.last_export = outcome.report
            self.report_text = f"Report saved: {outcome.report.png.name} and .json in {self.reports_dir}"

    def score_study_anyway(self, outcome: Refused) -> bool:
        """ "Score anyway" for the kiosk study refused as ``outcome``: score it with the gate
        overridden, write its report and log it as scored anyway. False when ``outcome`` is not a
        kiosk study's (the app then scores the picked image itself)."""
        pending = self._refused_study
        if pending is None or pending[1] is not outcome or self.study_queue is None:
            return False
        study = pending[0]
        self._refused_study = None
        problem = self.study_queue.check_source(study)
        if problem is not None:
            self._set_busy(None)
            self._show_message("error", "This study cannot be scored", (problem,), study.path)
            return True
        self._override_study = study
        self.service.process_study(
            Path(study.path),
            Path(self.reports_dir),
            study_stem(study),
            self.bundle_title,
            self._on_study_override,
            override_gate=True,
        )
        return True

    def _on_study_override(self, outcome: Outcome) -> None:
        study, self._override_study = self._override_study, None
        if isinstance(outcome, Scored) and study is not None and self.study_queue is not None:
            self.last_study = self.study_queue.record_override(study, outcome)
        self._update_health()
        self._on_outcome(outcome)
        self._show_study_report(outcome)

    def _update_health(self) -> None:
        if self.study_log is None:
            return
        self.kiosk_health_text = self.study_log.health().short()
