"""Bundle discovery in the real app: first run without a bundle, installing, choosing, a damaged one."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.edge_app.window.conftest import _entries, _on_screen, start_app


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("first_run_data")


@pytest.fixture(scope="module")
def running(data_dir: Path):  # type: ignore[no-untyped-def]
    app, session = start_app(data_dir, size=(900, 700))  # no --bundle, nothing installed
    session.wait_until(lambda: app.screens.current == "first_run", 30, "first-run screen")
    yield app, session
    session.stop()


def _pick_folder(session, folder: Path) -> None:  # type: ignore[no-untyped-def]
    """The folder picker as a user drives it: go to the parent, tap the folder, tap "Open"."""
    popup = session.app.adapter.popup
    assert popup is not None and popup.dirselect
    chooser = popup.ids.chooser
    chooser.path = str(folder.parent)
    session.wait_until(
        lambda: any(getattr(e, "path", None) == str(folder) for e in _entries(chooser)),
        10,
        f"{folder.name} listed",
    )
    entry = next(e for e in _entries(chooser) if e.path == str(folder))
    session.wait_until(lambda: _on_screen(chooser, entry), 10, "entry laid out")
    session.tap(entry)
    assert chooser.selection == [str(folder)]
    session.tap(popup.ids.open_button)


def test_first_run_screen_says_where_to_put_a_bundle(running, data_dir: Path, image_files) -> None:  # type: ignore[no-untyped-def]
    app, session = running
    screen = app.screens.get_screen("first_run")
    assert str(data_dir / "bundles") in screen.ids.first_run_text.text
    assert "No model bundle is installed" in screen.ids.first_run_text.text
    assert app.bundle_title == "no model bundle" and "not a diagnosis" in app.root.ids.notice.text
    assert app.screens.get_screen("start").ids.open_button.disabled
    app.open_path(image_files["png"])  # e.g. a watch-folder file before any bundle exists
    session.pump(2)
    assert app.screens.current == "first_run" and not app.busy


def test_self_test_without_a_bundle_says_so(running) -> None:  # type: ignore[no-untyped-def]
    from edge_app.diagnostics import NO_BUNDLE

    app, session = running
    session.tap(app.root.ids.settings_button)
    screen = app.screens.get_screen("settings")
    assert app.screens.current == "settings"
    assert screen.ids.selftest_button.text == "Self-test: no bundle loaded"
    session.tap(screen.ids.selftest_button)
    assert not app.busy and not app.service.busy  # nothing was sent to the worker
    assert screen.ids.selftest_summary.text == NO_BUNDLE and not screen.ids.selftest_list.children
    session.tap(screen.ids.back_button)
    assert app.screens.current == "first_run"


def test_installing_a_bundle_then_look_again(running, data_dir: Path, app_bundle: Path) -> None:  # type: ignore[no-untyped-def]
    app, session = running
    shutil.copytree(app_bundle, data_dir / "bundles" / "tiny-chexnet")
    session.tap(app.screens.get_screen("first_run").ids.rescan_button)
    session.wait_until(lambda: app.model_ready, 60, "bundle loaded")
    assert app.screens.current == "start"
    assert "tiny-chexnet" in app.root.ids.bundle_label.text
    assert app.bundle_path == str(data_dir / "bundles" / "tiny-chexnet")


def test_settings_lists_bundles_and_picks_a_folder(running, data_dir: Path, app_bundle_copy: Path) -> None:  # type: ignore[no-untyped-def]
    app, session = running
    session.tap(app.root.ids.settings_button)
    assert app.screens.current == "settings"
    buttons = list(reversed(app.screens.get_screen("settings").ids.bundle_list.children))
    assert [b.bundle_path for b in buttons] == [str(data_dir / "bundles" / "tiny-chexnet")]
    assert buttons[0].chosen and buttons[0].usable

    other = app_bundle_copy.parent / "other-bundle"
    app_bundle_copy.rename(other)
    choose = next(
        w
        for w in app.screens.get_screen("settings").walk()
        if getattr(w, "text", "") == "Choose another folder"
    )
    session.tap(choose)
    _pick_folder(session, other)
    session.wait_until(lambda: app.model_ready and app.bundle_path == str(other), 60, "chosen bundle loaded")
    assert "other-bundle" in app.root.ids.bundle_label.text
    assert json.loads((data_dir / "settings.json").read_text())["bundle"] == str(other)


def test_a_damaged_bundle_leaves_the_app_on_the_first_run_screen(running, app_bundle_copy: Path) -> None:  # type: ignore[no-untyped-def]
    app, session = running
    model = app_bundle_copy / "model.onnx"
    model.write_bytes(model.read_bytes()[:-10] + b"tampered!!")
    app.choose_bundle(str(app_bundle_copy))
    session.wait_until(lambda: not app.busy, 60, "load attempt finished")
    assert app.screens.current == "first_run" and not app.model_ready
    text = app.screens.get_screen("first_run").ids.first_run_text.text
    assert "model.onnx" in text and "sha256" in text
    app.choose_bundle(str(app_bundle_copy.parent / "does-not-exist"))
    session.pump(2)
    assert "does not exist" in app.screens.get_screen("first_run").ids.first_run_text.text
    assert app.screens.current == "first_run"
