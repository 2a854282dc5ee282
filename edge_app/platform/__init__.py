"""Platform adapters: file picking, camera capture, packaged bundles, and the Android LiteRT backend.

:func:`get_adapter` returns the adapter for the running platform. The Android modules import
pyjnius only when used, so everything here imports on a desktop.
"""

from __future__ import annotations

from edge_app.platform.base import OnPicked, PickResult, PlatformAdapter


def get_adapter(platform: str | None = None) -> PlatformAdapter:
    """The adapter for ``platform`` (default: Kivy's ``kivy.utils.platform``)."""
    if platform is None:
        from kivy.utils import platform as kivy_platform

        platform = kivy_platform
    if platform == "android":
        from edge_app.platform.android import AndroidAdapter

        return AndroidAdapter()
    from edge_app.platform.desktop import DesktopAdapter

    return DesktopAdapter()


__all__ = ["OnPicked", "PickResult", "PlatformAdapter", "get_adapter"]
