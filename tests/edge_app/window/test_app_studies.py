"""The kiosk's study log in the real app: nothing lost while busy or down, and the history screen.

Files that become ready while the bundle loads, while a report is written or while the self-test
runs are queued in the log and processed when the app is free, with no other file arriving; a
restart processes the files copied while the app was down and nothing twice; the history screen
lists, filters and reopens the logged studies, exports the log and applies the retention setting.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from tests.edge_app.conftest import radiograph
from tests.edge_app.window.conftest import start_app
from tests.file_factory import write_png

FAST = {"kiosk": True, "watch_interval_s": 0.05, "watch_settle_s": 0.0, "idle_reset_s": 0}


def _image(folder: Path, name: str, seed: int) -> Path:
    return write_png(folder / name, radiograph(seed=seed))


def _study(app, name: str):  # type: ignore[no-untyped-def]
    return next((s for s in app.study_log.studies() if s.name == name), None)


def _finished(app, name: str) -> bool:  # type: ignore[no-untyped-def]
    study = _study(app, name)
    return study is not None and study.state != "pending"


def test_files_ready_while_busy_are_processed_without_another_arrival(
    app_bundle: Path, tmp_path: Path
) -> None:
    watch = tmp_path / "usb"
    watch.mkdir()
    _image(watch, "during_load.png", 1)
    app, session = start_app(tmp_path / "data", bundle=app_bundle, watch=watch, **FAST)
    try:
        # Already there at start: queued by the first look, before the bundle is loaded.
        assert _study(app, "during_load.png") is not None
        session.wait_until(lambda: _finished(app, "during_load.png"), 30, "file of the start scored")
        session.wait_idle()

        # Ready while the bundle is (re)loading: queued, and scored once it is loaded.
        app.reload_bundle()
        assert app.busy and not app.model_ready
        _image(watch, "during_load_2.png", 4)
        app._poll_watch(0)  # the clock's look at the folder, while the load runs on the worker
        assert _study(app, "during_load_2.png").state == "pending" and not app.model_ready
        session.wait_until(lambda: _finished(app, "during_load_2.png"), 30, "file of the load scored")
        assert _study(app, "during_load_2.png").state == "scored"
        session.wait_idle()

        # Ready while a report is written.
        assert app.screens.current == "result"
        app.export_current()
        assert app.busy
        _image(watch, "during_export.png", 2)
        app._poll_watch(0)
        assert _study(app, "during_export.png").state == "pending" and app.busy
        session.wait_until(lambda: _finished(app, "during_export.png"), 30, "file of the export scored")
        assert app.report_text.startswith("Report saved")
        session.wait_idle()

        # Ready while the self-test runs (the settings screen's button).
        app.show_settings()
        app.run_selftest()
        assert app.selftest_state == "running" and app.busy
        _image(watch, "during_selftest.png", 3)
        app._poll_watch(0)
        assert _study(app, "during_selftest.png").state == "pending" and app.selftest_state == "running"
        session.wait_until(lambda: _finished(app, "during_selftest.png"), 60, "file of the self-test scored")
        assert app.selftest_state in ("pass", "fail")
        assert _study(app, "during_selftest.png").state == "scored"
        names = [s.name for s in app.study_log.studies(newest_first=False)]
        assert names == ["during_load.png", "during_load_2.png", "during_export.png", "during_selftest.png"]
    finally:
        session.stop()


def test_restart_processes_what_was_copied_while_down(app_bundle: Path, image_files, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    watch, data = tmp_path / "usb", tmp_path / "data"
    watch.mkdir()
    _image(watch, "first.png", 11)
    app, session = start_app(data, bundle=app_bundle, watch=watch, **FAST)
    try:
        session.wait_until(lambda: app.model_ready and _finished(app, "first.png"), 60, "first scored")
        first = _study(app, "first.png")
    finally:
        session.stop()
    # Down: two new studies, the same image under a new name, and a temp file of a killed write.
    _image(watch, "while_down_1.png", 12)
    shutil.copy(image_files["dicom"], watch / "while_down_2.dcm")
    shutil.copy(watch / "first.png", watch / "first_copy.png")
    (data / "reports" / ".000002-x.png.k1ll.tmp").write_bytes(b"half")
    app, session = start_app(data, bundle=app_bundle, watch=watch, **FAST)
    try:
        names = ("while_down_1.png", "while_down_2.dcm", "first_copy.png")
        session.wait_until(lambda: all(_finished(app, n) for n in names), 60, "files copied while down")
        assert not list((data / "reports").glob(".*.tmp"))
        assert _study(app, "first.png").attempts == first.attempts == 1  # not processed again
        assert _study(app, "first_copy.png").linked_to == first.id
        assert len(app.study_log.studies()) == 4
        assert app.study_log.health().queued == 0
    finally:
        session.stop()


@pytest.fixture
def history_app(app_bundle: Path, image_files, tmp_path: Path):  # type: ignore[no-untyped-def]
    watch = tmp_path / "usb"
    watch.mkdir()
    _image(watch, "a_chest.png", 21)
    _image(watch, "b_chest.png", 22)
    shutil.copy(image_files["bad"], watch / "c_broken.png")
    shutil.copy(image_files["ct"], watch / "d_head.dcm")
    app, session = start_app(tmp_path / "data", bundle=app_bundle, watch=watch, **FAST)
    session.wait_until(lambda: len(app.study_log.studies(state=None)) == 4, 30, "4 studies logged")
    session.wait_until(lambda: app.study_log.health().queued == 0 and not app.busy, 60, "4 studies done")
    session.wait_idle()
    yield app, session, watch
    session.stop()


def _shown(screen) -> list[str]:  # type: ignore[no-untyped-def]
    return [row.text.split("  ", 1)[1].split(":")[0] for row in screen.rows()]


def test_history_screen_lists_filters_reopens_and_exports(history_app, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    app, session, watch = history_app
    session.tap(app.root.ids.history_button)
    assert app.screens.current == "history"
    screen = app.screens.get_screen("history")
    assert _shown(screen) == ["d_head.dcm", "c_broken.png", "b_chest.png", "a_chest.png"]  # newest first
    headings = [w.text for w in screen.ids.study_list.children if not hasattr(w, "study_id")]
    assert headings == ["Today"]

    session.tap(screen.ids.filter_failed)
    assert _shown(screen) == ["c_broken.png"]
    session.tap(screen.ids.filter_refused)
    assert _shown(screen) == ["d_head.dcm"]
    session.tap(screen.ids.filter_scored)
    assert _shown(screen) == ["b_chest.png", "a_chest.png"]
    top = app.study_log.get(screen.shown[0]).top_finding
    assert top in screen.ids.finding_filter.values
    screen.ids.finding_filter.text = top  # what choosing it in the drop-down does
    session.pump(2)
    assert "b_chest.png" in _shown(screen)
    screen.ids.finding_filter.text = "Any finding"
    session.tap(screen.ids.filter_all)

    # Reopen a scored study: its report (radiograph, heat map, findings) from disk.
    row = next(r for r in screen.rows() if "a_chest.png" in r.text)
    session.tap(row)
    assert app.screens.current == "study"
    study_screen = app.screens.get_screen("study")
    assert study_screen.report.endswith(".png") and study_screen.ids.report_image.texture is not None
    assert study_screen.ids.report_image.texture.size[0] > 1000
    assert "Input gate: accepted" in study_screen.details and "%" in study_screen.details
    frame = session.screenshot()
    assert frame.std() > 10  # something is drawn
    # The source is still there, unchanged: it can be opened again with every finding's heat map.
    assert study_screen.source.endswith("a_chest.png")
    logged = len(app.study_log.studies())
    session.tap(study_screen.ids.reopen_button)
    session.wait_until(lambda: app.screens.current == "result", 30, "study reopened")
    assert len(app.screens.get_screen("result").findings.findings_list.rows()) == 14
    assert len(app.study_log.studies()) == logged  # looking again is not a new study
    session.wait_idle()
    app.open_study(row.study_id)
    session.tap(study_screen.ids.back_to_history)
    assert app.screens.current == "history"
    # A refused study reopens with its reasons, no image.
    session.tap(next(r for r in screen.rows() if "d_head.dcm" in r.text))
    assert study_screen.report == "" and "Reason:" in study_screen.details
    assert study_screen.source == "" and study_screen.ids.reopen_button.disabled
    session.tap(study_screen.ids.back_to_history)

    session.tap(screen.ids.export_csv_button)
    exported = sorted((Path(app.data_dir) / "exports").glob("studies-*.csv"))
    assert len(exported) == 1 and exported[0].name in screen.message
    rows = list(csv.DictReader(exported[0].open(encoding="utf-8")))
    assert [r["name"] for r in rows] == ["a_chest.png", "b_chest.png", "c_broken.png", "d_head.dcm"]
    assert rows[0]["sha256"] and rows[0]["report_png"]

    # Retention: keep the last 3 studies' reports -> the oldest study loses its report, nothing else.
    from edge_app.history import RETENTION_CHOICES

    label = next(k for k, v in RETENTION_CHOICES.items() if v == (None, 100))
    assert app.study_queue.apply_retention(None, 3) == 1  # the choices are large; a small count directly
    app.settings.retention_count = None
    a, b = _study(app, "a_chest.png"), _study(app, "b_chest.png")
    assert a.report_png is None and a.derived_deleted_at and b.report_png and Path(b.report_png).is_file()
    assert len(list((Path(app.reports_dir)).glob("*.png"))) == 1
    sources = sorted(p.name for p in watch.iterdir())
    assert sources == ["a_chest.png", "b_chest.png", "c_broken.png", "d_head.dcm"]  # untouched
    screen.ids.retention_spinner.text = label  # the setting itself, through the screen
    session.pump(2)
    assert app.settings.retention_count == 100 and "Keep the last 100" in screen.message
    assert app.study_log.studies()  # the record of every study stays
