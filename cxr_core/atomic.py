"""Atomic file writes, and the clean-up of temp files that an interrupted write left behind.

:func:`atomic_write` writes into ``.<name>.<random>.tmp`` beside the target, flushes and fsyncs it,
then renames it into place: a reader sees the old file or the new one, never half of one. A process
killed (or a power cut) between the two leaves the temp file; :func:`clean_stale_temps` removes such
files at the next start. It touches only names of exactly this pattern (``tempfile.mkstemp``'s
8-character random part) that are regular files older than a minute, so a write in progress in
another process is never removed.

The file written gets the permissions the target already had, or, for a new file, those an ordinary
``open()`` would give it (``0o666`` less the process's umask). ``mkstemp`` alone would leave every
output readable by its owner only, whatever the umask, and would narrow an existing file's
permissions on every rewrite (a results folder shared with a reporting service would lose access).
A site that wants outputs private sets the umask (``UMask=0077`` in a systemd unit).
"""

from __future__ import annotations

import logging
import os
import re
import stat
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from cxr_core.text import printable

logger = logging.getLogger(__name__)

TEMP_SUFFIX = ".tmp"
#: ``.<target name>.<8 random characters of mkstemp>.tmp``
TEMP_PATTERN = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")
STALE_AFTER_S = 60.0


_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux's /proc)."""
    try:
        for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:  # elsewhere the only way to read it is to set it (and put it back at once)
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def target_mode(path: Path) -> int:
    """The permissions a rewrite of ``path`` should have: the existing file's, else 0o666 less the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~current_umask()


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write through ``write(handle)`` into a temp file beside ``path``, fsync it, rename it into place.

    The new file keeps ``path``'s permissions, or gets an ordinary new file's (:func:`target_mode`).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = target_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.chmod(tmp, mode)
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def clean_stale_temps(folder: Path, max_age_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove ``.NAME.xxxxxxxx.tmp`` files older than ``max_age_s`` in ``folder`` (not recursive).

    Returns the removed paths; a folder that does not exist or cannot be listed removes nothing.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        if not TEMP_PATTERN.match(entry.name):
            continue
        try:
            if not entry.is_file(follow_symlinks=False) or now - entry.stat().st_mtime < max_age_s:
                continue
            os.unlink(entry.path)
        except OSError as exc:
            logger.warning("cannot remove stale temp file %s: %s", printable(entry.path), exc)
            continue
        logger.info("removed stale temp file %s (left by an interrupted write)", printable(entry.path))
        removed.append(Path(entry.path))
    return removed
