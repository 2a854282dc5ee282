"""Refusals and bad files in the real app: a clear message instead of scores, and the app keeps working."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.edge_app.window.conftest import app_with_bundle, open_via_picker


@pytest.fixture(scope="module")
def running(app_bundle: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    yield from app_with_bundle(tmp_path_factory.mktemp("app_data"), app_bundle, size=(1024, 768))


def _message(running, path: Path):  # type: ignore[no-untyped-def]
    app, session = running
    app.go_home()
    session.pump(2)
    open_via_picker(session, path)
    session.wait_until(lambda: not app.busy, 60, "worker answered")
    assert app.screens.current == "message", app.screens.current
    assert app.prediction is None
    return app.screens.get_screen("message")


def _shown_text(screen) -> str:  # type: ignore[no-untyped-def]
    return " ".join([screen.ids.title.text, screen.ids.source.text, screen.ids.reasons.text])


def test_colour_photo_is_refused_with_its_reason(running, image_files) -> None:  # type: ignore[no-untyped-def]
    screen = _message(running, image_files["photo"])
    text = _shown_text(screen)
    assert screen.kind == "refused" and "not scored" in screen.ids.title.text
    assert "colour" in text.lower() and image_files["photo"].name in text
    assert "%" not in screen.ids.reasons.text  # reasons, not scores


def test_non_chest_dicom_is_refused(running, image_files) -> None:  # type: ignore[no-untyped-def]
    screen = _message(running, image_files["ct"])
    assert screen.kind == "refused"
    assert "CT" in screen.ids.reasons.text


def test_bad_file_shows_a_decode_error(running, image_files) -> None:  # type: ignore[no-untyped-def]
    screen = _message(running, image_files["bad"])
    assert screen.kind == "decode" and screen.ids.title.text == "This file cannot be read"
    assert "PNG, JPEG or DICOM" in screen.ids.reasons.text


def test_the_app_keeps_working_after_a_refusal(running, image_files) -> None:  # type: ignore[no-untyped-def]
    app, session = running
    screen = _message(running, image_files["photo"])
    open_via_picker(session, image_files["png"])  # "Open another image" on the message screen
    session.wait_until(lambda: not app.busy, 60, "prediction finished")
    assert app.screens.current == "result" and len(app.prediction.findings) == 14
    app.go_home()
    session.pump(2)
    assert screen.manager.current == "start" and app.prediction is None


def test_picker_cancel_changes_nothing(running) -> None:  # type: ignore[no-untyped-def]
    app, session = running
    app.go_home()
    session.pump(2)
    session.tap(app.screens.get_screen("start").ids.open_button)
    popup = app.adapter.popup
    session.tap(popup.ids.cancel_button)
    assert app.screens.current == "start" and not app.busy and popup.parent is None
