"""The real app in an offscreen-rendered window: open a PNG and a DICOM as a user does, read the result.

One app for the module (the tiny CheXNet session bundle). Assertions are on the widgets and on
the rendered frame: where the heat map is hot, the pixels on screen must be the overlay colours
cxr_core computes, and the plain grey image where it is cold or the overlay is off.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cxr_core.predictor import NO_LEARNED_GATE_WARNING
from tests.edge_app.window.conftest import app_with_bundle, open_via_picker


@pytest.fixture(scope="module")
def running(app_bundle: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    yield from app_with_bundle(tmp_path_factory.mktemp("app_data"), app_bundle)


def _result(running, path: Path):  # type: ignore[no-untyped-def]
    app, session = running
    app.go_home()
    session.pump(2)
    open_via_picker(session, path)
    assert app.busy, "the app is not busy right after the pick"
    assert session.app.root.ids.busy.active and path.name in app.busy_text
    assert app.root.ids.busy.opacity == 1
    session.wait_until(lambda: not app.busy, 60, "prediction finished")
    assert app.screens.current == "result", (app.screens.current, app.last_outcome)
    return app.screens.get_screen("result")


def _screen_rgb(session, image_widget, x: int, y: int, frame: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    """Mean colour of the 3x3 screen pixels around display-array pixel (x, y)."""
    wx, wy = image_widget.image_to_window(x, y)
    row, col = int(frame.shape[0] - wy), int(wx)
    return frame[row - 1 : row + 2, col - 1 : col + 2].reshape(-1, 3).astype(float).mean(axis=0)


def _expected(array: np.ndarray, x: int, y: int) -> np.ndarray:
    return array[y - 1 : y + 2, x - 1 : x + 2].reshape(-1, 3).astype(float).mean(axis=0)


def _hot_and_cold(heat: np.ndarray, radius: int = 6) -> tuple[tuple[int, int], tuple[int, int]]:
    """(x, y) of the centres of the hottest and of the coldest (2r+1)^2 neighbourhoods.

    Whole neighbourhoods, so the screen pixels compared (texture sampling blends neighbours) do
    not straddle the edge of the crop the model saw, where the heat jumps to 0.
    """
    windows = np.lib.stride_tricks.sliding_window_view(heat, (2 * radius + 1, 2 * radius + 1))
    hot = np.unravel_index(np.argmax(windows.min(axis=(2, 3))), windows.shape[:2])
    cold = np.unravel_index(np.argmin(windows.max(axis=(2, 3))), windows.shape[:2])
    return (int(hot[1]) + radius, int(hot[0]) + radius), (int(cold[1]) + radius, int(cold[0]) + radius)


def test_header_shows_bundle_and_notice(running, app_bundle: Path) -> None:  # type: ignore[no-untyped-def]
    app, session = running
    header = app.root.ids.bundle_label.text
    assert app_bundle.name in header and "onnxruntime" in header
    notice = app.root.ids.notice
    assert "Decision support only" in notice.text and "not a diagnosis" in notice.text
    assert notice.height > 10 and notice.y >= 0 and notice.top <= session.size[1]


def test_png_findings_sorted_with_bars(running, image_files) -> None:  # type: ignore[no-untyped-def]
    app, _session = running
    screen = _result(running, image_files["png"])
    prediction = app.prediction
    rows = screen.findings.findings_list.rows()
    assert len(rows) == 14 == len(prediction.findings)
    assert [r.label for r in rows] == [f.label for f in prediction.ranked()]
    values = [r.score for r in rows]
    assert values == sorted(values, reverse=True)
    assert {r.label for r in rows} == set(prediction.labels)
    assert rows[0].selected and not any(r.selected for r in rows[1:])
    for row, finding in zip(rows, prediction.ranked(), strict=True):
        assert row.score == pytest.approx(finding.score)
        assert row.positive == finding.above_operating_point
    assert app.selected_label == rows[0].label
    assert rows[0].label.replace("_", " ") in screen.radiograph.ids.caption.text


def test_overlay_colours_where_the_cam_is_hot(running, image_files) -> None:  # type: ignore[no-untyped-def]
    app, session = running
    screen = _result(running, image_files["png"])
    image = screen.radiograph.view.image
    label = app.selected_label
    heat = app.prediction.heatmap(label)
    (hx, hy), (cx, cy) = _hot_and_cold(heat)
    assert heat[hy, hx] > 0.9 and heat[cy, cx] < 0.05
    opacity = float(app.overlay_opacity)
    expected = app.prediction.overlay(label, alpha=opacity)
    grey = app.display.grey

    frame = session.screenshot()
    on_hot = _screen_rgb(session, image, hx, hy, frame)
    assert np.abs(on_hot - _expected(expected, hx, hy)).max() < 8, (on_hot, _expected(expected, hx, hy))
    assert np.ptp(on_hot) > 25, f"no overlay colour on the hot spot: {on_hot}"
    assert np.abs(on_hot - _expected(grey, hx, hy)).max() > 20
    on_cold = _screen_rgb(session, image, cx, cy, frame)
    assert np.abs(on_cold - _expected(grey, cx, cy)).max() < 6 and np.ptp(on_cold) < 4

    session.tap(screen.radiograph.ids.overlay_toggle)
    assert app.show_overlay is False
    frame = session.screenshot()
    off_hot = _screen_rgb(session, image, hx, hy, frame)
    assert np.abs(off_hot - _expected(grey, hx, hy)).max() < 6 and np.ptp(off_hot) < 4
    session.tap(screen.radiograph.ids.overlay_toggle)
    assert app.show_overlay is True


def test_opacity_slider(running, image_files) -> None:  # type: ignore[no-untyped-def]
    app, session = running
    screen = _result(running, image_files["png"])
    image = screen.radiograph.view.image
    label = app.selected_label
    (hx, hy), _cold = _hot_and_cold(app.prediction.heatmap(label))
    slider = screen.radiograph.ids.opacity_slider
    for value in (1.0, 0.25):
        x = slider.x + slider.padding + value * (slider.width - 2 * slider.padding)
        session.touch(*slider.to_window(x, slider.center_y))
        assert app.overlay_opacity == pytest.approx(value, abs=0.02)
        expected = app.prediction.overlay(label, alpha=float(app.overlay_opacity))
        seen = _screen_rgb(session, image, hx, hy, session.screenshot())
        wanted = _expected(expected, hx, hy)
        assert np.abs(seen - wanted).max() < 8, (value, seen, wanted)
    app.overlay_opacity = 0.6


def test_tap_finding_switches_heat_map(running, image_files) -> None:  # type: ignore[no-untyped-def]
    app, session = running
    screen = _result(running, image_files["png"])
    rows = screen.findings.findings_list.rows()
    target = rows[5]
    session.tap(target)
    session.wait_until(lambda: app.display.label == target.label, 30, "overlay of the tapped finding")
    assert app.selected_label == target.label and target.selected and not rows[0].selected
    assert target.label.replace("_", " ") in screen.radiograph.ids.caption.text
    (hx, hy), _cold = _hot_and_cold(app.prediction.heatmap(target.label))
    expected = app.prediction.overlay(target.label, alpha=float(app.overlay_opacity))
    seen = _screen_rgb(session, screen.radiograph.view.image, hx, hy, session.screenshot())
    assert np.abs(seen - _expected(expected, hx, hy)).max() < 8


def test_zoom_pan_and_reset(running, image_files) -> None:  # type: ignore[no-untyped-def]
    app, session = running
    screen = _result(running, image_files["png"])
    view = screen.radiograph.view
    scatter = view.ids.scatter
    label = app.selected_label
    (hx, hy), _cold = _hot_and_cold(app.prediction.heatmap(label))
    anchor = view.image.image_to_window(hx, hy)
    for _ in range(5):  # mouse wheel over the hot spot: zoom in around it
        session.touch(*anchor, button="scrolldown")
    assert scatter.scale > 1.5
    assert view.image.image_to_window(hx, hy) == pytest.approx(anchor, abs=1.0)
    expected = app.prediction.overlay(label, alpha=float(app.overlay_opacity))
    seen = _screen_rgb(session, view.image, hx, hy, session.screenshot())
    assert np.abs(seen - _expected(expected, hx, hy)).max() < 8
    before = tuple(scatter.pos)
    x, y = view.to_window(*view.center)
    session.touch(x, y, move_to=(x + 40, y - 30))  # one-finger drag pans
    assert scatter.pos[0] == pytest.approx(before[0] + 40, abs=2)
    assert scatter.pos[1] == pytest.approx(before[1] - 30, abs=2)
    session.touch(x, y)
    session.touch(x, y)  # double tap resets
    assert scatter.scale == pytest.approx(1.0)
    assert tuple(scatter.pos) == pytest.approx(tuple(view.pos))


def test_dicom_through_the_picker(running, image_files) -> None:  # type: ignore[no-untyped-def]
    app, _session = running
    screen = _result(running, image_files["dicom"])
    assert app.prediction.image.provenance.format == "dicom"
    assert len(screen.findings.findings_list.rows()) == 14
    assert set(app.warnings_text.split("; ")) <= {"", NO_LEARNED_GATE_WARNING}  # no gate warning of its own


def test_lateral_dicom_is_scored_with_a_warning(running, image_files) -> None:  # type: ignore[no-untyped-def]
    app, _session = running
    screen = _result(running, image_files["lateral"])
    assert "lateral" in app.warnings_text.lower()
    assert screen.findings.ids.warnings.opacity == 1


def test_export_png_and_json(running, image_files) -> None:  # type: ignore[no-untyped-def]
    app, session = running
    screen = _result(running, image_files["png"])
    session.tap(screen.actions.ids.export_button)
    session.wait_until(lambda: app.last_export is not None and not app.busy, 30, "report written")
    report = app.last_export
    from PIL import Image

    with Image.open(report.png) as picture:
        assert picture.format == "PNG" and picture.width > 900 and picture.height > 400
    payload = json.loads(report.json.read_text(encoding="utf-8"))
    assert len(payload["findings"]) == 14 and payload["report"]["selected_finding"] == app.selected_label
    assert "not a diagnosis" in payload["report"]["disclaimer"]
    assert report.png.parent == Path(app.reports_dir)
    assert not [p for p in report.png.parent.iterdir() if p.name.startswith(".")], "temporary files left"
    assert "Report saved" in screen.findings.ids.report_status.text and report.png.name in app.report_text


def test_portrait_and_landscape_layouts(running, image_files) -> None:  # type: ignore[no-untyped-def]
    from edge_app.screens import LandscapeResult, PortraitResult

    app, session = running
    screen = _result(running, image_files["png"])
    assert isinstance(screen.layout, LandscapeResult)
    viewer, findings = screen.radiograph, screen.findings
    assert viewer.to_window(*viewer.pos)[0] < findings.to_window(*findings.pos)[0]
    try:
        session.resize(540, 960)
        assert app.portrait and isinstance(screen.layout, PortraitResult)
        assert viewer.to_window(*viewer.pos)[1] > findings.to_window(*findings.pos)[1]
        assert len(findings.findings_list.rows()) == 14 and viewer.view.image.grey_texture is not None
    finally:
        session.resize(1280, 800)
    assert not app.portrait and isinstance(screen.layout, LandscapeResult)


def test_the_synthetic_mark_is_drawn_and_no_setting_hides_it(running, image_files) -> None:  # type: ignore[no-untyped-def]
    """The test bundle is trained on 'synthetic' data: a red band under the header, whatever the settings."""
    app, session = running
    band = app.root.ids.notice_band

    def shown() -> bool:
        if (
            "SYNTHETIC TRAINING DATA: NOT FOR PATIENTS" not in band.text
            or band.height <= 0
            or band.opacity < 1
        ):
            return False
        frame = session.screenshot()
        x, y = band.to_window(band.x + 4, band.center_y)
        row, col = int(frame.shape[0] - y), int(x)
        red, green, blue = frame[row, col, :3].astype(int)
        return red > 150 and green < 60 and blue < 60

    _result(running, image_files["png"])
    assert shown()
    app.show_overlay = False  # every setting the app has: overlay, opacity, the settings screen itself
    app.overlay_opacity = 0.0
    app.show_settings()
    session.pump(3)
    assert shown()
    app.go_home()
    session.pump(3)
    assert shown()
    app.show_overlay = True
    app.overlay_opacity = 0.45


def test_scores_are_not_percentages(running, image_files) -> None:  # type: ignore[no-untyped-def]
    screen = _result(running, image_files["png"])
    for row in screen.findings.findings_list.rows():
        texts = [child.text for child in row.children if hasattr(child, "text")]
        assert not any("%" in text for text in texts), texts
        assert f"{row.score:.0f}" in " ".join(texts)
