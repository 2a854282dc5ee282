"""Import pyjnius (Android only) with a message that says so, instead of a bare ImportError."""

from __future__ import annotations

import importlib
from types import ModuleType

from cxr_core.errors import MissingDependencyError


class AndroidOnlyError(MissingDependencyError):
    """Android-only code was used where pyjnius or the Android runtime is not available."""


def import_jnius(purpose: str) -> ModuleType:
    """``jnius`` (pyjnius), or :class:`AndroidOnlyError` explaining that ``purpose`` needs an Android app."""
    try:
        return importlib.import_module("jnius")
    except ImportError as exc:
        raise AndroidOnlyError(
            f"{purpose} runs only inside the Android app (it needs pyjnius and the Android runtime, "
            f"which the APK built from edge_app/android/buildozer.spec provides); here: {exc}. "
            "On a desktop or a Raspberry Pi the app uses cxr_core.runtime's backends instead."
        ) from exc
