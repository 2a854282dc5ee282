"""Atomic file writes and the app's small persistent settings (``settings.json`` in the data folder).

Every file the app writes goes through :func:`write_atomic`: a temporary file in the destination
folder, flushed and fsynced, then ``os.replace`` -- a kiosk losing power mid-write leaves either
the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SETTINGS_NAME = "settings.json"
#: Name pattern of :func:`write_atomic`'s temporary files (``.<name>.<random>.tmp``).
TEMP_GLOB = ".*.tmp"


def remove_stale_temp_files(folder: str | Path) -> int:
    """Delete the temp files that writes interrupted by a power cut or a kill left in ``folder``.

    Call at start, before this process writes anything there. Returns how many were removed.
    """
    folder = Path(folder)
    removed = 0
    if not folder.is_dir():
        return 0
    for path in folder.glob(TEMP_GLOB):
        try:
            if path.is_file():
                path.unlink()
                removed += 1
        except OSError as exc:
            logger.warning("cannot remove the stale temp file %s: %s", path, exc)
    return removed


def default_data_dir(app_name: str = "cxredge", environ: dict[str, str] | None = None) -> Path:
    """Kivy's ``App.user_data_dir`` of the app on a desktop or a Pi, computed without Kivy.

    ``cxr-app --kiosk-status`` uses it to find the study log without opening a window.
    """
    env = os.environ if environ is None else environ
    if sys.platform == "win32":
        return Path(env.get("APPDATA", "~")).expanduser() / app_name
    if sys.platform == "darwin":
        return Path("~/Library/Application Support").expanduser() / app_name
    return Path(env.get("XDG_CONFIG_HOME") or "~/.config").expanduser() / app_name


def write_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temp file in the same folder + ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


@dataclass
class AppSettings:
    """User choices that survive a restart."""

    bundle: str | None = None  # the bundle folder chosen on the settings screen
    overlay_opacity: float = 0.6
    show_overlay: bool = True
    # Retention of derived data (reports) of kiosk studies: None = keep forever.
    retention_days: float | None = None
    retention_count: int | None = None

    @classmethod
    def load(cls, folder: str | Path) -> AppSettings:
        """Read ``folder/settings.json``; a missing or damaged file gives the defaults (logged)."""
        path = Path(folder) / SETTINGS_NAME
        if not path.is_file():
            return cls()
        try:
            data: Any = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            logger.warning("settings %s cannot be read (%s); using the defaults", path, exc)
            return cls()
        if not isinstance(data, dict):
            logger.warning("settings %s hold a JSON %s, not an object; using the defaults", path, type(data))
            return cls()
        known = {f.name for f in fields(cls)}
        settings = cls(**{k: v for k, v in data.items() if k in known})
        settings.overlay_opacity = min(1.0, max(0.0, float(settings.overlay_opacity)))
        settings.retention_days = _positive_or_none(settings.retention_days, float, path)
        settings.retention_count = _positive_or_none(settings.retention_count, int, path)
        return settings

    def save(self, folder: str | Path) -> Path:
        return write_atomic(Path(folder) / SETTINGS_NAME, json.dumps(asdict(self), indent=2).encode("utf-8"))


def _positive_or_none(value: Any, kind: type, path: Path) -> Any:
    """A retention limit from the settings file: a positive number, or None (keep everything)."""
    if value is None:
        return None
    try:
        number = kind(value)
    except (TypeError, ValueError):
        logger.warning("settings %s: retention %r is not a number; keeping everything", path, value)
        return None
    return number if number > 0 else None
