"""Atomic file writes and the app's small persistent settings (``settings.json`` in the data folder).

Every file the app writes goes through :func:`write_atomic`: a temporary file in the destination
folder, flushed and fsynced, then ``os.replace`` -- a kiosk losing power mid-write leaves either
the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

SETTINGS_NAME = "settings.json"


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
    #: Load bundles that are unsigned or signed by a key not in the trusted list (marked everywhere).
    allow_untrusted_bundles: bool = False

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
        return settings

    def save(self, folder: str | Path) -> Path:
        return write_atomic(Path(folder) / SETTINGS_NAME, json.dumps(asdict(self), indent=2).encode("utf-8"))
