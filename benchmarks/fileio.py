"""Atomic writes of edge-bench's files, through :func:`cxr_core.atomic.atomic_write` (a temp file in
the target's folder, fsynced, then ``os.replace``; ordinary permissions): never a half-written file."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from cxr_core.atomic import atomic_write


def write_bytes_atomic(path: Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    atomic_write(path, lambda handle: handle.write(data))
    return path


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def json_safe(value: Any) -> Any:
    """``value`` with NaN / infinity replaced by None, so the file is strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def write_json_atomic(path: Path, data: Any) -> Path:
    """Write ``data`` as strict JSON (NaN -> null) to ``path`` atomically."""
    return write_text_atomic(path, json.dumps(json_safe(data), indent=1, allow_nan=False) + "\n")
