"""The settings screen's Self-test in the real app: every model passes, and damage is shown, not fatal."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cxr_core.bundle import load_bundle as _load_bundle
from cxr_core.parity import golden_tolerance_for
from edge_app.diagnostics import ALL_PASS
from tests.edge_app.conftest import alter_golden
from tests.edge_app.window.conftest import app_with_bundle


@pytest.fixture(scope="module")
def bundle(app_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This module's own copy of the tiny bundle: later tests damage it while the app uses it."""
    return Path(shutil.copytree(app_bundle, tmp_path_factory.mktemp("selftest") / "tiny-chexnet"))


@pytest.fixture(scope="module")
def running(bundle: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    yield from app_with_bundle(tmp_path_factory.mktemp("app_data"), bundle, size=(1000, 760))


def _run_selftest(running):  # type: ignore[no-untyped-def]
    """Open the settings, tap Self-test, check the busy cover, pump until the worker answers."""
    app, session = running
    app.go_home()
    session.pump(2)
    session.tap(app.root.ids.settings_button)
    assert app.screens.current == "settings"
    screen = app.screens.get_screen("settings")
    button = screen.ids.selftest_button
    assert button.text == "Run self-test" and not button.disabled
    session.touch(*button.to_window(*button.center), settle=1)  # the release only: the worker answers later
    assert app.busy and "Self-test" in app.root.ids.busy.text and app.root.ids.busy.opacity == 1
    assert screen.ids.selftest_summary.text.startswith("Running the self-test")
    session.wait_until(lambda: not app.busy, 120, "self-test finished")
    assert app.screens.current == "settings"
    return screen, list(reversed(screen.ids.selftest_list.children))


def test_every_model_of_the_tiny_bundle_shows_pass(running, bundle: Path) -> None:  # type: ignore[no-untyped-def]
    app, session = running
    models = json.loads((bundle / "manifest.json").read_text())["models"]
    screen, rows = _run_selftest(running)
    assert [row.ids.model_label.text for row in rows] == [m["name"] for m in models]
    for row, model in zip(rows, models, strict=True):
        assert row.ids.status_label.text == "pass"
        assert row.ids.runtime_label.text == "onnxruntime"
        figures = row.ids.figures_label.text
        tolerance = golden_tolerance_for(_load_bundle(bundle).model(model["name"])).max_abs_dp
        assert figures.startswith("max |dp| ") and f"(tolerance {tolerance:.3g})" in figures
        x, y = row.to_window(*row.center)  # laid out inside the window, not collapsed
        assert row.height > 0 and 0 < x < app.root.width and 0 < y < app.root.height
    summary = screen.ids.selftest_summary
    assert summary.text == ALL_PASS and summary.opacity == 1
    assert tuple(summary.color[:3]) == pytest.approx((0.55, 0.90, 0.60))  # the "pass" colour


def test_a_wrong_reference_shows_which_models_fail(running, bundle: Path, image_files) -> None:  # type: ignore[no-untyped-def]
    app, session = running
    alter_golden(bundle, rehash=True)  # consistent hashes; only running the models shows the problem
    names = [m["name"] for m in json.loads((bundle / "manifest.json").read_text())["models"]]
    screen, rows = _run_selftest(running)
    assert [row.ids.status_label.text for row in rows] == ["fail"] * len(names)
    summary = screen.ids.selftest_summary.text
    assert "do NOT reproduce the exported reference" in summary and all(name in summary for name in names)
    # The app keeps running: an image is still scored with the loaded model.
    session.tap(screen.ids.back_button)
    app.open_path(image_files["png"])
    session.wait_until(lambda: not app.busy, 60, "prediction finished")
    assert app.screens.current == "result" and len(app.prediction.findings) == 14


def test_a_damaged_golden_file_says_why(running, bundle: Path) -> None:  # type: ignore[no-untyped-def]
    app, session = running
    golden = alter_golden(bundle, rehash=False)  # the manifest's sha256 no longer matches
    screen, rows = _run_selftest(running)
    assert rows == []
    summary = screen.ids.selftest_summary.text
    assert summary.startswith("Self-test not run: The model bundle cannot be used.")
    assert str(golden) in summary and "sha256" in summary
    assert app.model_ready and not screen.ids.selftest_button.disabled  # nothing else changed


def test_choosing_another_bundle_clears_the_results(running, app_bundle: Path) -> None:  # type: ignore[no-untyped-def]
    app, session = running
    screen = app.screens.get_screen("settings")
    assert screen.ids.selftest_summary.text  # the previous test's message is shown
    app.choose_bundle(str(app_bundle))
    session.wait_until(lambda: app.model_ready and app.bundle_path == str(app_bundle), 60, "bundle loaded")
    assert screen.ids.selftest_summary.text == "" and not screen.ids.selftest_list.children
