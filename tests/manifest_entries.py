"""Typed model entries from hand-written manifest dicts (tests describe files before hashing them)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cxr_core.bundle import ModelEntry

UNHASHED = "0" * 64


def entry_of(data: Mapping[str, Any], file: str = "model") -> ModelEntry:
    """``ModelEntry.from_dict`` of ``data`` with a placeholder sha256 and file name when it has none."""
    return ModelEntry.from_dict({"sha256": UNHASHED, "file": file, **data}, "test entry")
