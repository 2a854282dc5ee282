"""Capture on photos rendered by training.data.photo_render (real JPEG files), and the photo path of the
Predictor and of cxr-predict --photo with a real bundle."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_core.capture import PhotoRefusedError, capture_film
from tests.cxr_core.photo_factory import make_photo, phantom_film, quad_for
from training.data.phantom import render_phantom
from training.data.photo_render import KINDS, render_photo

SIZE = (1200, 900)


def _rendered(kind: str, seed: int, defect: str | None = None):
    rng = np.random.default_rng(seed)
    film = render_phantom(seed=seed, size=384).image
    return render_photo(film, rng, kind=kind, defect=defect, size=SIZE)


@pytest.mark.parametrize("kind", KINDS)
def test_corners_of_rendered_photos_are_within_2_percent_of_the_diagonal(kind: str, tmp_path: Path) -> None:
    for seed in (11, 12):
        rendered = _rendered(kind, seed)
        path = tmp_path / f"{kind}{seed}.jpg"
        path.write_bytes(rendered.jpeg)  # the camera's JPEG, decoded by capture itself
        captured = capture_film(path)
        truth = rendered.corners
        error = np.linalg.norm(captured.corners - truth, axis=1).max() / np.linalg.norm(truth[2] - truth[0])
        assert error <= 0.02, f"{kind} seed {seed}: corner error {error:.3%} of the diagonal"
        assert captured.photo_size == SIZE and captured.detected
        assert captured.image.provenance.format == "jpeg"
        assert captured.image.provenance.colourfulness < 0.03  # the cast is gone


@pytest.mark.parametrize("defect", ["no_film", "two_films", "glare", "tilt", "far"])
def test_rendered_unusable_photos_are_refused(defect: str) -> None:
    """Refused, with a reason and a fix; which check speaks first is measured by the photo study
    (the specific message of each failure mode is tested on constructed photos in test_capture.py)."""
    with pytest.raises(PhotoRefusedError) as info:
        capture_film(_rendered("lightbox", 21, defect).rgb)
    assert info.value.reason and info.value.fix


def test_predict_photo_end_to_end_from_a_jpeg(session_bundle: Path, tmp_path: Path) -> None:
    from cxr_core.predictor import Predictor

    rendered = _rendered("lightbox", 31)
    path = tmp_path / "film photo.jpg"
    path.write_bytes(rendered.jpeg)
    with Predictor.load(session_bundle, model="onnx") as predictor:
        prediction = predictor.predict_photo(path)
        given = predictor.predict_photo(path, corners=rendered.corners)
    assert prediction.photo is not None and prediction.photo.detected
    assert not given.photo.detected
    record = prediction.to_dict()
    assert record["input"]["kind"] == "photo"
    assert set(record["input"]["quality"]) >= {"glare", "blur", "moire", "tilt_deg", "fill"}
    assert record["timings_ms"]["capture"] > 0 and "inference" in record["timings_ms"]
    assert len(prediction.findings) == 14
    # The same film through the same model: detected and true corners give nearly the same scores.
    a = np.array([f.model_output for f in prediction.findings])
    b = np.array([f.model_output for f in given.findings])
    assert np.abs(a - b).max() < 0.05


def test_cxr_predict_photo_json_validates_and_refusals_carry_the_fix(
    session_bundle: Path, tmp_path: Path
) -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="the dev extra brings jsonschema")
    from cxr_core.predict_cli import main

    good = tmp_path / "good.jpg"
    good.write_bytes(_rendered("window", 41).jpeg)
    tilted = tmp_path / "tilted.jpg"  # a constructed photo: tilted far beyond the limit, film clearly found
    Image.fromarray(make_photo(phantom_film(2), quad_for((1200, 900), 0.35, 0.55), (1200, 900))).save(
        tilted, quality=90
    )
    out = tmp_path / "predictions.json"
    code = main([str(good), str(tilted), "--photo", "--bundle", str(session_bundle), "--json", str(out)])
    assert code == 1  # one photo refused, the other scored
    document = json.loads(out.read_text())
    schema = json.loads(
        (Path(__file__).resolve().parents[2] / "docs/schemas/predictions.schema.json").read_text()
    )
    assert [e.message for e in jsonschema.Draft202012Validator(schema).iter_errors(document)] == []
    (result,) = document["results"]
    assert result["input"]["kind"] == "photo" and len(result["input"]["corners"]) == 4
    (failure,) = document["failures"]
    assert failure["error"] == "PhotoRefusedError"
    assert failure["fix"] == "hold the phone parallel to the film"
    assert failure["photo_quality"]["tilt_deg"] > 30


@pytest.mark.parametrize("kind", KINDS)
def test_a_blurred_photo_is_refused_as_blurred_before_the_film_is_looked_for(
    kind: str, tmp_path: Path
) -> None:
    from cxr_core.capture_quality import DEFAULT_LIMITS, photo_blur

    for seed in (21, 22):
        blurred = _rendered(kind, seed, defect="blur")
        path = tmp_path / f"{kind}{seed}-blur.jpg"
        path.write_bytes(blurred.jpeg)
        with pytest.raises(PhotoRefusedError) as caught:
            capture_film(path)
        assert caught.value.code == "blur", (kind, seed, caught.value.code, caught.value.reason)
        assert "hold the phone still" in caught.value.fix
        assert caught.value.measures["photo_blur"] > DEFAULT_LIMITS.max_photo_blur
        # the same scene in focus passes the whole-photo check
        sharp = _rendered(kind, seed)
        assert photo_blur(Image.fromarray(sharp.rgb)) <= DEFAULT_LIMITS.max_photo_blur
