"""Photos of films through the worker thread and into the report, over the real Predictor (no window).

The photos are real JPEG files rendered by ``training.data.photo_render`` (``tests/edge_app/photos.py``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_app.display import fit_for_display, grey_to_rgb8
from edge_app.photo import inset_corners
from edge_app.report import _PAD, REPORT_IMAGE_SIDE, export_report, photo_panel, render_report
from edge_app.worker import Failed, PhotoLoaded, PredictionService, Refused, Scored
from tests.edge_app import test_worker
from tests.edge_app.photos import PhotoCase, write_photo_cases
from tests.edge_app.test_worker import Inbox, _ask

#: The worker tests' loaded service (it also checks the bundle loaded).
service = test_worker.service


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, PhotoCase]:
    return write_photo_cases(tmp_path_factory.mktemp("worker_photos"), seeds=(4, 5, 6))


def test_a_photo_is_read_and_its_film_found(service, photos) -> None:  # type: ignore[no-untyped-def]
    svc, _inbox = service
    case = photos["good"]
    outcome = _ask(service, lambda done: svc.open_photo(case.path, done))
    assert isinstance(outcome, PhotoLoaded), outcome
    view = outcome.view
    assert view.detected and not view.refusal and 0.0 < view.confidence <= 1.0
    assert view.photo_size == (1600, 1200) and view.display.shape == (1200, 1600, 3)
    assert view.scale == pytest.approx(1.0)
    error = np.hypot(*(view.corners - case.corners).T).max() / np.hypot(1600, 1200)
    assert error < 0.03, (view.corners.tolist(), case.corners.tolist())


def test_no_film_starts_hand_placement_with_the_reason_and_fix(service, photos) -> None:  # type: ignore[no-untyped-def]
    svc, _inbox = service
    outcome = _ask(service, lambda done: svc.open_photo(photos["no_film"].path, done))
    assert isinstance(outcome, PhotoLoaded)
    view = outcome.view
    assert not view.detected and view.refusal and view.fix
    assert np.allclose(view.corners, inset_corners(1600, 1200))


def test_a_file_that_is_not_a_photo_fails_to_decode(service, image_files) -> None:  # type: ignore[no-untyped-def]
    svc, _inbox = service
    outcome = _ask(service, lambda done: svc.open_photo(image_files["bad"], done))
    assert isinstance(outcome, Failed) and outcome.kind == "decode", outcome
    assert image_files["bad"].name in outcome.message or outcome.message


def test_glare_is_refused_with_the_fix_and_the_corners_used(service, photos) -> None:  # type: ignore[no-untyped-def]
    svc, _inbox = service
    case = photos["glare"]
    outcome = _ask(service, lambda done: svc.predict_photo(case.path, case.corners, done))
    assert isinstance(outcome, Refused) and outcome.photo and not outcome.overridable, outcome
    assert "reflection" in outcome.fix.lower() and outcome.measures
    assert np.allclose(np.asarray(outcome.corners), case.corners)


def test_a_scored_photo_and_its_report(service, photos, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    svc, _inbox = service
    case = photos["good"]
    outcome = _ask(service, lambda done: svc.predict_photo(case.path, case.corners, done))
    assert isinstance(outcome, Scored), outcome
    prediction = outcome.prediction
    record = prediction.to_dict()["input"]
    assert record["kind"] == "photo" and np.allclose(record["corners"], case.corners, atol=0.01)
    assert record["quality"] and all(isinstance(v, int | float) for v in record["quality"].values())

    # Read back from the file when no copy is handed over: the same panel as from the decoded photo.
    label = prediction.ranked()[0].label
    picture = np.asarray(render_report(prediction, label, 0.5, "tiny"))
    with Image.open(case.path) as image:
        rgb = np.asarray(image.convert("RGB"))
    panel = np.asarray(photo_panel(rgb, case.corners))
    top = 110 + (44 if prediction.notices else 0) + 26
    assert np.array_equal(picture[top : top + panel.shape[0], _PAD : _PAD + panel.shape[1]], panel)
    plain = fit_for_display(grey_to_rgb8(prediction.image.pixels), REPORT_IMAGE_SIDE)
    left = _PAD * 2 + panel.shape[1]
    assert np.array_equal(picture[top : top + plain.shape[0], left : left + plain.shape[1]], plain)

    photo = {"confirmed_corners": case.corners.tolist(), "photo_size": [1600, 1200], "placed_by_hand": False}
    report = export_report(prediction, tmp_path, label, 0.5, "tiny", photo=photo)
    payload = json.loads(report.json.read_text(encoding="utf-8"))
    assert payload["input"]["kind"] == "photo" and payload["report"]["photo"] == photo


def test_an_image_file_report_has_no_photo(service, image_files) -> None:  # type: ignore[no-untyped-def]
    svc, _inbox = service
    outcome = _ask(service, lambda done: svc.predict(image_files["png"], done))
    prediction = outcome.prediction
    assert prediction.to_dict().get("input", {}).get("kind") != "photo"
    from edge_app.report import report_payload

    assert report_payload(prediction, prediction.ranked()[0].label, 0.5, "t")["report"]["photo"] is None


def test_a_photo_the_learned_gate_refuses_can_be_scored_anyway_with_its_corners(
    gated_bundle: Path, tmp_path: Path
) -> None:
    """A photo of a noise "film": capture accepts the photo, the learned gate refuses what is on it."""
    from training.data.photo_render import render_photo

    noise = (np.random.default_rng(9).random((560, 480)) * 255).astype(np.uint8)
    rendered = render_photo(noise, np.random.default_rng(3), kind="lightbox")
    path = tmp_path / "noise_film.jpg"
    path.write_bytes(rendered.jpeg)
    inbox = Inbox()
    svc = PredictionService(inbox.post, display_max_side=128)
    try:
        service = (svc, inbox)
        _ask(service, lambda done: svc.load(gated_bundle, done))
        refused = _ask(service, lambda done: svc.predict_photo(path, rendered.corners, done))
        assert isinstance(refused, Refused) and refused.overridable and refused.photo, refused
        assert np.allclose(np.asarray(refused.corners), rendered.corners) and not refused.fix
        scored = _ask(
            service, lambda done: svc.predict_photo(path, refused.corners, done, override_gate=True)
        )
        assert isinstance(scored, Scored) and scored.prediction.gate_override == refused.reasons
        assert np.allclose(scored.prediction.to_dict()["input"]["corners"], rendered.corners, atol=0.01)
    finally:
        svc.shutdown()
