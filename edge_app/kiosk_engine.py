"""The kiosk's study queue: watch folder -> study log -> one study at a time -> log (no Kivy).

:class:`StudyQueue` ties the :class:`~edge_app.watch.FolderWatcher` to the
:class:`~edge_app.studylog.StudyLog`. Every file that becomes ready is hashed and recorded as a
*pending* study at once -- whatever the app is busy with (loading a bundle, writing a report,
the self-test) -- and studies are handed out oldest first only when the app is free. The log,
not memory, is the queue, so a restart (a power cut, a kill) resumes where it stopped:

* on start every pending study is processed, and every file in the watch folder the log has not
  seen (including those copied while the app was down) is recorded and processed;
* a study whose processing was started :data:`~edge_app.studylog.MAX_ATTEMPTS` times without an
  outcome (a file that brings the app down) is marked failed, not tried forever;
* a file replaced by new content is a new study; the same content under a new name is linked
  to the first study and takes its outcome (not scored again);
* each study's reports have a name derived from its id, so a study scored again after a kill
  overwrites its own (atomic) report instead of leaving a second one.

The app drives this from Kivy's clock (``edge_app.kiosk``); :func:`run_headless` drives it with
the same worker (:class:`~edge_app.worker.PredictionService`) and no window, for the kill -9 test
and for a kiosk without a screen (``python -m edge_app.kiosk_engine --help``).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxr_core.cli_common import (
    EXIT_OK,
    EXIT_USAGE,
    add_progress_flag,
    add_version,
    error_exit,
    exit_codes_epilog,
)
from cxr_core.errors import CxrEdgeError
from edge_app.gate_text import OVERRIDE_LOG
from edge_app.report import report_stem
from edge_app.storage import remove_stale_temp_files
from edge_app.studylog import FAILED, MAX_ATTEMPTS, REFUSED, SCORED, Study, StudyLog
from edge_app.watch import DEFAULT_SETTLE_S, FolderWatcher
from edge_app.worker import Failed, Outcome, Refused, Scored

logger = logging.getLogger(__name__)

#: Findings kept in the log's summary of a scored study (best first).
SUMMARY_FINDINGS = 5
REPORTS_DIRNAME = "reports"
#: Seconds one look at the watch folder may spend hashing new files (the rest waits for the next).
SCAN_BUDGET_S = 0.25


class KioskError(CxrEdgeError):
    """The headless kiosk cannot start (its bundle cannot be loaded)."""


@dataclass(frozen=True)
class BundleIdentity:
    """What judged a study: the sha256 of the bundle's manifest (which lists every file's sha256)."""

    sha256: str
    revision: str

    @classmethod
    def of(cls, bundle: str | Path, model: str = "", runtime: str = "") -> BundleIdentity:
        from cxr_core.bundle import read_manifest

        bundle = Path(bundle)
        digest = hashlib.sha256((bundle / "manifest.json").read_bytes()).hexdigest()
        manifest = read_manifest(bundle)
        name = " ".join(p for p in (manifest.name or bundle.name, manifest.version) if p)
        revision = " | ".join(p for p in (name, model, runtime) if p)
        return cls(digest, revision)


def file_sha256(path: Path) -> tuple[str, int, int]:
    """sha256, size and modification time (ns) of ``path``, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        stat = os.fstat(handle.fileno())
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest(), stat.st_size, stat.st_mtime_ns


def study_stem(study: Study) -> str:
    """Report file stem of a study: its id first, so a second try overwrites the first's files."""
    return f"{study.id:06d}-{report_stem(study.name, _arrival(study))}"


def _arrival(study: Study) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(study.arrived_at)


def photo_input(outcome: Outcome) -> dict[str, Any] | None:
    """The log's ``input`` record of a photo's outcome (corners, quality figures); None for a file."""
    if isinstance(outcome, Scored):
        photo = getattr(outcome.prediction, "photo", None)
        return None if photo is None else photo.to_dict()
    if isinstance(outcome, Refused) and outcome.photo:
        return {
            "kind": "photo",
            "corners": [[round(float(x), 2), round(float(y), 2)] for x, y in outcome.corners or ()],
            "quality": dict(outcome.measures),
            "fix": outcome.fix or None,
        }
    return None


def summarise(outcome: Outcome) -> dict[str, Any]:
    """The log fields of a worker outcome (state, gate decision, findings, error, reports, input)."""
    fields = _summarise(outcome)
    fields["input"] = photo_input(outcome)
    return fields


def _summarise(outcome: Outcome) -> dict[str, Any]:
    if isinstance(outcome, Scored):
        prediction = outcome.prediction
        findings = [
            {
                "label": f.label,
                "score": round(float(f.score), 1),
                "model_output": round(float(f.model_output), 4),
                "above_operating_point": bool(f.above_operating_point),
                "threshold_note": f.threshold_note,
            }
            for f in prediction.ranked()[:SUMMARY_FINDINGS]
        ]
        if prediction.gate_override:  # the user chose "Score anyway" for a refused image
            gate = f"{OVERRIDE_LOG}: {'; '.join(prediction.gate_override)}"
        else:
            gate = "accepted" + (
                f" with warnings: {'; '.join(prediction.warnings)}" if prediction.warnings else ""
            )
        report = outcome.report
        return {
            "state": SCORED,
            "gate": gate,
            "findings": findings,
            "report_png": None if report is None else str(report.png),
            "report_json": None if report is None else str(report.json),
        }
    if isinstance(outcome, Refused):
        return {"state": REFUSED, "gate": "refused", "error": "; ".join(outcome.reasons)}
    if isinstance(outcome, Failed):
        gate = "unreadable" if outcome.kind == "decode" else None
        return {"state": FAILED, "gate": gate, "error": f"{outcome.title}: {outcome.message}"}
    return {"state": FAILED, "error": f"unexpected outcome {type(outcome).__name__}"}


class StudyQueue:
    """The watch folder's studies, queued in the log and handed out one at a time, oldest first (a study
    interrupted before waits behind those not yet tried: :meth:`StudyLog.next_pending`)."""

    def __init__(
        self,
        log: StudyLog,
        data_dir: Path,
        watch: Path | None,
        settle_s: float = DEFAULT_SETTLE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.log = log
        self._clock = clock
        self._backlog: list[Path] = []
        self.data_dir = Path(data_dir)
        self.reports_dir = self.data_dir / REPORTS_DIRNAME
        self.watcher = (
            None
            if watch is None
            else FolderWatcher(Path(watch), settle_s=settle_s, include_existing=True, clock=clock)
        )

    def startup(self) -> int:
        """Remove temp files of interrupted writes; return how many studies are still pending."""
        removed = remove_stale_temp_files(self.data_dir) + remove_stale_temp_files(self.reports_dir)
        if removed:
            logger.info("removed %d stale temp file(s) of interrupted writes", removed)
        return self.log.health().queued

    @property
    def settling(self) -> int:
        """Files seen in the watch folder that are not stable yet or not recorded yet."""
        return 0 if self.watcher is None else len(self.watcher.pending) + len(self._backlog)

    def scan(self, budget_s: float = SCAN_BUDGET_S) -> list[int]:
        """Look at the watch folder once; record the files that became ready. Returns new study ids.

        Hashing stops after ``budget_s`` (the app calls this on its UI thread: a stick with
        hundreds of large DICOMs must not freeze the screen); the rest is recorded at the next call,
        in the same order.
        """
        if self.watcher is None:
            return []
        self._backlog.extend(self.watcher.poll())
        added = []
        start = self._clock()
        while self._backlog:  # at least one per look, so the backlog always moves
            study_id = self.record(self._backlog.pop(0))
            if study_id is not None:
                added.append(study_id)
            if self._clock() - start >= budget_s:
                break
        return added

    def record(self, path: Path) -> int | None:
        """Record ``path`` as a pending study unless the log has it already (same path and content)."""
        try:
            stat = path.stat()
            if self.log.seen(path, stat.st_size, stat.st_mtime_ns):
                return None
            sha, size, mtime_ns = file_sha256(path)
        except OSError as exc:  # removed meanwhile, a pulled stick: look again at the next poll
            logger.warning("watch folder: cannot read %s (%s); will look again", path, exc)
            if self.watcher is not None:
                self.watcher.forget(path)
            return None
        study_id = self.log.record(path, sha, size, mtime_ns)
        if study_id is not None:
            logger.info("study %d queued: %s (%d bytes, sha256 %s)", study_id, path, size, sha[:12])
        return study_id

    def claim_next(self, bundle: BundleIdentity | None) -> Study | None:
        """The next study to score (its attempt counted), after settling those that need no scoring."""
        while True:
            study = self.log.next_pending()
            if study is None:
                return None
            if study.attempts >= MAX_ATTEMPTS:
                self.log.finish(
                    study.id,
                    FAILED,
                    error=f"processing was interrupted {study.attempts} times (the app stopped while "
                    "analysing this file: a power cut, a kill, or a file that crashes the app); not tried "
                    "again. To try once more, copy the file into the watch folder under a new name",
                )
                continue
            original = self.log.original_of(study, None if bundle is None else bundle.sha256)
            if original is not None:
                self.log.link(study, original)
                logger.info(
                    "study %d is the same image as study %d: linked, not scored", study.id, original.id
                )
                continue
            problem = self.check_source(study)
            if problem is not None:
                self.log.finish(study.id, FAILED, error=problem)
                continue
            self.log.start_attempt(study.id)
            return study

    @staticmethod
    def check_source(study: Study) -> str | None:
        path = Path(study.path)
        try:
            sha, _size, _mtime = file_sha256(path)
        except FileNotFoundError:
            return "the file was removed before it could be analysed"
        except OSError as exc:
            return f"the file cannot be read: {exc}"
        if sha != study.sha256:
            return (
                "the file was replaced by new content before it was analysed (the new content is a new study)"
            )
        return None

    def complete(self, study: Study, outcome: Outcome, bundle: BundleIdentity | None) -> Study:
        """Record ``outcome`` of ``study``; returns the updated row."""
        fields = summarise(outcome)
        state = fields.pop("state")
        self.log.finish(
            study.id,
            state,
            bundle_sha256=None if bundle is None else bundle.sha256,
            bundle_revision=None if bundle is None else bundle.revision,
            **fields,
        )
        updated = self.log.get(study.id)
        logger.info("study %d: %s", study.id, updated.describe() if updated else state)
        return updated or study

    def record_override(self, study: Study, outcome: Scored) -> Study:
        """A refused ``study`` scored anyway at the user's request: log it as such; returns the row."""
        fields = summarise(outcome)
        self.log.record_override(
            study.id,
            gate=fields["gate"],
            findings=fields["findings"],
            report_png=fields["report_png"],
            report_json=fields["report_json"],
        )
        updated = self.log.get(study.id)
        logger.warning("study %d: %s", study.id, updated.describe() if updated else "scored anyway")
        return updated or study

    def apply_retention(self, keep_days: float | None, keep_count: int | None) -> int:
        """Delete the reports of studies beyond the retention setting; returns how many studies.

        Only files inside the reports folder are deleted: never the user's source images, and
        never the log rows (the record of what happened stays).
        """
        if keep_days is None and keep_count is None:
            return 0
        expired = self.log.expired(keep_days, keep_count)
        expired_ids = {s.id for s in expired}
        root = self.reports_dir.resolve()
        for study in expired:
            for name in (study.report_png, study.report_json):
                if not name:
                    continue
                target = Path(name).resolve()
                if root in target.parents and not self._kept_reference(name, expired_ids):
                    target.unlink(missing_ok=True)
        self.log.forget_derived(sorted(expired_ids))
        if expired:
            logger.info("retention: deleted the reports of %d old studies", len(expired))
        return len(expired)

    def _kept_reference(self, name: str, expired_ids: set[int]) -> bool:
        """Whether a study that is kept still points at the report ``name`` (a linked study)."""
        rows = self.log.conn.execute(
            "SELECT id FROM studies WHERE (report_png = ? OR report_json = ?) AND derived_deleted_at IS NULL",
            (name, name),
        )
        return any(int(row[0]) not in expired_ids for row in rows)


# ----------------------------------------------------------------------------- headless driver


def run_headless(
    data_dir: Path,
    watch: Path,
    bundle: Path,
    settle_s: float = DEFAULT_SETTLE_S,
    interval_s: float = 0.2,
    exit_when_idle: bool = False,
    model: str | None = None,
    runtime: str | None = None,
    threads: int | None = None,
) -> int:
    """Process the watch folder without a window; returns the number of studies finished."""
    from edge_app.storage import AppSettings
    from edge_app.studylog import open_log
    from edge_app.worker import Loaded, PredictionService

    log = open_log(data_dir)
    queue = StudyQueue(log, Path(data_dir), Path(watch), settle_s=settle_s)
    pending = queue.startup()
    logger.info("kiosk (headless): %d studies pending from before", pending)
    done = threading.Event()
    box: list[Outcome] = []

    def deliver(outcome: Outcome) -> None:
        box.append(outcome)
        done.set()

    def wait() -> Outcome:
        done.wait()
        done.clear()
        return box.pop()

    service = PredictionService(post=lambda fn: fn())
    service.load(bundle, deliver, model=model, runtime=runtime, threads=threads)
    loaded = wait()
    if not isinstance(loaded, Loaded):
        log.close()
        message = getattr(loaded, "message", str(loaded))
        raise KioskError(f"the bundle {bundle} cannot be used: {message}")
    identity = BundleIdentity.of(bundle, loaded.model_name, loaded.runtime)
    settings = AppSettings.load(data_dir)
    queue.apply_retention(settings.retention_days, settings.retention_count)
    finished = 0
    title = identity.revision.split(" | ")[0]  # the report adds the model and runtime itself
    stop = threading.Event()
    restore_sigterm = _stop_on_sigterm(stop)
    try:
        while not stop.is_set():
            queue.scan()
            study = queue.claim_next(identity)
            if study is None:
                if exit_when_idle and queue.settling == 0:
                    return finished
                stop.wait(interval_s)
                continue
            service.process_study(Path(study.path), queue.reports_dir, study_stem(study), title, deliver)
            queue.complete(study, wait(), identity)
            finished += 1
        logger.warning("asked to stop: the study in hand was finished and logged")
        return finished
    finally:
        restore_sigterm()
        service.shutdown(timeout=2.0)
        log.close()


def _stop_on_sigterm(stop: threading.Event) -> Callable[[], None]:
    """SIGTERM (``systemctl stop``) sets ``stop``: the loop finishes and logs the study in hand, then
    returns, instead of the process dying under it (a study cut short counts as an interrupted
    attempt). Returns what puts the previous handler back; outside the main thread, where Python
    cannot take signals, nothing is installed."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    return lambda: signal.signal(signal.SIGTERM, previous)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m edge_app.kiosk_engine",
        description="Process a watch folder into the study log and reports, without a window.",
        epilog=exit_codes_epilog(
            {
                EXIT_OK: "stopped (--exit-when-idle: nothing left to do)",
                EXIT_USAGE: "usage error, unusable bundle",
            }
        ),
    )
    add_version(parser)
    parser.add_argument("--data-dir", type=Path, required=True, help="the app's data folder (log, reports)")
    parser.add_argument("--watch", type=Path, required=True, help="the folder to watch")
    parser.add_argument("--bundle", type=Path, required=True, help="model bundle folder")
    parser.add_argument(
        "--settle", type=float, default=DEFAULT_SETTLE_S, help="seconds a file must be stable"
    )
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between looks at the folder")
    parser.add_argument("--exit-when-idle", action="store_true", help="stop when nothing is left to do")
    parser.add_argument("--threads", type=int, default=None)
    add_progress_flag(parser, default=True, help="INFO log lines (each study)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    level = logging.INFO if args.progress else logging.WARNING
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        run_headless(
            args.data_dir,
            args.watch,
            args.bundle,
            settle_s=args.settle,
            interval_s=args.interval,
            exit_when_idle=args.exit_when_idle,
            threads=args.threads,
        )
    except CxrEdgeError as exc:
        return error_exit("kiosk_engine", exc)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
