"""The PNG + JSON report, drawn with Pillow from the Prediction itself."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_core.predictor import Predictor
from edge_app.display import fit_for_display, grey_to_rgb8
from edge_app.report import _PAD, REPORT_IMAGE_SIDE, export_report, render_report, report_stem


@pytest.fixture(scope="module")
def prediction(session_bundle: Path, image_files):  # type: ignore[no-untyped-def]
    with Predictor.load(session_bundle) as predictor:
        return predictor.predict_file(image_files["png"])


def test_report_shows_the_image_the_overlay_and_the_table(prediction) -> None:  # type: ignore[no-untyped-def]
    label = prediction.ranked()[2].label
    picture = np.asarray(render_report(prediction, label, 0.7, "tiny 2026"))
    plain = fit_for_display(grey_to_rgb8(prediction.image.pixels), REPORT_IMAGE_SIDE)
    overlay = fit_for_display(prediction.overlay(label, alpha=0.7), REPORT_IMAGE_SIDE)
    top = 110 + (44 if prediction.notices else 0)  # the synthetic band above the header
    h, w = plain.shape[:2]
    assert np.array_equal(picture[top : top + h, _PAD : _PAD + w], plain)
    left = _PAD * 2 + w
    assert np.array_equal(picture[top : top + h, left : left + w], overlay)
    table = picture[top:, left + w + _PAD :]
    blue = np.all(table == (70, 110, 180), axis=-1).any()
    red = np.all(table == (200, 70, 50), axis=-1).any()
    assert blue or red  # probability bars drawn
    assert picture.shape[1] > 2 * w + 500
    if prediction.notices:  # the synthetic-data mark: a red band across the top of the report
        assert np.all(picture[5, :, :] == (178, 24, 24), axis=-1).mean() > 0.9


def test_export_writes_both_files_atomically(prediction, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    report = export_report(prediction, tmp_path / "reports", "Effusion", 0.45, "tiny 2026", when=when)
    assert report.png.name == "chest_pa-20260102-030405.png" and report.json.name.endswith(".json")
    payload = json.loads(report.json.read_text())
    assert payload["findings"] == prediction.to_dict()["findings"]
    assert payload["report"]["selected_finding"] == "Effusion" and payload["report"]["bundle"] == "tiny 2026"
    with Image.open(report.png) as image:
        assert image.mode == "RGB"
    assert sorted(p.name for p in report.png.parent.iterdir()) == [report.json.name, report.png.name]


def test_report_stem_is_a_safe_file_name() -> None:
    when = datetime(2026, 1, 2, tzinfo=UTC)
    assert report_stem("/scans/patient 1/IM-0001 (copy).dcm", when) == "IM-0001_copy_-20260102-000000"
    for odd in ("content://x/..", "..", ".hidden.png", "/"):
        stem = report_stem(odd, when)
        assert not stem.startswith(".") and "/" not in stem and stem.endswith("-20260102-000000"), stem
