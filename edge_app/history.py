"""The history screen's logic: the study log listed by day, filtered, reopened, exported (a mixin).

The list comes from :class:`edge_app.studylog.StudyLog` (``studies(state, finding)``); a study is
reopened from what was saved for it -- its report image (the radiograph, the heat map of its top
finding and the findings table) and the log's summary, or the refusal's reasons -- so it can be
looked at again after the source file is gone. The log exports to CSV
(``<data dir>/exports/studies-<UTC time>.csv``, written atomically); the retention setting
(``settings.json``: days or a number of studies) deletes old studies' reports, never the log rows
or the user's source images. The text helpers here have no Kivy.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from edge_app.storage import write_atomic
from edge_app.studylog import PENDING, SCORED, Study

logger = logging.getLogger(__name__)

EXPORTS_DIRNAME = "exports"
#: The retention choices of the history screen: label -> (days, count).
RETENTION_CHOICES: dict[str, tuple[float | None, int | None]] = {
    "Keep reports forever": (None, None),
    "Keep reports 7 days": (7.0, None),
    "Keep reports 30 days": (30.0, None),
    "Keep reports 90 days": (90.0, None),
    "Keep the last 100 reports": (None, 100),
    "Keep the last 1000 reports": (None, 1000),
}
ANY_FINDING = "Any finding"
#: Rows the history list shows at most (newest first); the CSV export has them all.
HISTORY_ROWS = 300
STATE_FILTERS = {
    "All": None,
    "Scored": "scored",
    "Refused": "refused",
    "Failed": "failed",
    "Waiting": PENDING,
}


def retention_label(days: float | None, count: int | None) -> str:
    """The choice shown for the stored setting (a hand-edited value is shown as it is)."""
    for label, choice in RETENTION_CHOICES.items():
        if choice == (days, count):
            return label
    if days is not None:
        return f"Keep reports {days:g} days"
    return f"Keep the last {count} reports"


def day_heading(arrived_at: str, today: date | None = None) -> str:
    """``Today``, ``Yesterday`` or the date of a study's arrival (local time)."""
    day = datetime.fromisoformat(arrived_at).astimezone().date()
    today = today or datetime.now(UTC).astimezone().date()
    if day == today:
        return "Today"
    if (today - day).days == 1:
        return "Yesterday"
    return day.isoformat()


def row_text(study: Study) -> str:
    """One line of the history list: arrival time (local), then the study's description."""
    clock = datetime.fromisoformat(study.arrived_at).astimezone().strftime("%H:%M:%S")
    return f"{clock}  {study.describe()}"


def detail_text(study: Study) -> str:
    """What the study screen says next to the report image."""
    lines = [f"File: {study.path}", f"Arrived: {study.arrived_at}", f"State: {study.state}"]
    if study.linked_to:
        lines.append(f"Same image as study {study.linked_to} (not scored again)")
    if study.bundle_revision:
        lines.append(f"Model: {study.bundle_revision} (manifest sha256 {str(study.bundle_sha256)[:12]})")
    photo = study.photo
    if photo is not None:
        lines += photo_lines(photo)
    if study.gate:
        lines.append(f"Input gate: {study.gate}")
    for finding in study.findings:
        mark = " *" if finding.get("above_operating_point") else ""
        mark += " !" if finding.get("threshold_note") else ""
        lines.append(f"  {finding['label'].replace('_', ' ')}: score {float(finding['score']):.0f}{mark}")
    if study.error:
        lines.append(f"Reason: {study.error}")
    if study.derived_deleted_at:
        lines.append(f"Report deleted by the retention setting at {study.derived_deleted_at}")
    elif study.report_png:
        lines.append(f"Report: {study.report_png}")
    return "\n".join(lines)


def photo_lines(photo: dict[str, Any]) -> list[str]:
    """What the study screen says of a photo of a film: corners, how they were confirmed, quality."""
    from edge_app.photo import quality_line

    lines = ["Input: a phone photo of a film, straightened to the corners below"]
    corners = photo.get("corners") or []
    if corners:
        points = ", ".join(f"({float(x):.0f}, {float(y):.0f})" for x, y in corners)
        lines.append(f"Corners (photo pixels; top-left, top-right, bottom-right, bottom-left): {points}")
    confirmation = photo.get("confirmation") or {}
    if confirmation.get("placed_by_hand"):
        lines.append("Corners placed by hand (no film was found automatically)")
    elif confirmation:
        moved = float(confirmation.get("moved_by_clinician_px") or 0.0)
        lines.append(f"Corners detected, confirmed by the clinician (moved up to {moved:.0f} px)")
    quality = photo.get("quality") or {}
    if quality:
        lines.append(f"Photo quality: {quality_line(quality)}")
    if photo.get("fix"):
        lines.append(f"What to do: {photo['fix']}")
    return lines


def _unchanged(study: Study) -> bool:
    """Whether the study's source file is still there with the same content (sha256)."""
    from edge_app.kiosk_engine import file_sha256

    try:
        return file_sha256(Path(study.path))[0] == study.sha256
    except OSError:
        return False


class HistoryMixin:
    """The history and study screens (a mixin of ``CxrEdgeApp``); uses ``study_log``, ``screens``."""

    study_log: Any
    study_queue: Any
    settings: Any
    data_dir: Path
    history_state = "All"
    history_finding = ANY_FINDING

    def show_history(self) -> None:
        screen = self.screens.get_screen("history")
        screen.retention = retention_label(self.settings.retention_days, self.settings.retention_count)
        screen.message = "" if self.study_log is not None else "The study log cannot be opened."
        self.refresh_history()
        self.show("history")

    def filter_history(self, state: str | None = None, finding: str | None = None) -> None:
        if state is not None:
            self.history_state = state
        if finding is not None:
            self.history_finding = finding
        self.refresh_history()

    def refresh_history(self) -> None:
        screen = self.screens.get_screen("history")
        if self.study_log is None:
            screen.show_studies([], [ANY_FINDING])
            return
        finding = None if self.history_finding == ANY_FINDING else self.history_finding
        state = STATE_FILTERS.get(self.history_state)
        studies = self.study_log.studies(state=state, finding=finding, limit=HISTORY_ROWS + 1)
        findings = [ANY_FINDING] + self.study_log.findings_seen()
        screen.show_studies(studies[:HISTORY_ROWS], findings)
        if len(studies) > HISTORY_ROWS:
            screen.message = f"Showing the newest {HISTORY_ROWS} studies; Export log (CSV) has them all."

    def open_study(self, study_id: int) -> None:
        """Show a logged study again: its report image (heat map, findings) and the log's record."""
        study = self.study_log.get(study_id) if self.study_log is not None else None
        if study is None:
            return
        screen = self.screens.get_screen("study")
        report = study.report_png if study.report_png and Path(study.report_png).is_file() else ""
        screen.show_study(study.id, study.name, detail_text(study), report)
        screen.source = study.path if study.state == SCORED and _unchanged(study) else ""
        self.show("study")

    def reopen_source(self) -> None:
        """Open the study's image again in the result screen (every finding's heat map, zoom).

        Only offered while the source file still holds the study's content; it is scored again for
        display, as any opened image, and not logged as a new study. A photo of a film goes back to
        the confirm screen (its corners are confirmed again; scoring it updates its study).
        """
        screen = self.screens.get_screen("study")
        source = screen.source
        if not source:
            return
        study = self.study_log.get(screen.study_id) if self.study_log is not None else None
        if study is not None and study.photo is not None:
            self.open_photo(Path(source))  # a photo: its film is found and confirmed again
        else:
            self.open_path(Path(source))

    def export_history_csv(self) -> Path | None:
        """Write the whole log as CSV into ``<data dir>/exports``; the path is shown on the screen."""
        screen = self.screens.get_screen("history")
        if self.study_log is None:
            return None
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        path = Path(self.data_dir) / EXPORTS_DIRNAME / f"studies-{stamp}.csv"
        try:
            write_atomic(path, self.study_log.to_csv())
        except OSError as exc:
            screen.message = f"The CSV could not be written: {exc}"
            return None
        screen.message = f"Log exported: {path}"
        return path

    def set_retention(self, label: str) -> int:
        """Store the retention choice and apply it now; returns how many studies lost their reports."""
        days, count = RETENTION_CHOICES.get(
            label, (self.settings.retention_days, self.settings.retention_count)
        )
        self.settings.retention_days, self.settings.retention_count = days, count
        self._save_settings()
        removed = self.study_queue.apply_retention(days, count) if self.study_queue is not None else 0
        screen = self.screens.get_screen("history")
        screen.retention = retention_label(days, count)
        screen.message = (
            f"{label}: the reports of {removed} older studies deleted (the log keeps their record)."
        )
        self.refresh_history()
        return removed
