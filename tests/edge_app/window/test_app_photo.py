"""The photo flow in the real app: open a phone photo of a film, drag its corners, confirm, score, report.

One app for the module (the tiny CheXNet session bundle). The photos are real JPEG files
(``tests/edge_app/photos.py``: ``training.data.photo_render``'s phantom films on a light box).
The corners are dragged as a user does: touches through the window's input dispatch, from each
handle's position on screen to where the film's true corner is drawn.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_app.photo import corners_list, inset_corners
from edge_app.photo_flow import ADJUST_CORNERS, HAND_PLACEMENT, NO_FILM_TITLE
from tests.edge_app.photos import PhotoCase, write_photo_cases
from tests.edge_app.window.conftest import app_with_bundle, open_via_picker


@pytest.fixture(scope="module")
def running(app_bundle: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    yield from app_with_bundle(tmp_path_factory.mktemp("app_data"), app_bundle)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PhotoCase]:
    return write_photo_cases(tmp_path_factory.mktemp("photos"), seeds=(0, 1, 2))


def _open_photo(running, case: PhotoCase) -> None:  # type: ignore[no-untyped-def]
    app, session = running
    app.go_home()
    session.pump(2)
    open_via_picker(session, case.path, button=app.screens.get_screen("start").ids.photo_button)
    assert app.busy and case.path.name in app.busy_text
    session.wait_until(lambda: not app.busy, 60, "photo read and the film looked for")


def _window_of(editor, view, point) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """Where photo pixel ``point`` is drawn in the window."""
    x, y = view.to_display(np.array([point] * 4))[0]
    return editor.to_window(*editor.image_to_local(x, y))


def _drag(session, editor, index: int, to: tuple[float, float]) -> None:  # type: ignore[no-untyped-def]
    session.touch(*editor.handle_to_window(index), move_to=to)


def _photo_px_per_window_px(editor, view) -> float:  # type: ignore[no-untyped-def]
    return editor.image_size[0] / editor.fit_size[0] / view.scale


def test_detected_corners_dragged_confirmed_scored_and_reported(running, photos) -> None:  # type: ignore[no-untyped-def]
    from cxr_core.capture import capture_film
    from edge_app.display import fit_for_display, grey_to_rgb8
    from edge_app.report import _PAD, REPORT_IMAGE_SIDE, photo_panel

    app, session = running
    case = photos["good"]
    _open_photo(running, case)
    assert app.screens.current == "photo", (app.screens.current, app.last_outcome)
    screen = app.screens.get_screen("photo")
    editor, view = screen.editor, app.photo_view
    assert view.detected and view.photo_size == (1600, 1200)
    diagonal = float(np.hypot(*view.photo_size))
    error = np.hypot(*(view.corners - case.corners).T).max() / diagonal
    assert error < 0.03, f"detected corners {view.corners.tolist()} vs true {case.corners.tolist()}"
    assert np.allclose(screen.photo_corners(), view.corners)
    assert screen.preview_texture is not None and not screen.problem
    film_aspect = case.film.shape[1] / case.film.shape[0]
    preview_w, preview_h = screen.preview_texture.size
    assert abs(preview_w / preview_h - film_aspect) < 0.1 * film_aspect

    # Drag the top-left handle 60 px right and 50 px down: the corner follows, the preview is redrawn.
    before, texture = screen.photo_corners(), screen.preview_texture
    x, y = editor.handle_to_window(0)
    _drag(session, editor, 0, (x + 60, y - 50))
    step = _photo_px_per_window_px(editor, view)
    moved = screen.photo_corners()
    assert moved[0] == pytest.approx(before[0] + (60 * step, 50 * step), abs=2 * step)
    assert np.allclose(moved[1:], before[1:]) and editor.active == -1
    assert screen.preview_texture is not texture

    # Put every handle on the film's true corner, as a clinician would correct a detection.
    for index in range(4):
        _drag(session, editor, index, _window_of(editor, view, case.corners[index]))
    confirmed = screen.photo_corners()
    assert np.abs(confirmed - case.corners).max() < 2 * step
    button = screen.ids.confirm_button
    assert not button.disabled
    session.touch(*button.to_window(*button.center), settle=1)
    assert app.busy and "Scoring the film" in app.busy_text
    session.wait_until(lambda: not app.busy, 60, "photo scored")
    assert app.screens.current == "result", (app.screens.current, app.last_outcome)

    prediction = app.prediction
    record = prediction.to_dict()["input"]
    assert record["kind"] == "photo"
    assert np.allclose(np.asarray(record["corners"], dtype=float), confirmed, atol=0.01)
    # The scored image is the photo rectified to the confirmed corners, and it is the film.
    expected = capture_film(case.path, corners=confirmed).image.pixels
    assert np.allclose(prediction.image.pixels, expected, atol=1e-6)
    crop = prediction.image.pixels
    original = np.asarray(
        Image.fromarray(case.film).resize((crop.shape[1], crop.shape[0]), Image.Resampling.BILINEAR),
        dtype=float,
    )
    assert np.corrcoef(original.ravel(), crop.ravel())[0, 1] > 0.8
    findings = app.screens.get_screen("result").findings
    assert len(findings.findings_list.rows()) == 14
    assert "photo of a film" in findings.ids.input_note.text and findings.ids.input_note.opacity == 1

    result = app.screens.get_screen("result")
    session.tap(result.actions.ids.export_button)
    session.wait_until(lambda: app.report_text.startswith("Report saved"), 60, "report written")
    report = app.last_export
    payload = json.loads(report.json.read_text(encoding="utf-8"))
    assert payload["input"]["kind"] == "photo" and payload["input"]["corners"] == record["corners"]
    assert payload["input"]["quality"], "no quality figures in the report"
    photo = payload["report"]["photo"]
    assert photo["confirmed_corners"] == corners_list(confirmed)
    assert photo["detected_corners"] == corners_list(view.corners) and photo["placed_by_hand"] is False
    assert photo["moved_by_clinician_px"] > 0 and photo["photo_size"] == [1600, 1200]
    # The PNG: the photo with the outline, then the straightened film (what was scored).
    with Image.open(report.png) as image:
        picture = np.asarray(image.convert("RGB"))
    panel = np.asarray(photo_panel(view.display, confirmed, view.photo_size[0]))
    top = 110 + (44 if prediction.notices else 0) + 26
    assert np.array_equal(picture[top : top + panel.shape[0], _PAD : _PAD + panel.shape[1]], panel)
    assert np.all(panel == (40, 190, 240), axis=-1).sum() > 500  # the outline is drawn
    plain = fit_for_display(grey_to_rgb8(prediction.image.pixels), REPORT_IMAGE_SIDE)
    left = _PAD * 2 + panel.shape[1]
    assert np.array_equal(picture[top : top + plain.shape[0], left : left + plain.shape[1]], plain)


def test_crossed_corners_block_scoring_and_rotate_turns_the_reading(running, photos) -> None:  # type: ignore[no-untyped-def]
    app, session = running
    _open_photo(running, photos["good"])
    screen = app.screens.get_screen("photo")
    editor, button = screen.editor, screen.ids.confirm_button
    detected = screen.photo_corners()
    x, y = editor.handle_to_window(1)
    _drag(session, editor, 0, (x + 80, y))  # top-left dragged past top-right: the sides cross
    assert "do not outline the film" in screen.ids.photo_problem.text and button.disabled
    app.confirm_photo()  # even if called, nothing is scored
    session.pump(2)
    assert not app.busy and app.screens.current == "photo"
    session.tap(screen.ids.reset_button)
    assert not screen.problem and not button.disabled
    assert np.allclose(screen.photo_corners(), detected)
    session.tap(screen.ids.rotate_button)
    assert np.allclose(screen.photo_corners(), np.roll(detected, 1, axis=0))
    assert not screen.problem
    session.tap(screen.ids.photo_cancel)
    assert app.screens.current == "start" and app.photo_view is None


def test_no_film_found_offers_placing_the_corners_by_hand(running, photos) -> None:  # type: ignore[no-untyped-def]
    app, session = running
    case = photos["no_film"]
    _open_photo(running, case)
    assert app.screens.current == "message", (app.screens.current, app.last_outcome)
    message = app.screens.get_screen("message")
    assert message.ids.title.text == NO_FILM_TITLE and case.path.name in message.ids.source.text
    assert message.ids.reasons.text.strip() and message.ids.fix.text.startswith("What to do: ")
    action = message.ids.photo_action_button
    assert action.text == HAND_PLACEMENT and action.opacity == 1 and not action.disabled
    assert message.ids.score_anyway_button.opacity == 0

    session.tap(action)
    assert app.screens.current == "photo"
    screen = app.screens.get_screen("photo")
    assert screen.title.startswith("Place the film's corners") and "No film was found" in screen.info
    hand = inset_corners(*app.photo_view.photo_size)
    assert np.allclose(screen.photo_corners(), hand)
    session.tap(screen.ids.confirm_button)
    session.wait_until(lambda: not app.busy, 60, "hand-placed photo judged")
    outcome = app.last_outcome
    if app.screens.current == "result":  # scored: with the hand-placed corners
        used = np.asarray(app.prediction.to_dict()["input"]["corners"], dtype=float)
    else:  # refused (nothing film-like inside): the refusal names the corners it judged
        assert app.screens.current == "message" and outcome.corners is not None
        used = np.asarray(outcome.corners, dtype=float)
        assert message.ids.photo_action_button.text == ADJUST_CORNERS
    assert np.allclose(used, hand, atol=0.01)


def test_a_photo_with_glare_is_refused_with_the_fix(running, photos) -> None:  # type: ignore[no-untyped-def]
    app, session = running
    case = photos["glare"]
    _open_photo(running, case)
    if app.screens.current == "photo":  # the film was found: confirm the detected corners
        session.tap(app.screens.get_screen("photo").ids.confirm_button)
        session.wait_until(lambda: not app.busy, 60, "photo judged")
    assert app.screens.current == "message", (app.screens.current, app.last_outcome)
    message = app.screens.get_screen("message")
    outcome = app.last_outcome
    assert message.kind == "refused" and outcome.fix and outcome.measures
    assert message.ids.title.text == "This photo was not scored"
    assert "reflection" in message.ids.fix.text.lower() and message.ids.fix.opacity == 1
    assert "glare" in message.ids.reasons.text.lower() or "reflection" in message.ids.reasons.text.lower()
    assert message.ids.photo_action_button.text == ADJUST_CORNERS
    assert app.prediction is None
    # Back to the corners it was judged with; the app keeps working.
    session.tap(message.ids.photo_action_button)
    assert app.screens.current == "photo"
    assert np.allclose(app.screens.get_screen("photo").photo_corners(), outcome.corners, atol=0.01)
    app.go_home()
    session.pump(2)
    assert app.screens.current == "start" and app.photo_view is None


def test_portrait_puts_the_photo_above_the_preview_and_handles_still_drag(running, photos) -> None:  # type: ignore[no-untyped-def]
    app, session = running
    _open_photo(running, photos["good"])
    screen = app.screens.get_screen("photo")
    editor, preview = screen.editor, screen.ids.preview
    try:
        session.resize(540, 1080)
        assert app.portrait
        assert editor.to_window(*editor.pos)[1] > preview.to_window(*preview.pos)[1]  # photo on top
        before = screen.photo_corners()
        x, y = editor.handle_to_window(2)
        assert 0 < x < 540 and 0 < y < 1080
        _drag(session, editor, 2, (x - 20, y + 20))
        moved = screen.photo_corners()
        step = _photo_px_per_window_px(editor, app.photo_view)
        assert moved[2] == pytest.approx(before[2] + (-20 * step, -20 * step), abs=2 * step)
    finally:
        session.resize(1280, 800)
    assert not app.portrait and editor.to_window(*editor.pos)[0] < preview.to_window(*preview.pos)[0]
    app.go_home()
    session.pump(2)


def test_judged_photos_are_studies_in_the_history_with_their_corners(running, photos) -> None:  # type: ignore[no-untyped-def]
    app, session = running
    case = photos["good"]
    _open_photo(running, case)
    screen = app.screens.get_screen("photo")
    x, y = screen.editor.handle_to_window(3)
    _drag(session, screen.editor, 3, (x - 15, y + 10))
    confirmed = screen.photo_corners()
    session.tap(screen.ids.confirm_button)
    session.wait_until(lambda: not app.busy, 60, "photo scored")
    assert app.screens.current == "result"
    quality = app.prediction.to_dict()["input"]["quality"]

    studies = {s.name: s for s in app.study_log.studies()}
    study = studies[case.path.name]
    assert study.state == "scored" and study.top_finding == app.prediction.ranked()[0].label
    photo = study.photo
    assert np.allclose(photo["corners"], confirmed, atol=0.01) and photo["quality"] == quality
    assert photo["confirmation"]["confirmed_corners"] == corners_list(confirmed)
    assert photo["confirmation"]["placed_by_hand"] is False
    refused = studies.get(photos["glare"].path.name)  # judged by the glare test, if it ran before
    if refused is not None:
        assert refused.state == "refused" and "reflection" in refused.photo["fix"]

    app.show_history()
    session.pump(3)
    history = app.screens.get_screen("history")
    row = next(r for r in history.rows() if r.study_id == study.id)
    session.tap(row)
    assert app.screens.current == "study"
    details = app.screens.get_screen("study").ids.study_details.text
    assert "phone photo of a film" in details and "Corners (photo pixels" in details
    assert "confirmed by the clinician" in details and "Photo quality: " in details
    # Reopening a photo study goes back to its confirm screen, not to scoring the photo as a file.
    reopen = app.screens.get_screen("study").ids.reopen_button
    assert not reopen.disabled
    session.tap(reopen)
    session.wait_until(lambda: not app.busy, 60, "photo read again")
    assert app.screens.current == "photo" and app.photo_view.source == str(case.path)
    app.go_home()
    session.pump(2)
