"""The study log (edge_app.studylog): schema, migration from a hand-made version 1 file, queries."""

from __future__ import annotations

import csv
import io
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from edge_app.studylog import (
    FAILED,
    PENDING,
    REFUSED,
    SCHEMA_VERSION,
    SCORED,
    StudyLog,
    StudyLogError,
    open_log,
)

FINDINGS = [
    {
        "label": "Effusion",
        "score": 80.0,
        "model_output": 0.4,
        "above_operating_point": True,
        "threshold_note": None,
    },
    {
        "label": "Nodule",
        "score": 30.0,
        "model_output": 0.1,
        "above_operating_point": False,
        "threshold_note": None,
    },
]


def test_a_new_log_is_wal_full_sync_and_current(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    assert log.version == SCHEMA_VERSION == 3
    assert log.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert log.conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert log.integrity_check() == "ok"
    log.close()


def test_record_is_unique_per_path_and_content(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    first = log.record(tmp_path / "a.png", "aa" * 32, 10, 1)
    assert first == 1
    assert log.record(tmp_path / "a.png", "aa" * 32, 10, 2) is None  # same content, touched: no new study
    assert log.seen(tmp_path / "a.png", 10, 2)  # the signature was refreshed
    assert log.record(tmp_path / "a.png", "bb" * 32, 12, 3) == 2  # replaced by new content: a new study
    assert log.record(tmp_path / "b.png", "aa" * 32, 10, 1) == 3  # same content, new name: a new row
    assert [s.id for s in log.studies(state=PENDING, newest_first=False)] == [1, 2, 3]
    assert log.next_pending().id == 1


def test_finish_link_filters_health_and_csv(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    a = log.record(tmp_path / "a.png", "aa" * 32, 10, 1)
    b = log.record(tmp_path / "b.png", "bb" * 32, 10, 1)
    c = log.record(tmp_path / "c.png", "aa" * 32, 10, 1)
    log.finish(a, SCORED, bundle_sha256="f" * 64, bundle_revision="r1", gate="accepted", findings=FINDINGS,
               report_png="x.png", report_json="x.json")  # fmt: skip
    log.finish(b, FAILED, bundle_sha256="f" * 64, gate="unreadable", error="cannot read")
    log.finish(a, REFUSED)  # an outcome is recorded once: a second one is ignored
    assert log.get(a).state == SCORED and log.get(a).top_finding == "Effusion"
    original = log.original_of(log.get(c), "f" * 64)
    assert original is not None and original.id == a
    assert log.original_of(log.get(c), "0" * 64) is None  # another bundle: scored again
    log.link(log.get(c), original)
    linked = log.get(c)
    assert linked.state == SCORED and linked.linked_to == a and linked.report_png == "x.png"
    assert [s.id for s in log.studies(finding="Effusion")] == [c, a]
    assert log.studies(finding="Nodule") == []  # not the top finding and not above threshold
    assert [s.id for s in log.studies(state=FAILED)] == [b]
    assert log.findings_seen() == ["Effusion"]
    health = log.health()
    assert health.queued == 0 and health.counts[SCORED] == 2 and health.failing.id == b
    assert "Failing file" in "\n".join(health.lines())
    rows = list(csv.DictReader(io.StringIO(log.to_csv().decode("utf-8"))))
    assert [r["id"] for r in rows] == ["1", "2", "3"] and rows[2]["linked_to"] == "1"
    with pytest.raises(StudyLogError, match="not an outcome"):
        log.finish(a, PENDING)


def test_retention_selects_by_age_and_count(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    ids = [log.record(tmp_path / f"{i}.png", f"{i:064d}", 1, 1) for i in range(5)]
    for i in ids:
        log.finish(i, SCORED, findings=FINDINGS)
    old = (datetime.now(UTC) - timedelta(days=40)).isoformat()
    log.conn.execute("UPDATE studies SET arrived_at = ? WHERE id IN (1, 2)", (old,))
    assert [s.id for s in log.expired(30, None)] == [1, 2]
    assert [s.id for s in log.expired(None, 2)] == [1, 2, 3]
    log.forget_derived([1])
    assert [s.id for s in log.expired(30, None)] == [2]


def _v1_log(path: Path) -> None:
    """A log as version 1 of the app wrote it (no linked_to, no derived_deleted_at), by hand."""
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE studies (
            id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT NOT NULL, name TEXT NOT NULL,
            sha256 TEXT NOT NULL, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
            arrived_at TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'scored', 'refused', 'failed')),
            attempts INTEGER NOT NULL DEFAULT 0, processed_at TEXT, bundle_sha256 TEXT,
            bundle_revision TEXT, gate TEXT, summary TEXT, top_finding TEXT, positives TEXT,
            error TEXT, report_png TEXT, report_json TEXT, UNIQUE (path, sha256));
        CREATE INDEX studies_state ON studies (state, id);
        INSERT INTO studies (path, name, sha256, size, mtime_ns, arrived_at, state, top_finding)
            VALUES ('/usb/old.png', 'old.png', 'ab', 3, 4, '2025-01-01T00:00:00+00:00', 'scored', 'Mass');
        INSERT INTO studies (path, name, sha256, size, mtime_ns, arrived_at)
            VALUES ('/usb/waiting.png', 'waiting.png', 'cd', 3, 4, '2025-01-01T00:00:01+00:00');
        PRAGMA user_version = 1;
        """
    )
    conn.commit()
    conn.close()


def test_migration_from_version_1_keeps_every_study(tmp_path: Path) -> None:
    path = tmp_path / "studies.sqlite"
    _v1_log(path)
    with pytest.raises(StudyLogError, match="schema version 1"):
        StudyLog(path, readonly=True)  # a reader never migrates
    log = StudyLog(path)
    assert log.version == SCHEMA_VERSION
    old, waiting = log.studies(newest_first=False)
    assert (old.name, old.state, old.top_finding, old.linked_to, old.derived_deleted_at, old.input) == (
        "old.png", SCORED, "Mass", None, None, None)  # fmt: skip
    assert old.photo is None
    assert log.next_pending().id == waiting.id
    assert log.integrity_check() == "ok"
    log.close()
    assert StudyLog(path, readonly=True).health().total == 2


def test_a_photo_judged_in_the_app_is_one_finished_study_with_its_input(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    pending = log.record(tmp_path / "usb.png", "cc" * 32, 5, 1)
    photo = {"kind": "photo", "corners": [[1, 2], [9, 2], [9, 8], [1, 8]], "quality": {"glare": 0.0}}
    first = log.record_judged(
        tmp_path / "film.jpg", "aa" * 32, 10, 1, REFUSED, gate="refused", error="glare", input=photo
    )
    study = log.get(first)
    assert (study.state, study.error, study.attempts, study.photo) == (REFUSED, "glare", 1, photo)
    assert log.next_pending().id == pending  # the kiosk queue never sees a judged photo
    again = {**photo, "corners": [[2, 2], [9, 2], [9, 8], [1, 8]]}
    second = log.record_judged(
        tmp_path / "film.jpg", "aa" * 32, 10, 1, SCORED, gate="accepted", findings=FINDINGS, input=again
    )
    assert second == first  # judged again with other corners: the same study, the latest judgement
    study = log.get(first)
    assert (study.state, study.error, study.top_finding, study.photo) == (SCORED, None, "Effusion", again)
    assert len(log.studies()) == 2
    rows = list(csv.DictReader(io.StringIO(log.to_csv().decode("utf-8"))))
    assert '"corners"' in rows[1]["input"] and rows[0]["input"] == ""
    with pytest.raises(StudyLogError, match="not an outcome"):
        log.record_judged(tmp_path / "x.jpg", "dd" * 32, 1, 1, PENDING)
    log.close()


def test_a_newer_log_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "studies.sqlite"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StudyLogError, match="newer app"):
        StudyLog(path)
    with pytest.raises(StudyLogError, match="no study log"):
        StudyLog(tmp_path / "missing.sqlite", readonly=True)
