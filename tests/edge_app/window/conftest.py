"""Helpers of the window tests: one running app per module, and the file chooser driven as a user does.

These tests run in their own process (see ``tests/edge_app/conftest.py``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.edge_app.conftest import BUNDLE_ENV, GATED_BUNDLE_ENV


@pytest.fixture(scope="session")
def app_bundle(request: pytest.FixtureRequest) -> Path:
    """The tiny CheXNet bundle: the parent process's (``CXR_EDGE_TEST_BUNDLE``), else ``session_bundle``."""
    if os.environ.get(BUNDLE_ENV):
        return Path(os.environ[BUNDLE_ENV])
    return request.getfixturevalue("session_bundle")


@pytest.fixture(scope="session")
def app_gated_bundle(request: pytest.FixtureRequest) -> Path:
    """The gated bundle (learned gate fitted at export): the parent's, else the ``gated_bundle`` fixture."""
    if os.environ.get(GATED_BUNDLE_ENV):
        return Path(os.environ[GATED_BUNDLE_ENV])
    return request.getfixturevalue("gated_bundle")


@pytest.fixture
def app_bundle_copy(app_bundle: Path, tmp_path: Path) -> Path:
    """A private copy of the bundle that a test may rename or damage."""
    return Path(shutil.copytree(app_bundle, tmp_path / "bundle"))


def start_app(data_dir: Path, size: tuple[int, int] = (1280, 800), **options: object):
    """A running CxrEdgeApp in the offscreen window, with its HeadlessSession (stop it when done)."""
    from edge_app.app import CxrEdgeApp
    from edge_app.headless import HeadlessSession
    from edge_app.options import AppOptions

    app = CxrEdgeApp(options=AppOptions(data_dir=data_dir, **options))  # type: ignore[arg-type]
    session = HeadlessSession(app, size=size).start()
    return app, session


def app_with_bundle(data_dir: Path, bundle: Path, size: tuple[int, int] = (1280, 800)) -> Iterator:
    """A module fixture's body: the app started with ``bundle``, yielded as ``(app, session)`` once the
    bundle has loaded, and stopped afterwards."""
    app, session = start_app(data_dir, size=size, bundle=bundle)
    try:
        session.wait_until(lambda: app.model_ready, 60, "bundle loaded")
        yield app, session
    finally:
        session.stop()


def open_via_picker(session, path: Path, button=None) -> None:  # type: ignore[no-untyped-def]
    """What a user does: tap "Open image" (or ``button``), walk to the folder, tap the file, tap "Open"."""
    app = session.app
    if button is None:
        screen = app.screens.get_screen(app.screens.current)
        button = screen.ids.get("open_button") or screen.ids.get("another_button")
    if button is None:
        button = app.screens.get_screen("result").actions.ids.new_button
    session.tap(button)
    popup = app.adapter.popup
    assert popup is not None, "the file chooser did not open"
    chooser = popup.ids.chooser
    chooser.path = str(path.parent)
    session.wait_until(
        lambda: any(getattr(e, "path", None) == str(path) for e in _entries(chooser)),
        10,
        f"{path.name} listed in the file chooser",
    )
    entry = next(e for e in _entries(chooser) if e.path == str(path))
    session.wait_until(lambda: _on_screen(chooser, entry), 10, f"{path.name} laid out in the chooser")
    session.tap(entry)
    assert chooser.selection == [str(path)], chooser.selection
    # One frame: the release is handled (the app turns busy); the worker's answer comes later.
    session.touch(*popup.ids.open_button.to_window(*popup.ids.open_button.center), settle=1)


def _on_screen(chooser, entry) -> bool:  # type: ignore[no-untyped-def]
    """The entry is laid out inside the chooser's visible area (not at a stale position)."""
    x, y = entry.to_window(*entry.center)
    cx, cy = chooser.to_window(*chooser.pos)
    return entry.height > 0 and cx < x < cx + chooser.width and cy < y < cy + chooser.height


def _entries(chooser):  # type: ignore[no-untyped-def]
    """The file entries the list view shows."""
    tree = chooser.layout.ids.treeview
    return [node for node in tree.iterate_all_nodes() if hasattr(node, "path")]
