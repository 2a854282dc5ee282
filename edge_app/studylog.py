"""The study log: one SQLite file (``<data dir>/studies.sqlite``) recording every file the kiosk saw.

It is the single source of truth for what happened to each study: the file's path, content hash
(sha256), size and arrival time, its state (``pending``, ``scored``, ``refused``, ``failed``), the
bundle that judged it (manifest sha256 and revision), the input gate's decision, the top findings
and the paths of its reports, and for a phone photo of a film (the app's photo flow, or a kiosk
study scored as a photo) the ``input`` record: the corners it was judged with, the photo's quality
figures and how the corners were confirmed. Standard-library ``sqlite3`` only, in WAL mode with
``synchronous=FULL``: a committed row survives a power cut, and another process (``cxr-app
--kiosk-status``, ``sqlite3 .backup``) can read the log while the app writes it.

A study is one *content* at one *path*: ``UNIQUE(path, sha256)``. Recording the same file twice
is a no-op (the insert is ignored), so a restart that scans the folder again never duplicates a
study; a file replaced by new content (a new hash) is a new study; the same content under a new
name is a new row that is *linked* to the first one (``linked_to``) and takes its result instead
of being scored again.

The schema is versioned with ``PRAGMA user_version``; :data:`MIGRATIONS` brings an older file up
to :data:`SCHEMA_VERSION` in one transaction each (tested from a hand-made version 1 file).
No Kivy here.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cxr_core.errors import CxrEdgeError

logger = logging.getLogger(__name__)

LOG_NAME = "studies.sqlite"
PENDING, SCORED, REFUSED, FAILED = "pending", "scored", "refused", "failed"
STATES = (PENDING, SCORED, REFUSED, FAILED)
FINAL_STATES = (SCORED, REFUSED, FAILED)
#: A study whose processing was started this many times without an outcome (the app died while
#: reading it, every time) is marked failed instead of being tried forever.
MAX_ATTEMPTS = 3


class StudyLogError(CxrEdgeError):
    """The study log cannot be opened or is newer than this app understands."""


def utc_now() -> str:
    """UTC time stamp with microseconds (sortable text)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


_V1 = """
CREATE TABLE studies (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL,
    name TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    arrived_at TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'scored', 'refused', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    processed_at TEXT,
    bundle_sha256 TEXT,
    bundle_revision TEXT,
    gate TEXT,
    summary TEXT,
    top_finding TEXT,
    positives TEXT,
    error TEXT,
    report_png TEXT,
    report_json TEXT,
    UNIQUE (path, sha256)
);
CREATE INDEX studies_state ON studies (state, id);
"""

_V2 = """
ALTER TABLE studies ADD COLUMN linked_to INTEGER REFERENCES studies (id);
ALTER TABLE studies ADD COLUMN derived_deleted_at TEXT;
CREATE INDEX studies_sha ON studies (sha256);
CREATE INDEX studies_signature ON studies (path, size, mtime_ns);
"""

# The input a study was judged from, as JSON: NULL for an image file; for a photo of a film its
# corners, quality figures and the corners' confirmation (edge_app.photo_flow).
_V3 = """
ALTER TABLE studies ADD COLUMN input TEXT;
"""

#: ``MIGRATIONS[n]`` takes a version-``n`` log to version ``n + 1``.
MIGRATIONS: dict[int, str] = {0: _V1, 1: _V2, 2: _V3}
SCHEMA_VERSION = max(MIGRATIONS) + 1

COLUMNS = (
    "id",
    "path",
    "name",
    "sha256",
    "size",
    "mtime_ns",
    "arrived_at",
    "state",
    "attempts",
    "processed_at",
    "bundle_sha256",
    "bundle_revision",
    "gate",
    "summary",
    "top_finding",
    "positives",
    "error",
    "report_png",
    "report_json",
    "linked_to",
    "derived_deleted_at",
    "input",
)


@dataclass(frozen=True)
class Study:
    """One row of the log."""

    id: int
    path: str
    name: str
    sha256: str
    size: int
    mtime_ns: int
    arrived_at: str
    state: str
    attempts: int
    processed_at: str | None
    bundle_sha256: str | None
    bundle_revision: str | None
    gate: str | None
    summary: str | None
    top_finding: str | None
    positives: str | None
    error: str | None
    report_png: str | None
    report_json: str | None
    linked_to: int | None
    derived_deleted_at: str | None
    input: str | None  # JSON: a photo's corners, quality and confirmation; None for an image file

    @property
    def photo(self) -> dict[str, Any] | None:
        """The photo input record (kind "photo", corners, quality...), None for an image file."""
        record = json.loads(self.input) if self.input else None
        return record if isinstance(record, dict) and record.get("kind") == "photo" else None

    @property
    def findings(self) -> list[dict[str, Any]]:
        """The stored top findings, best first: label, score, model_output, above_operating_point,
        threshold_note."""
        return list(json.loads(self.summary)) if self.summary else []

    def describe(self) -> str:
        """One line for a list or the status: name, state and the top finding or the reason."""
        if self.state == SCORED:
            detail = f"top: {self.top_finding}" if self.top_finding else ""
            if self.positives:
                detail += f"; above threshold: {self.positives.replace(',', ', ')}"
        elif self.state == PENDING:
            detail = "waiting"
        else:
            detail = self.error or self.gate or ""
        link = f" (same image as study {self.linked_to})" if self.linked_to else ""
        return f"{self.name}: {self.state}{link}" + (f" - {detail}" if detail else "")


@dataclass(frozen=True)
class Health:
    """What the status line and ``cxr-app --kiosk-status`` print."""

    queued: int
    total: int
    counts: dict[str, int]
    last: Study | None
    failing: Study | None

    def lines(self) -> list[str]:
        counts = ", ".join(f"{self.counts.get(s, 0)} {s}" for s in STATES)
        out = [f"Queue: {self.queued} waiting. Studies: {self.total} ({counts})."]
        if self.last is not None:
            out.append(f"Last processed: {self.last.describe()} at {self.last.processed_at}")
        else:
            out.append("Last processed: none yet")
        if self.failing is not None:
            out.append(f"Failing file: {self.failing.path} - {self.failing.error or 'failed'}")
        return out

    def short(self) -> str:
        """One line for the app's status strip: queue, last study, failing file."""
        parts = [f"Queue: {self.queued} waiting"]
        if self.last is not None:
            parts.append(f"Last: {self.last.name} ({self.last.state})")
        if self.failing is not None:
            parts.append(f"Failing file: {self.failing.name} ({self.failing.error or 'failed'})")
        return "  |  ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "queued": self.queued,
            "total": self.total,
            "counts": self.counts,
            "last": None if self.last is None else self.last.__dict__,
            "failing": None if self.failing is None else self.failing.__dict__,
        }


def _outcome_values(
    state: str,
    bundle_sha256: str | None,
    bundle_revision: str | None,
    gate: str | None,
    findings: Sequence[dict[str, Any]] | None,
    error: str | None,
    report_png: str | None,
    report_json: str | None,
    linked_to: int | None,
    input_record: dict[str, Any] | None,
) -> tuple[Any, ...]:
    """The values of :meth:`StudyLog._FINISH` (in its column order) for one outcome."""
    if state not in FINAL_STATES:
        raise StudyLogError(f"study state {state!r} is not an outcome; expected one of {FINAL_STATES}")
    findings = list(findings or [])
    top = findings[0]["label"] if findings else None
    positives = ",".join(f["label"] for f in findings if f.get("above_operating_point")) or None
    return (
        state,
        utc_now(),
        bundle_sha256,
        bundle_revision,
        gate,
        json.dumps(findings) if findings else None,
        top,
        positives,
        error,
        report_png,
        report_json,
        linked_to,
        None if input_record is None else json.dumps(input_record),
    )


def _row(row: sqlite3.Row | None) -> Study | None:
    return None if row is None else Study(**{name: row[name] for name in COLUMNS})


class StudyLog:
    """The SQLite study log of one data folder (one connection; use it from one thread)."""

    def __init__(self, path: str | Path, timeout_s: float = 30.0, readonly: bool = False) -> None:
        self.path = Path(path)
        if readonly:
            if not self.path.is_file():
                raise StudyLogError(f"no study log at {self.path}; expected the file the kiosk writes")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # A reader (``--kiosk-status``) opens it the same way, only never writes: WAL lets it read
        # while the app writes (a ``mode=ro`` URI could not create the shared-memory index).
        self.conn = sqlite3.connect(str(self.path), timeout=timeout_s, isolation_level=None)
        self.conn.row_factory = sqlite3.Row
        self.conn.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
        if not readonly:
            mode = self.conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                logger.warning("study log %s: journal mode %s, not WAL", self.path, mode)
            self.conn.execute("PRAGMA synchronous = FULL")
            self.conn.execute("PRAGMA foreign_keys = ON")
            self.migrate()
        else:
            version = self.version
            if version != SCHEMA_VERSION:
                raise StudyLogError(
                    f"study log {self.path} has schema version {version}; expected {SCHEMA_VERSION} "
                    "(start the app once to upgrade it)"
                )

    # ------------------------------------------------------------------ schema

    @property
    def version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> int:
        """Bring the file to :data:`SCHEMA_VERSION`; returns the version it had."""
        found = self.version
        if found > SCHEMA_VERSION:
            raise StudyLogError(
                f"study log {self.path} has schema version {found}; this app reads up to "
                f"{SCHEMA_VERSION} (a newer app wrote it)"
            )
        for version in range(found, SCHEMA_VERSION):
            with self.transaction():
                for statement in MIGRATIONS[version].split(";"):
                    if statement.strip():
                        self.conn.execute(statement)
                self.conn.execute(f"PRAGMA user_version = {version + 1}")
            logger.info("study log %s: schema %d -> %d", self.path, version, version + 1)
        return found

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    def close(self) -> None:
        self.conn.close()

    def integrity_check(self) -> str:
        return str(self.conn.execute("PRAGMA integrity_check").fetchone()[0])

    # ------------------------------------------------------------------ writes

    def seen(self, path: str | Path, size: int, mtime_ns: int) -> bool:
        """Whether a file with this path, size and modification time is already in the log."""
        row = self.conn.execute(
            "SELECT 1 FROM studies WHERE path = ? AND size = ? AND mtime_ns = ? LIMIT 1",
            (str(path), size, mtime_ns),
        ).fetchone()
        return row is not None

    def record(self, path: str | Path, sha256: str, size: int, mtime_ns: int) -> int | None:
        """Add a pending study; ``None`` when this content at this path is already recorded."""
        path = Path(path)
        with self.transaction() as conn:  # BEGIN IMMEDIATE: the check and the insert are one step
            known = conn.execute(
                "SELECT id FROM studies WHERE path = ? AND sha256 = ?", (str(path), sha256)
            ).fetchone()
            if known is not None:  # the same content at the same path: only refresh the signature
                conn.execute(
                    "UPDATE studies SET size = ?, mtime_ns = ? WHERE id = ?", (size, mtime_ns, known[0])
                )
                return None
            cursor = conn.execute(
                "INSERT INTO studies (path, name, sha256, size, mtime_ns, arrived_at) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (str(path), path.name, sha256, size, mtime_ns, utc_now()),
            )
            return int(cursor.lastrowid or 0)

    def next_pending(self) -> Study | None:
        """The study to take next: of those still waiting, the ones interrupted fewest times first, each
        group in arrival order. A file whose processing was cut short (a kill, a power cut, a file that
        brings the app down) is tried again after the files that have not been tried yet, so it never
        holds up the queue, and repeated restarts spread over the queue instead of spending one study's
        :data:`MAX_ATTEMPTS` (under load, restarts killed within a second marked 2 of 200 studies
        failed when the same oldest study was retried first each time)."""
        return _row(
            self.conn.execute(
                "SELECT * FROM studies WHERE state = 'pending' ORDER BY attempts, id LIMIT 1"
            ).fetchone()
        )

    def start_attempt(self, study_id: int) -> int:
        """Count one more try at ``study_id`` (committed before the file is read); returns the count."""
        with self.transaction() as conn:
            conn.execute("UPDATE studies SET attempts = attempts + 1 WHERE id = ?", (study_id,))
            return int(conn.execute("SELECT attempts FROM studies WHERE id = ?", (study_id,)).fetchone()[0])

    def finish(
        self,
        study_id: int,
        state: str,
        *,
        bundle_sha256: str | None = None,
        bundle_revision: str | None = None,
        gate: str | None = None,
        findings: Sequence[dict[str, Any]] | None = None,
        error: str | None = None,
        report_png: str | None = None,
        report_json: str | None = None,
        linked_to: int | None = None,
        input: dict[str, Any] | None = None,  # noqa: A002  (the column's name)
    ) -> None:
        """Record the outcome of a pending study (a study already finished is left as it is)."""
        values = _outcome_values(
            state,
            bundle_sha256,
            bundle_revision,
            gate,
            findings,
            error,
            report_png,
            report_json,
            linked_to,
            input,
        )
        self._finish_row(study_id, values)

    _FINISH = (
        "UPDATE studies SET state = ?, processed_at = ?, bundle_sha256 = ?, bundle_revision = ?, "
        "gate = ?, summary = ?, top_finding = ?, positives = ?, error = ?, report_png = ?, "
        "report_json = ?, linked_to = ?, input = ? WHERE id = ?"
    )

    def _finish_row(
        self, study_id: int, values: tuple[Any, ...], conn: sqlite3.Connection | None = None
    ) -> None:
        if conn is None:
            with self.transaction() as own:
                own.execute(self._FINISH + " AND state = 'pending'", (*values, study_id))
        else:
            conn.execute(self._FINISH, (*values, study_id))

    def record_judged(
        self,
        path: str | Path,
        sha256: str,
        size: int,
        mtime_ns: int,
        state: str,
        *,
        gate: str | None = None,
        findings: Sequence[dict[str, Any]] | None = None,
        error: str | None = None,
        input: dict[str, Any] | None = None,  # noqa: A002  (the column's name)
        bundle_sha256: str | None = None,
        bundle_revision: str | None = None,
    ) -> int:
        """A study judged at once, outside the watch folder (a photo confirmed in the app).

        Recorded and finished in one transaction (it is never ``pending``, so the kiosk's queue never
        takes it). The same content at the same path judged again (other corners, scored anyway)
        replaces the earlier judgement in its row: the log keeps one study per content and path.
        Returns the study's id.
        """
        values = _outcome_values(
            state, bundle_sha256, bundle_revision, gate, findings, error, None, None, None, input
        )
        with self.transaction() as conn:
            known = conn.execute(
                "SELECT id FROM studies WHERE path = ? AND sha256 = ?", (str(path), sha256)
            ).fetchone()
            if known is not None:
                study_id = int(known[0])
            else:
                cursor = conn.execute(
                    "INSERT INTO studies (path, name, sha256, size, mtime_ns, arrived_at, state, attempts) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, 1)",
                    (str(path), Path(path).name, sha256, size, mtime_ns, utc_now(), state),
                )
                study_id = int(cursor.lastrowid or 0)
            self._finish_row(study_id, values, conn)
        return study_id

    def record_override(
        self,
        study_id: int,
        *,
        gate: str,
        findings: Sequence[dict[str, Any]],
        report_png: str | None = None,
        report_json: str | None = None,
    ) -> bool:
        """A refused study the user chose to score anyway: now scored, its ``gate`` column saying so
        (with the refusal's reasons). Only a refused study changes; returns whether it did."""
        findings = list(findings)
        top = findings[0]["label"] if findings else None
        positives = ",".join(f["label"] for f in findings if f.get("above_operating_point")) or None
        with self.transaction() as conn:
            cursor = conn.execute(
                "UPDATE studies SET state = 'scored', processed_at = ?, gate = ?, summary = ?, "
                "top_finding = ?, positives = ?, error = NULL, report_png = ?, report_json = ? "
                "WHERE id = ? AND state = 'refused'",
                (
                    utc_now(),
                    gate,
                    json.dumps(findings) if findings else None,
                    top,
                    positives,
                    report_png,
                    report_json,
                    study_id,
                ),
            )
            return cursor.rowcount > 0

    def original_of(self, study: Study, bundle_sha256: str | None) -> Study | None:
        """An earlier, finished study of the same content judged by the same bundle (to link to)."""
        return _row(
            self.conn.execute(
                "SELECT * FROM studies WHERE sha256 = ? AND id < ? AND linked_to IS NULL "
                "AND state IN ('scored', 'refused', 'failed') AND bundle_sha256 IS ? "
                "AND (state != 'failed' OR gate = 'unreadable') ORDER BY id LIMIT 1",
                (study.sha256, study.id, bundle_sha256),
            ).fetchone()
        )

    def link(self, study: Study, original: Study) -> None:
        """Give ``study`` the outcome of ``original`` (same content under another name)."""
        self.finish(
            study.id,
            original.state,
            bundle_sha256=original.bundle_sha256,
            bundle_revision=original.bundle_revision,
            gate=original.gate,
            findings=original.findings,
            error=original.error,
            report_png=original.report_png,
            report_json=original.report_json,
            linked_to=original.id,
        )

    # ------------------------------------------------------------------ reads

    def get(self, study_id: int) -> Study | None:
        return _row(self.conn.execute("SELECT * FROM studies WHERE id = ?", (study_id,)).fetchone())

    def studies(
        self,
        state: str | None = None,
        finding: str | None = None,
        limit: int | None = None,
        newest_first: bool = True,
    ) -> list[Study]:
        """Studies filtered by state and by a finding (top finding or above its threshold)."""
        where, args = [], []
        if state:
            where.append("state = ?")
            args.append(state)
        if finding:
            where.append("(top_finding = ? OR ',' || positives || ',' LIKE ?)")
            args += [finding, f"%,{finding},%"]
        sql = "SELECT * FROM studies" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY id " + ("DESC" if newest_first else "ASC")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [s for s in (_row(r) for r in self.conn.execute(sql, args)) if s is not None]

    def findings_seen(self) -> list[str]:
        """Every finding that was the top finding or above threshold in some study (for the filter)."""
        labels: set[str] = set()
        for top, positives in self.conn.execute("SELECT top_finding, positives FROM studies"):
            if top:
                labels.add(top)
            labels.update(p for p in (positives or "").split(",") if p)
        return sorted(labels)

    def health(self) -> Health:
        counts = {s: 0 for s in STATES}
        for state, count in self.conn.execute("SELECT state, COUNT(*) FROM studies GROUP BY state"):
            counts[state] = int(count)
        last = _row(
            self.conn.execute(
                "SELECT * FROM studies WHERE state != 'pending' ORDER BY processed_at DESC, id DESC LIMIT 1"
            ).fetchone()
        )
        failing = _row(
            self.conn.execute(
                "SELECT * FROM studies WHERE state = 'failed' ORDER BY processed_at DESC, id DESC LIMIT 1"
            ).fetchone()
        )
        return Health(counts[PENDING], sum(counts.values()), counts, last, failing)

    def to_csv(self) -> bytes:
        """The whole log as CSV (one row per study, oldest first), UTF-8."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(COLUMNS)
        for row in self.conn.execute("SELECT * FROM studies ORDER BY id"):
            writer.writerow(["" if row[c] is None else row[c] for c in COLUMNS])
        return buffer.getvalue().encode("utf-8")

    # ------------------------------------------------------------------ retention

    def expired(
        self, keep_days: float | None, keep_count: int | None, now: datetime | None = None
    ) -> list[Study]:
        """Finished studies whose derived data (reports) the retention setting lets go."""
        now = now or datetime.now(UTC)
        candidates: dict[int, Study] = {}
        if keep_days is not None:
            cutoff = now.timestamp() - keep_days * 86400.0
            for study in self.studies(newest_first=False):
                if study.state != PENDING and datetime.fromisoformat(study.arrived_at).timestamp() < cutoff:
                    candidates[study.id] = study
        if keep_count is not None:
            finished = [s for s in self.studies(newest_first=True) if s.state != PENDING]
            for study in finished[max(0, int(keep_count)) :]:
                candidates[study.id] = study
        return [s for _, s in sorted(candidates.items()) if s.derived_deleted_at is None]

    def forget_derived(self, study_ids: Sequence[int]) -> None:
        """Mark the reports of ``study_ids`` as deleted (the row itself, the record, stays)."""
        with self.transaction() as conn:
            conn.executemany(
                "UPDATE studies SET report_png = NULL, report_json = NULL, derived_deleted_at = ? "
                "WHERE id = ?",
                [(utc_now(), i) for i in study_ids],
            )


def open_log(data_dir: str | Path, readonly: bool = False) -> StudyLog:
    """The study log of the data folder ``data_dir``."""
    return StudyLog(Path(data_dir) / LOG_NAME, readonly=readonly)


def with_log(data_dir: str | Path, fn: Callable[[StudyLog], Any]) -> Any:
    """Open the log of ``data_dir`` read-only, call ``fn`` with it, close it."""
    log = open_log(data_dir, readonly=True)
    try:
        return fn(log)
    finally:
        log.close()
