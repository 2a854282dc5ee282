"""Score anyway in the real app: a refusal by the learned input gate names its reasons and each signal's
score and offers the override; the overridden result is marked on screen and in the saved report.
A refusal by a rule on the file (here: colour) offers no override.

One app for the module, with the gated bundle (the learned gate fitted at export on phantoms).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_app.gate_text import OVERRIDE_TITLE
from tests.edge_app.window.conftest import app_with_bundle, open_via_picker
from tests.file_factory import write_png


@pytest.fixture(scope="module")
def running(app_gated_bundle: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    yield from app_with_bundle(tmp_path_factory.mktemp("app_data"), app_gated_bundle)


@pytest.fixture(scope="module")
def noise(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Grey noise of 320 px: passes every rule on the file, unlike anything the model was trained on."""
    pixels = np.random.default_rng(7).random((320, 320))
    return write_png(tmp_path_factory.mktemp("noise") / "noise.png", pixels)


def _message(running, path: Path):  # type: ignore[no-untyped-def]
    app, session = running
    app.go_home()
    session.pump(2)
    open_via_picker(session, path)
    session.wait_until(lambda: not app.busy, 60, "worker answered")
    assert app.screens.current == "message", (app.screens.current, app.last_outcome)
    return app.screens.get_screen("message")


def test_a_learned_refusal_names_reasons_and_scores_and_can_be_scored_anyway(running, noise: Path) -> None:  # type: ignore[no-untyped-def]
    app, session = running
    screen = _message(running, noise)
    assert screen.kind == "refused" and app.prediction is None
    assert "unlike the images this model was trained on" in screen.ids.reasons.text
    assert "synthetic phantoms" in screen.ids.reasons.text  # the honest answer of a phantom bundle
    signals = screen.ids.signals
    assert "feature mahalanobis" in signals.text and "refused" in signals.text and signals.opacity == 1
    assert "score it anyway" in screen.ids.refused_note.text
    button = screen.ids.score_anyway_button
    assert button.text == "Score anyway" and button.opacity == 1 and not button.disabled and button.width > 50

    session.touch(*button.to_window(*button.center), settle=1)  # the release handled, nothing after it
    assert app.busy and "anyway" in app.busy_text
    session.wait_until(lambda: not app.busy, 60, "scored anyway")
    assert app.screens.current == "result", (app.screens.current, app.last_outcome)
    prediction = app.prediction
    assert prediction.gate_override and any("unlike the images" in r for r in prediction.gate_override)
    result = app.screens.get_screen("result")
    mark = result.findings.ids.override_mark
    assert mark.text.startswith(OVERRIDE_TITLE) and mark.opacity == 1 and mark.height > 10
    assert "unlike the images" in mark.text
    # the warning that repeats it is folded into the mark
    assert "scored at the user's request" in " ".join(prediction.warnings)
    assert "scored at the user's request" not in result.findings.ids.warnings.text
    assert "feature mahalanobis" in result.findings.ids.gate_signals.text
    assert len(result.findings.findings_list.rows()) == 14

    session.tap(result.actions.ids.export_button)
    session.wait_until(lambda: app.report_text.startswith("Report saved"), 60, "report written")
    report = app.last_export
    payload = json.loads(report.json.read_text(encoding="utf-8"))
    choice = payload["report"]["score_anyway"]
    assert choice["user_chose_to_score_anyway"] is True
    assert choice["overridden_reasons"] == list(prediction.gate_override) == payload["gate_override"]
    assert any(s["signal"] == "feature_mahalanobis" and not s["accepted"] for s in payload["gate_signals"])
    assert any("refused" in line for line in payload["report"]["input_gate_signals"])
    # The PNG carries the mark: a band of its own colour under the synthetic-data band.
    with Image.open(report.png) as image:
        band = np.asarray(image.convert("RGB"))[44 + 30, 5]
    assert tuple(int(v) for v in band) == (160, 78, 20)

    app.go_home()
    session.pump(2)
    assert app.override_text == "" and app.gate_text == ""


def test_a_rule_refusal_offers_no_override(running, image_files) -> None:  # type: ignore[no-untyped-def]
    app, session = running
    screen = _message(running, image_files["photo"])
    assert screen.kind == "refused" and "colour" in screen.ids.reasons.text.lower()
    button = screen.ids.score_anyway_button
    assert button.disabled and button.opacity == 0 and not screen.overridable
    assert "anyway" not in screen.ids.refused_note.text
    app.score_anyway()  # even if called, a rule refusal is not scored
    session.pump(3)
    assert not app.busy and app.screens.current == "message" and app.prediction is None


def test_a_photo_the_learned_gate_refuses_is_scored_anyway_with_the_same_corners(  # type: ignore[no-untyped-def]
    running, tmp_path: Path
) -> None:
    from training.data.photo_render import render_photo

    app, session = running
    noise = (np.random.default_rng(9).random((560, 480)) * 255).astype(np.uint8)
    rendered = render_photo(noise, np.random.default_rng(3), kind="lightbox")
    path = tmp_path / "noise_film.jpg"
    path.write_bytes(rendered.jpeg)
    app.go_home()
    session.pump(2)
    open_via_picker(session, path, button=app.screens.get_screen("start").ids.photo_button)
    session.wait_until(lambda: not app.busy, 60, "photo read")
    assert app.screens.current == "photo", (app.screens.current, app.last_outcome)
    corners = app.screens.get_screen("photo").photo_corners()
    session.tap(app.screens.get_screen("photo").ids.confirm_button)
    session.wait_until(lambda: not app.busy, 60, "photo judged")
    screen = app.screens.get_screen("message")
    assert app.screens.current == "message" and screen.overridable, app.last_outcome
    assert screen.ids.title.text == "This photo was not scored" and not screen.fix
    button = screen.ids.score_anyway_button
    assert button.opacity == 1 and not button.disabled
    session.tap(button)
    session.wait_until(lambda: not app.busy, 60, "scored anyway")
    assert app.screens.current == "result", (app.screens.current, app.last_outcome)
    prediction = app.prediction
    assert prediction.gate_override and prediction.to_dict()["input"]["kind"] == "photo"
    assert np.allclose(prediction.to_dict()["input"]["corners"], corners, atol=0.01)
    mark = app.screens.get_screen("result").findings.ids.override_mark
    assert mark.text.startswith(OVERRIDE_TITLE) and mark.opacity == 1
    app.go_home()
    session.pump(2)
