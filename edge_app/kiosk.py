"""Kiosk services of the app: the watch folder and the inactivity reset (a mixin of CxrEdgeApp).

Both are driven by Kivy ``Clock`` intervals on the UI thread; the folder logic itself is
:class:`edge_app.watch.FolderWatcher` (no Kivy). Kiosk *looks* -- fullscreen, no cursor, larger
targets -- are set by ``edge_app.main.configure_kivy`` and ``CxrEdgeApp.build``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from kivy.clock import Clock

from edge_app.watch import FolderWatcher

logger = logging.getLogger(__name__)


class KioskMixin:
    """Watch folder polling and the reset to the start screen after inactivity.

    Uses the app's ``options``, ``busy``, ``screens``, ``open_path`` and ``go_home``.
    """

    options: Any
    watcher: FolderWatcher | None
    watch_text: str
    busy: bool
    screens: Any
    _last_activity: float

    def start_kiosk_services(self) -> list[Any]:
        """Schedule the watch-folder poll and the inactivity check the options ask for."""
        events = []
        if self.options.watch is not None:
            self.watcher = FolderWatcher(Path(self.options.watch), settle_s=self.options.watch_settle_s)
            self._update_watch_text()
            events.append(Clock.schedule_interval(self._poll_watch, self.options.watch_interval_s))
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
        if self.watcher is None:
            return
        ready = self.watcher.poll()
        self._update_watch_text()
        for path in ready:
            logger.info("watch folder: new image %s", path)
            self.open_path(path)
