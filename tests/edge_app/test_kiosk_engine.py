"""The kiosk's study queue without a window: recovery, links, replaced files, kill -9 during a burst.

The real worker and Predictor (ONNX Runtime on the tiny exported bundle), real files.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_app.kiosk_engine import REPORTS_DIRNAME, run_headless
from edge_app.storage import AppSettings
from edge_app.studylog import FAILED, REFUSED, SCORED, open_log
from tests.edge_app import kill_harness
from tests.edge_app.conftest import radiograph
from tests.file_factory import write_png


def _run(data: Path, watch: Path, bundle: Path) -> int:
    return run_headless(data, watch, bundle, settle_s=0.0, interval_s=0.01, exit_when_idle=True, threads=1)


def test_headless_kiosk_logs_every_file_links_copies_and_resumes(
    session_bundle: Path, image_files: dict[str, Path], tmp_path: Path
) -> None:
    watch, data = tmp_path / "usb", tmp_path / "data"
    watch.mkdir()
    shutil.copy(image_files["png"], watch / "a.png")
    shutil.copy(image_files["png"], watch / "a_again.png")  # same content, another name
    shutil.copy(image_files["bad"], watch / "bad.png")
    shutil.copy(image_files["ct"], watch / "ct.dcm")
    assert _run(data, watch, session_bundle) == 3  # the copy is linked, not scored

    log = open_log(data)
    by_name = {s.name: s for s in log.studies()}
    a, again = by_name["a.png"], by_name["a_again.png"]
    assert a.state == SCORED and a.attempts == 1 and a.gate.startswith("accepted")
    assert a.bundle_sha256 and len(a.bundle_sha256) == 64 and "| onnxruntime" in a.bundle_revision
    assert len(a.findings) == 5 and a.top_finding == a.findings[0]["label"]
    assert Path(a.report_png).is_file() and Path(a.report_json).parent == data / REPORTS_DIRNAME
    assert json.loads(Path(a.report_json).read_text())["source"] == str(watch / "a.png")
    assert again.state == SCORED and again.linked_to == a.id and again.attempts == 0
    assert again.report_png == a.report_png
    assert by_name["bad.png"].state == FAILED and by_name["bad.png"].gate == "unreadable"
    assert by_name["ct.dcm"].state == REFUSED and by_name["ct.dcm"].error
    log.close()

    # While the kiosk is down: a new file, a file replaced by new content, a half-written temp file.
    shutil.copy(image_files["dicom"], watch / "new.dcm")
    write_png(watch / "a.png", radiograph(seed=7))
    (data / REPORTS_DIRNAME / ".000009-x.png.abc.tmp").write_bytes(b"interrupted")
    assert _run(data, watch, session_bundle) == 2
    log = open_log(data)
    rows = log.studies(newest_first=False)
    assert [s.name for s in rows[4:]] == ["new.dcm", "a.png"]  # arrival order
    assert len(rows) == 6 and all(s.state != "pending" for s in rows)
    assert sum(s.name == "a.png" for s in rows) == 2  # the new content is a new study ...
    assert log.get(a.id).attempts == 1  # ... and nothing already done was done again
    assert not list((data / REPORTS_DIRNAME).glob(".*.tmp"))
    assert len(list((data / REPORTS_DIRNAME).glob("*.png"))) == 3
    assert log.integrity_check() == "ok"

    # Retention (count 1): the older studies' reports go, the log rows and the sources stay.
    settings = AppSettings(retention_count=1)
    settings.save(data)
    log.close()
    assert _run(data, watch, session_bundle) == 0
    log = open_log(data)
    kept = [s for s in log.studies() if s.report_png]
    assert len(kept) == 1 and len(list((data / REPORTS_DIRNAME).glob("*.png"))) == 1
    assert len(log.studies()) == 6 and (watch / "a.png").is_file() and (watch / "a_again.png").is_file()


def test_kiosk_status_reads_the_log_without_a_window(
    session_bundle: Path, image_files, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    watch, data = tmp_path / "usb", tmp_path / "data"
    watch.mkdir()
    shutil.copy(image_files["bad"], watch / "broken.png")
    _run(data, watch, session_bundle)
    cmd = [sys.executable, "-m", "edge_app.main", "--kiosk-status", "--data-dir", str(data)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=kill_harness.REPO)
    assert done.returncode == 0, done.stderr
    assert (
        "Queue: 0 waiting" in done.stdout and "Failing file:" in done.stdout and "broken.png" in done.stdout
    )
    assert "kivy" not in done.stderr.lower()
    as_json = subprocess.run(
        cmd + ["--json"], capture_output=True, text=True, timeout=60, cwd=kill_harness.REPO
    )
    assert json.loads(as_json.stdout)["counts"]["failed"] == 1
    missing = subprocess.run(
        [sys.executable, "-m", "edge_app.main", "--kiosk-status", "--data-dir", str(tmp_path / "none")],
        capture_output=True, text=True, timeout=60, cwd=kill_harness.REPO,
    )  # fmt: skip
    assert missing.returncode != 0 and "no study log" in missing.stderr


def test_a_look_at_the_folder_hashes_within_its_budget(tmp_path: Path) -> None:
    from edge_app.kiosk_engine import StudyQueue

    watch = tmp_path / "usb"
    watch.mkdir()
    for i in range(3):
        (watch / f"{i}.png").write_bytes(bytes([i]) * 100)
    queue = StudyQueue(open_log(tmp_path / "data"), tmp_path / "data", watch, settle_s=0.0)
    assert len(queue.scan(budget_s=0.0)) == 1 and queue.settling == 2  # one per look, the rest waits
    assert len(queue.scan(budget_s=0.0)) == 1
    assert len(queue.scan(budget_s=10.0)) == 1 and queue.settling == 0
    assert [s.name for s in queue.log.studies(newest_first=False)] == ["0.png", "1.png", "2.png"]
    assert queue.scan() == []  # nothing new: nothing recorded twice


def test_an_interrupted_study_waits_behind_untried_ones_and_fails_after_three_tries(tmp_path: Path) -> None:
    from edge_app.kiosk_engine import StudyQueue
    from edge_app.studylog import MAX_ATTEMPTS

    watch = tmp_path / "usb"
    watch.mkdir()
    for name in ("crashes.png", "interrupted.png", "new.png", "newer.png"):
        (watch / name).write_bytes(name.encode() * 50)
    queue = StudyQueue(open_log(tmp_path / "data"), tmp_path / "data", watch, settle_s=0.0)
    crashes, interrupted, new, newer = queue.scan(budget_s=10.0)
    for _ in range(MAX_ATTEMPTS):  # the app went down while reading it, every time
        queue.log.start_attempt(crashes)
    queue.log.start_attempt(interrupted)  # killed once while reading it

    # The untried files go first, in arrival order; then the interrupted one, once more.
    order = []
    while (study := queue.claim_next(None)) is not None:
        order.append(study.id)
        queue.log.finish(study.id, SCORED)
    assert order == [new, newer, interrupted]
    failed = queue.log.get(crashes)
    assert failed.state == FAILED and f"interrupted {MAX_ATTEMPTS} times" in failed.error
    assert "copy the file into the watch folder under a new name" in failed.error
    assert [queue.log.get(i).attempts for i in (interrupted, new, newer)] == [2, 1, 1]

    # What the message offers: the same content under a new name is a new study, scored afresh
    # (never linked to the study given up, whose failure says nothing about the image).
    (watch / "crashes-again.png").write_bytes((watch / "crashes.png").read_bytes())
    (again,) = queue.scan(budget_s=10.0)
    retried = queue.claim_next(None)
    assert retried is not None and retried.id == again and queue.log.get(again).attempts == 1


def _check(figures: kill_harness.KillFigures) -> None:
    """Nothing lost or twice; each study's outcome and attempts are what the kills that cut it short
    call for: scored, or given up (failed, naming the interruptions) after MAX_ATTEMPTS of them."""
    assert figures.lost == 0 and figures.duplicated == 0, figures
    assert figures.rows == figures.distinct_paths == figures.files, figures
    assert figures.attempt_mismatches == [], figures
    assert figures.states == figures.expected_states, figures
    assert figures.integrity == "ok"
    scored = figures.states.get("scored", 0)
    assert figures.report_pngs == scored, figures  # one report per scored study, none twice
    assert figures.temp_files_left == 0


def test_kill_during_a_burst_loses_and_duplicates_nothing(session_bundle: Path, tmp_path: Path) -> None:
    figures = kill_harness.run(session_bundle, tmp_path, files=24, kills=3, seed=3, burst_s=1.0)
    _check(figures)


@pytest.mark.slow
def test_fifty_kills_during_a_200_file_burst(session_bundle: Path, tmp_path: Path) -> None:
    figures = kill_harness.run(session_bundle, tmp_path, files=200, kills=50, seed=17)
    _check(figures)
    recovery = np.asarray(figures.recovery_s or [np.nan])
    print("kill harness:", figures)
    assert figures.kills_while_processing >= 10  # the kills land in the burst, many mid-study
    print(f"recovery after a kill: median {np.median(recovery):.2f} s, max {np.max(recovery):.2f} s")
    throughput = kill_harness.burst_throughput(session_bundle, tmp_path / "burst", files=200)
    print("burst throughput:", throughput)
    assert throughput["files_per_s"] > 0


@pytest.mark.slow
def test_kills_of_the_real_app_in_kiosk_mode(session_bundle: Path, tmp_path: Path) -> None:
    """The same with the real app (offscreen window, kiosk mode, watch folder) as the victim."""
    figures = kill_harness.run(
        session_bundle, tmp_path, files=60, kills=8, seed=5, max_kill_delay_s=4.0, app=True
    )
    _check(figures)
    print("kill harness (app):", figures)


def _sigterm_during_work(
    command: list[str], tmp_path: Path, env_extra: dict[str, str]
) -> tuple[int, Path, str]:
    """Start ``command`` on a watch folder of 40 studies, send SIGTERM while a study is being
    analysed (after two are done), and return its exit code, the study log and its output."""
    import signal
    import time

    db = tmp_path / "data" / "studies.sqlite"
    env = kill_harness.child_env(env_extra)
    output = tmp_path / "output.log"
    with output.open("wb") as log:
        child = subprocess.Popen(command, cwd=kill_harness.REPO, env=env, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and child.poll() is None:
                if kill_harness._finished(db) >= 2 and kill_harness._in_progress(db):
                    break  # a study is being analysed right now
                time.sleep(0.002)
            assert child.poll() is None, output.read_text(errors="replace")[-2000:]
            child.send_signal(signal.SIGTERM)
            code = child.wait(timeout=90)
        finally:
            if child.poll() is None:
                child.kill()
    return code, db, output.read_text(errors="replace")


def _check_stopped_after_the_study_in_hand(code: int, db: Path, output: str) -> None:
    assert code == 0, output[-2000:]
    assert kill_harness._in_progress(db) == {}  # no study left cut short
    rows = kill_harness._read(db, "SELECT state, attempts FROM studies WHERE state != 'pending'")
    assert 2 < len(rows) < 40, rows  # the one in hand logged, and it stopped rather than go on
    assert all(attempts == 1 for _state, attempts in rows)
    assert "asked to stop" in output


def test_sigterm_lets_the_headless_kiosk_finish_the_study_in_hand(
    session_bundle: Path, tmp_path: Path
) -> None:
    """The headless kiosk: SIGTERM used to end the process under the study in hand."""
    watch, data = tmp_path / "watch", tmp_path / "data"
    kill_harness.make_images(watch, 40)
    command = kill_harness._command(data, watch, session_bundle, exit_when_idle=False)
    _check_stopped_after_the_study_in_hand(*_sigterm_during_work(command, tmp_path, {}))


def test_sigterm_lets_the_real_app_finish_the_study_in_hand_and_exit_cleanly(
    session_bundle: Path, tmp_path: Path
) -> None:
    """``systemctl stop`` (SIGTERM) of the kiosk app while it works through a folder: it starts no new
    study, logs the one in hand, and exits with status 0. Before, SDL turned SIGTERM into a quit and
    the app closed at once under the study, which stayed cut short: an interrupted attempt (three
    make it given up). This test failed there on the study left in hand."""
    watch, data = tmp_path / "watch", tmp_path / "data"
    kill_harness.make_images(watch, 40)
    command = kill_harness._app_command(data, watch, session_bundle)
    _check_stopped_after_the_study_in_hand(
        *_sigterm_during_work(command, tmp_path, kill_harness.app_env(tmp_path))
    )
