"""Atomic writes and the persisted settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_app.storage import SETTINGS_NAME, AppSettings, write_atomic


def test_write_atomic_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    target = write_atomic(tmp_path / "sub" / "r.json", b"one")
    write_atomic(target, b"two")
    assert target.read_bytes() == b"two" and [p.name for p in target.parent.iterdir()] == ["r.json"]


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = write_atomic(tmp_path / "r.json", b"old")
    with pytest.raises(TypeError):
        write_atomic(target, object())  # type: ignore[arg-type]
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_settings_round_trip_and_damaged_file(tmp_path: Path) -> None:
    assert AppSettings.load(tmp_path) == AppSettings()
    AppSettings(bundle="/b", overlay_opacity=0.3, show_overlay=False).save(tmp_path)
    loaded = AppSettings.load(tmp_path)
    assert (loaded.bundle, loaded.overlay_opacity, loaded.show_overlay) == ("/b", 0.3, False)
    (tmp_path / SETTINGS_NAME).write_text('{"overlay_opacity": 7, "unknown": 1}')
    assert AppSettings.load(tmp_path).overlay_opacity == 1.0
    (tmp_path / SETTINGS_NAME).write_text("{oops")
    assert AppSettings.load(tmp_path) == AppSettings()
