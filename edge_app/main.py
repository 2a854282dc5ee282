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
from pathlib import Path
from typing import TYPE_CHECKING

from cxr_core.cli_common import EXIT_OK, error_exit, optional_dependencies
from cxr_core.errors import CxrEdgeError
from cxr_core.optional import require

if TYPE_CHECKING:
    from edge_app.options import AppOptions

_T0 = time.perf_counter()


def configure_kivy(kiosk: bool, size: tuple[int, int] | None) -> None:
    """Window settings that must be in place before the window exists."""
    os.environ.setdefault("KIVY_NO_ARGS", "1")
    os.environ.setdefault("KIVY_LOG_MODE", "PYTHON")  # one logging set-up: ours (no duplicate lines)
    Config = require("kivy.config", extra="app", purpose="cxr-app (the Kivy user interface)").Config

    if kiosk:
        Config.set("graphics", "fullscreen", "auto")
        Config.set("graphics", "show_cursor", "0")
        Config.set("kivy", "exit_on_escape", "0")
    if size is not None:
        Config.set("graphics", "width", str(size[0]))
        Config.set("graphics", "height", str(size[1]))
    Config.set("input", "mouse", "mouse,multitouch_on_demand")  # no red dots on right click


def kiosk_status(options: AppOptions) -> int:
    """``cxr-app --kiosk-status``: the study log's health, read without Kivy (works while the app runs)."""
    import json

    from edge_app.storage import default_data_dir
    from edge_app.studylog import with_log

    data_dir = options.data_dir or default_data_dir()
    try:
        health = with_log(data_dir, lambda log: log.health())
    except CxrEdgeError as exc:
        return error_exit("cxr-app", exc)
    if options.status_json:
        print(json.dumps({"data_dir": str(data_dir), **health.to_dict()}, indent=1))
    else:
        print(f"Study log: {Path(data_dir) / 'studies.sqlite'}")
        print("\n".join(health.lines()))
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    from edge_app.options import parse_args

    options = parse_args(argv)
    if options.kiosk_status:
        return kiosk_status(options)
    level = logging.INFO if options.progress else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("PIL").setLevel(logging.WARNING)
    try:
        with optional_dependencies("cxr-app", extra="app"):
            configure_kivy(options.kiosk, options.size)
            from edge_app.app import CxrEdgeApp

            app = CxrEdgeApp(options=options, started_at=_T0)
            app.install_stop_signal()  # the process's own SIGTERM; never in a test driving the app in-process
            app.run()
    except CxrEdgeError as exc:  # the app shows refusals on screen; this is what escapes it
        return error_exit("cxr-app", exc)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
