"""Kiosk mode in the real app: large targets, no cursor, a watch folder, the inactivity reset.

The watch folder feeds the study log (``edge_app.studylog``): a file already there at start is
processed too (the log has not seen it), every outcome is logged and scored studies get their
report written automatically.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.edge_app.window.conftest import start_app

IDLE_RESET_S = 1.0


@pytest.fixture(scope="module")
def watch_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("usb_stick")


@pytest.fixture(scope="module")
def running(app_bundle: Path, watch_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    (watch_dir / "already_there.png").write_bytes(b"present before the kiosk started: not an image")
    app, session = start_app(
        tmp_path_factory.mktemp("kiosk_data"),
        size=(1280, 800),
        bundle=app_bundle,
        kiosk=True,
        watch=watch_dir,
        watch_interval_s=0.1,
        watch_settle_s=1.0,
        idle_reset_s=IDLE_RESET_S,
    )
    session.wait_until(lambda: app.model_ready, 60, "bundle loaded")
    yield app, session
    session.stop()


def _wait(session, seconds: float) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        session.pump()


def test_kiosk_look(running, watch_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from kivy.core.window import Window
    from kivy.metrics import dp

    app, _session = running
    assert app.kiosk and app.ui_scale == 1.5
    assert app.touch_height == pytest.approx(dp(48) * 1.5)
    assert app.screens.get_screen("start").ids.open_button.height >= dp(48) * 1.5
    assert Window.show_cursor is False
    assert str(watch_dir) in app.screens.get_screen("start").ids.watch_label.text
    # The file present at start is new to the log: processed (it is no image: failed, and said so).
    _session.wait_until(lambda: app.study_log.health().counts["failed"] == 1, 30, "file at start logged")
    study = app.study_log.studies()[0]
    assert study.name == "already_there.png" and study.gate == "unreadable"
    _session.wait_until(lambda: "Failing file" in app.kiosk_health_text, 10, "health line")
    assert "already_there.png" in app.root.ids.kiosk_status.text


def test_watch_folder_waits_for_a_complete_file(running, watch_dir: Path, image_files) -> None:  # type: ignore[no-untyped-def]
    app, session = running
    data = image_files["png"].read_bytes()
    target = watch_dir / "from_scanner.png"
    with target.open("wb") as handle:  # a copy in progress: half the file, for a while
        handle.write(data[: len(data) // 2])
        handle.flush()
        _wait(session, 0.6)
        assert all(s.name != target.name for s in app.study_log.studies()), "a half-written file was logged"
        handle.write(data[len(data) // 2 :])
    session.wait_until(lambda: app.screens.current == "result", 30, "watch-folder image scored")
    assert app.prediction.source == str(target)
    assert len(app.screens.get_screen("result").findings.findings_list.rows()) == 14
    study = app.study_log.studies()[0]
    assert study.name == target.name and study.state == "scored" and study.sha256
    assert Path(study.report_png).is_file() and Path(study.report_json).is_file()  # written automatically
    assert app.report_text.startswith("Report saved")
    assert "Last: from_scanner.png (scored)" in app.kiosk_health_text


def test_inactivity_resets_to_the_start_screen(running, watch_dir: Path, image_files) -> None:  # type: ignore[no-untyped-def]
    app, session = running
    if app.screens.current != "result":
        (watch_dir / "second.png").write_bytes(image_files["png"].read_bytes())
        session.wait_until(lambda: app.screens.current == "result", 30, "watch-folder image scored")
    list_widget = app.screens.get_screen("result").findings.findings_list
    end = time.monotonic() + 2 * IDLE_RESET_S
    while time.monotonic() < end:  # someone is using it: touches keep it on the result
        session.touch(*list_widget.to_window(list_widget.x + 5, list_widget.top - 5))
        _wait(session, 0.3)
    assert app.screens.current == "result"
    _wait(session, IDLE_RESET_S + 1.2)
    assert app.screens.current == "start"
    assert app.prediction is None
    assert app.screens.get_screen("result").radiograph.view.image.grey_texture is None
