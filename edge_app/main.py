"""``cxr-app``: start the Kivy app (``cxr-app --help``).

Kivy reads its configuration when it is first imported, so the flags are parsed and the window
settings (fullscreen and no cursor for ``--kiosk``, a window size) are put into Kivy's Config
*before* any Kivy module that creates the window is imported. ``KIVY_NO_ARGS`` keeps Kivy from
reading our command line as its own.
"""

from __future__ import annotations

import logging
import os
import sys
import time

_T0 = time.perf_counter()


def configure_kivy(kiosk: bool, size: tuple[int, int] | None) -> None:
    """Window settings that must be in place before the window exists."""
    os.environ.setdefault("KIVY_NO_ARGS", "1")
    os.environ.setdefault("KIVY_LOG_MODE", "PYTHON")  # one logging set-up: ours (no duplicate lines)
    from kivy.config import Config

    if kiosk:
        Config.set("graphics", "fullscreen", "auto")
        Config.set("graphics", "show_cursor", "0")
        Config.set("kivy", "exit_on_escape", "0")
    if size is not None:
        Config.set("graphics", "width", str(size[0]))
        Config.set("graphics", "height", str(size[1]))
    Config.set("input", "mouse", "mouse,multitouch_on_demand")  # no red dots on right click


def main(argv: list[str] | None = None) -> int:
    from edge_app.options import parse_args

    options = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("PIL").setLevel(logging.WARNING)
    configure_kivy(options.kiosk, options.size)
    from edge_app.app import CxrEdgeApp

    CxrEdgeApp(options=options, started_at=_T0).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
