"""Watch a folder (a USB drive mount, a network share) for new image files, polling.

Polling (the app calls :meth:`FolderWatcher.poll` from a Kivy ``Clock`` interval) works the same
on every file system a kiosk meets, including FAT-formatted USB sticks and SMB mounts where
inotify sees nothing. A file is handed over only once it is **stable**: not empty, and the same
size and modification time for at least ``settle_s`` seconds (measured from the poll that first
saw them), so a file still being copied -- it keeps growing -- is not read half-written. A copy
that stalls for longer than that is read too early and fails to decode (the app shows why); when
the copy completes the file's size changes, and it is handed over again. Files already present
when watching starts are ignored (only new arrivals are processed); each file is handed over
once, and again only if it is later replaced (a new size or time). A folder that does not exist
yet (a USB drive's mount point before the drive is plugged in) is waited for: the files on a
drive plugged in later are new.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cxr_core.imaging_common import IMAGE_SUFFIXES

logger = logging.getLogger(__name__)

#: Extensions the watcher hands over (content is still sniffed by cxr_core.imaging).
#: Seconds a file must keep its size and time before it is read.
DEFAULT_SETTLE_S = 2.0


@dataclass
class FolderWatcher:
    """Report new, completely written image files in ``folder``, oldest first."""

    folder: Path
    settle_s: float = DEFAULT_SETTLE_S
    suffixes: tuple[str, ...] = IMAGE_SUFFIXES
    include_existing: bool = False
    clock: Callable[[], float] = time.monotonic
    _seen: dict[Path, tuple[int, int]] = field(default_factory=dict)
    _candidates: dict[Path, tuple[tuple[int, int], float]] = field(default_factory=dict)
    _started: bool = False
    _missing_logged: bool = False

    @property
    def available(self) -> bool:
        """Whether the folder exists now (a USB drive may be plugged in later)."""
        return self.folder.is_dir()

    def _scan(self) -> dict[Path, tuple[int, int]]:
        found: dict[Path, tuple[int, int]] = {}
        try:
            entries = list(self.folder.iterdir())
        except OSError as exc:  # not plugged in yet, the stick was pulled out, the share went away
            if not self._missing_logged:
                logger.warning("cannot list watch folder %s (%s); waiting for it", self.folder, exc)
                self._missing_logged = True
            return found
        self._missing_logged = False
        for path in entries:
            if path.name.startswith(".") or path.suffix.lower() not in self.suffixes:
                continue
            try:
                stat = path.stat()
            except OSError:
                continue
            if path.is_file():
                found[path] = (stat.st_size, stat.st_mtime_ns)
        return found

    @property
    def pending(self) -> list[Path]:
        """Files seen that are not stable yet (still being copied, or waiting out ``settle_s``)."""
        return list(self._candidates)

    def forget(self, path: Path) -> None:
        """Hand ``path`` over again once it is stable (its reading failed; try again later)."""
        self._seen.pop(Path(path), None)

    def poll(self) -> list[Path]:
        """Look once; return the files that became ready since the last poll, oldest first."""
        current = self._scan()
        if not self._started:
            self._started = True
            if not self.include_existing:
                self._seen.update(current)
                return []
        now = self.clock()
        ready: list[tuple[int, Path]] = []
        for path, signature in current.items():
            if self._seen.get(path) == signature:
                continue
            previous = self._candidates.get(path)
            since = previous[1] if previous and previous[0] == signature else now
            self._candidates[path] = (signature, since)
            if signature[0] > 0 and now - since >= self.settle_s:
                ready.append((signature[1], path))
        for path in list(self._candidates):
            if path not in current:
                del self._candidates[path]
        for _, path in sorted(ready):
            self._seen[path] = self._candidates.pop(path)[0]
        return [path for _, path in sorted(ready)]
