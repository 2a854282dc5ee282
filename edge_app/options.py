"""Command-line options of ``cxr-app``, parsed before Kivy is imported (Kivy reads its config at import).

Kept free of Kivy so the flags can be checked (and tested) without a window. The parsed
:class:`AppOptions` is handed to :class:`edge_app.app.CxrEdgeApp`.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path

from cxr_core.cli_common import (
    EXIT_OK,
    EXIT_USAGE,
    add_progress_flag,
    add_version,
    exit_codes_epilog,
    max_threads,
)
from edge_app.watch import DEFAULT_SETTLE_S

#: Environment variable naming the model bundle folder (overridden by ``--bundle``).
BUNDLE_ENV = "CXR_EDGE_BUNDLE"
#: Environment variable overriding the app's data folder (reports, settings, bundles/).
DATA_DIR_ENV = "CXR_EDGE_DATA_DIR"
#: Environment variable naming the watch folder (overridden by ``--watch``). The Pi kiosk's unit
#: passes the folder this way so that a name with spaces stays one path.
WATCH_ENV = "CXR_EDGE_WATCH"
#: Seconds without a touch after which a kiosk goes back to its start screen.
DEFAULT_IDLE_RESET_S = 120.0
#: Seconds between two looks at the watch folder.
DEFAULT_WATCH_INTERVAL_S = 1.0


@dataclass(frozen=True)
class AppOptions:
    """Everything the app needs from its command line and environment."""

    bundle: Path | None = None
    data_dir: Path | None = None
    kiosk: bool = False
    watch: Path | None = None
    watch_interval_s: float = DEFAULT_WATCH_INTERVAL_S
    watch_settle_s: float = DEFAULT_SETTLE_S
    idle_reset_s: float | None = None
    open_image: Path | None = None
    runtime: str | None = None
    model: str | None = None
    threads: int | None = None
    size: tuple[int, int] | None = None
    exit_after_result: bool = False
    progress: bool = True  # INFO log lines on the console (loading, each result)
    kiosk_status: bool = False  # print the study log's health and exit (no window)
    status_json: bool = False
    allow_untrusted: bool = False  # load an unsigned / untrusted bundle (shown in the header and reports)

    @property
    def idle_reset(self) -> float | None:
        """Seconds of inactivity before a reset to the start screen (kiosks only, unless given)."""
        if self.idle_reset_s is not None:
            return self.idle_reset_s if self.idle_reset_s > 0 else None
        return DEFAULT_IDLE_RESET_S if self.kiosk else None


def _window_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        message = f"window size {text!r} is not WIDTHxHEIGHT (e.g. 1280x800)"
        raise argparse.ArgumentTypeError(message) from None
    if width < 200 or height < 200:
        raise argparse.ArgumentTypeError(f"window size {text!r} is too small; expected at least 200x200")
    return width, height


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative; expected seconds >= 0 (0 turns it off)")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxr-app",
        description="Chest X-ray triage app (decision support only, not a diagnosis).",
        epilog=exit_codes_epilog(
            {
                EXIT_OK: "the app was closed (or --exit-after-result printed its result)",
                EXIT_USAGE: "usage error, or a missing optional dependency (Kivy: the app extra)",
            }
        ),
    )
    add_version(parser)
    parser.add_argument("image", nargs="?", type=Path, help="an image to open at start (PNG, JPEG or DICOM)")
    parser.add_argument(
        "--bundle",
        type=Path,
        help=f"model bundle folder (default: ${BUNDLE_ENV}, "
        "the one chosen in the settings, or the first one under <data dir>/bundles)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help=f"folder for settings, reports and bundles/ "
        f"(default: ${DATA_DIR_ENV} or the platform's app data folder)",
    )
    parser.add_argument(
        "--kiosk",
        action="store_true",
        help="fullscreen, no cursor, large touch targets, reset after inactivity",
    )
    parser.add_argument(
        "--watch",
        type=Path,
        metavar="DIR",
        help=f"process image files that appear in DIR (e.g. a USB drive mount); default ${WATCH_ENV}",
    )
    parser.add_argument(
        "--watch-interval",
        type=_positive_float,
        default=DEFAULT_WATCH_INTERVAL_S,
        metavar="S",
        help="seconds between two looks at the watch folder (default 1)",
    )
    parser.add_argument(
        "--watch-settle",
        type=_positive_float,
        default=DEFAULT_SETTLE_S,
        metavar="S",
        help=f"seconds a new file must keep its size before it is read (default {DEFAULT_SETTLE_S:g})",
    )
    parser.add_argument(
        "--idle-reset",
        type=_positive_float,
        metavar="S",
        help=f"seconds without a touch before going back to the start screen "
        f"(default {DEFAULT_IDLE_RESET_S:g} in kiosk mode, off otherwise; 0 = off)",
    )
    parser.add_argument(
        "--runtime", help="inference runtime (onnxruntime, litert); default: the best installed"
    )
    parser.add_argument("--model", help="model entry of the bundle (e.g. onnx-int8); default: recommended")
    parser.add_argument("--threads", type=int, help="inference threads (default: physical cores, max 4)")
    parser.add_argument("--size", type=_window_size, metavar="WxH", help="window size, e.g. 1280x800")
    parser.add_argument(
        "--exit-after-result",
        action="store_true",
        help="quit after the first result and print its timings as JSON (cold-start measurement)",
    )
    parser.add_argument(
        "--kiosk-status",
        action="store_true",
        help="print the kiosk's queue, last study and failing file from the study log, and exit "
        "(no window; safe while the app runs)",
    )
    parser.add_argument("--json", action="store_true", help="with --kiosk-status: print JSON")
    parser.add_argument(
        "--allow-untrusted",
        action="store_true",
        help="load a bundle that is unsigned or not signed by a trusted key; the header and every report "
        "say so (also a setting: allow_untrusted_bundles in settings.json)",
    )
    add_progress_flag(parser, default=True, help="INFO log lines on the console (loading, each result)")
    return parser


def parse_args(argv: list[str] | None = None, environ: dict[str, str] | None = None) -> AppOptions:
    """Parse ``argv`` (default ``sys.argv[1:]``) and the environment into :class:`AppOptions`."""
    env = os.environ if environ is None else environ
    args = build_parser().parse_args(argv)
    if args.watch is None and env.get(WATCH_ENV):
        args.watch = Path(env[WATCH_ENV])
    if args.watch is not None and args.watch.exists() and not args.watch.is_dir():
        build_parser().error(
            f"--watch {args.watch}: is a file; expected the folder to watch for images "
            "(it may be missing until a USB drive is plugged in)"
        )
    top = max_threads()
    if args.threads is not None and not 1 <= args.threads <= top:
        build_parser().error(
            f"--threads {args.threads}: expected a number of threads from 1 to {top} "
            "(twice the CPUs here, at most 64)"
        )
    bundle = args.bundle or (Path(env[BUNDLE_ENV]) if env.get(BUNDLE_ENV) else None)
    data_dir = args.data_dir or (Path(env[DATA_DIR_ENV]) if env.get(DATA_DIR_ENV) else None)
    return AppOptions(
        bundle=bundle,
        data_dir=data_dir,
        kiosk=args.kiosk,
        watch=args.watch,
        watch_interval_s=args.watch_interval,
        watch_settle_s=args.watch_settle,
        idle_reset_s=args.idle_reset,
        open_image=args.image,
        runtime=args.runtime,
        model=args.model,
        threads=args.threads,
        size=args.size,
        exit_after_result=args.exit_after_result,
        progress=args.progress,
        kiosk_status=args.kiosk_status,
        status_json=args.json,
        allow_untrusted=args.allow_untrusted,
    )
