"""The watch folder: new files only, and only once they stop growing."""

from __future__ import annotations

import os
from pathlib import Path

from edge_app.watch import FolderWatcher


class Clock:
    """A settable clock, so the settle time is exercised without sleeping."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _watcher(folder: Path, clock: Clock) -> FolderWatcher:
    return FolderWatcher(folder, settle_s=2.0, clock=clock)


def test_only_new_complete_images(tmp_path: Path) -> None:
    clock = Clock()
    (tmp_path / "old.png").write_bytes(b"old")
    watcher = _watcher(tmp_path, clock)
    assert watcher.poll() == []  # snapshot: old.png is ignored
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / ".hidden.png").write_bytes(b"x")
    (tmp_path / "empty.dcm").write_bytes(b"")
    growing = tmp_path / "new.PNG"
    growing.write_bytes(b"a" * 10)
    assert watcher.poll() == []
    clock.now += 1.5
    with growing.open("ab") as handle:  # still being copied
        handle.write(b"b" * 10)
    assert watcher.poll() == []
    clock.now += 1.9
    assert watcher.poll() == []  # unchanged for 1.9 s only
    clock.now += 0.2
    assert watcher.poll() == [growing]
    clock.now += 5
    assert watcher.poll() == []  # handed over once


def test_replaced_file_is_handed_over_again(tmp_path: Path) -> None:
    clock = Clock()
    watcher = _watcher(tmp_path, clock)
    watcher.poll()
    image = tmp_path / "a.dcm"
    image.write_bytes(b"half")
    watcher.poll()
    clock.now += 3
    assert watcher.poll() == [image]  # a stalled copy is handed over (and will fail to decode)
    image.write_bytes(b"the complete file")
    os.utime(image, ns=(1, 2))
    watcher.poll()
    clock.now += 3
    assert watcher.poll() == [image]  # completed: handed over again


def test_folder_that_appears_later(tmp_path: Path) -> None:
    clock = Clock()
    mount = tmp_path / "usb"
    watcher = _watcher(mount, clock)
    assert watcher.poll() == [] and not watcher.available
    mount.mkdir()
    (mount / "b.jpg").write_bytes(b"jpeg")
    (mount / "a.png").write_bytes(b"png")
    os.utime(mount / "a.png", ns=(10, 10))
    os.utime(mount / "b.jpg", ns=(20, 20))
    assert watcher.poll() == []
    clock.now += 2
    assert watcher.poll() == [mount / "a.png", mount / "b.jpg"]  # oldest first
    assert watcher.available
