"""What every cxr-edge command line shares: ``--version``, the progress flag, exit codes, error lines.

The commands are ``cxr-synth``, ``cxr-train``, ``cxr-demo``, ``cxr-export``, ``cxr-predict``,
``cxr-app`` and ``edge-bench``. Each one

* prints ``<prog> <version>`` for ``--version`` (:func:`add_version`; the version of the installed
  distribution, or :data:`cxr_core.__version__` in a source tree that is not installed);
* takes ``--progress`` / ``--no-progress`` (:func:`add_progress_flag`), keeping the default it had;
* lists its exit codes in ``--help`` (:func:`exit_codes_epilog`). The convention:

  ====  ==========================================================================================
  0     everything asked for was done
  1     partly done: some inputs or formats failed or were refused, or a quality gate tripped
  2     stopped: a usage error (argparse), an input, configuration or bundle that is refused,
        or a missing optional dependency (the message names the ``pip install`` extra)
  3     command-specific (``cxr-export``: the parity gate stopped the bundle from being published;
        ``edge-bench``: a format could not be measured)
  4     internal error: an unexpected exception (a bug), reported with its traceback; commands that
        process inputs one by one (``cxr-predict``) record it as that input's failure, finish the
        others and then exit 4
  ====  ==========================================================================================

  A command that does not list 4 ends an unexpected error with Python's traceback and exit status 1.
* reports a :class:`~cxr_core.errors.CxrEdgeError` as one line on stderr,
  ``<prog>: error: <message>``, never as a traceback (:func:`error_exit`).

This module is torch-free and imports nothing heavy: it runs before any optional dependency loads.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from typing import TextIO

from cxr_core.errors import CxrEdgeError, MissingDependencyError
from cxr_core.optional import install_hint

DISTRIBUTION = "cxr-edge"

#: Exit statuses shared by every command; each lists its own wording (and any 3) in ``--help``.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 4

#: Upper bounds for size flags, so a typo (``--threads 20000``, ``--batch 100000``) is refused clearly.
MAX_BATCH = 256


def max_threads() -> int:
    """The most threads a command accepts: twice the CPUs here, at most 64."""
    import os

    return max(1, min(64, 2 * (os.cpu_count() or 1)))


def bounded_int(what: str, maximum: int | Callable[[], int], minimum: int = 1) -> Callable[[str], int]:
    """An argparse ``type`` for an integer in ``[minimum, maximum]`` with a message naming the limit."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer; expected {what}") from None
        top = maximum() if callable(maximum) else maximum
        if not minimum <= value <= top:
            raise argparse.ArgumentTypeError(
                f"{value} is outside {minimum}..{top}; expected {what} (the limit on this machine is {top})"
            )
        return value

    return parse


def bounded_float(what: str, minimum: float, maximum: float) -> Callable[[str], float]:
    """An argparse ``type`` for a finite number in ``[minimum, maximum]`` (NaN and infinities refused),
    with a message naming the value received and the allowed range."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a number; expected {what} from {minimum:g} to {maximum:g}"
            ) from None
        if not math.isfinite(value) or not minimum <= value <= maximum:
            problem = "is outside" if math.isfinite(value) else "is not a finite number, so not within"
            raise argparse.ArgumentTypeError(
                f"{text!r} {problem} {minimum:g}..{maximum:g}; "
                f"expected {what} from {minimum:g} to {maximum:g}"
            )
        return value

    return parse


@lru_cache(maxsize=1)
def version() -> str:
    """The installed distribution's version, or :data:`cxr_core.__version__` when not installed."""
    from importlib import metadata

    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        from cxr_core import __version__

        return __version__


def add_version(parser: argparse.ArgumentParser) -> None:
    """``--version``: print ``<prog> <version>`` and exit 0."""
    parser.add_argument(
        "--version", action="version", version=f"{parser.prog} {version()}", help="print the version and exit"
    )


def add_progress_flag(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    *,
    default: bool,
    help: str = "progress bars / lines on stderr",
    hidden_aliases: Mapping[str, bool] | None = None,
) -> None:
    """``--progress`` / ``--no-progress`` into ``args.progress``, with ``default`` kept per command.

    ``hidden_aliases`` maps older spellings (not shown in ``--help``) to the value they set, e.g.
    ``{"--quiet": False}``, so existing scripts and documentation keep working.
    """
    parser.add_argument(
        "--progress",
        dest="progress",
        action=argparse.BooleanOptionalAction,
        default=default,
        help=f"{help} (default: {'on' if default else 'off'})",
    )
    for flag, value in (hidden_aliases or {}).items():
        parser.add_argument(
            flag, dest="progress", action="store_true" if value else "store_false", help=argparse.SUPPRESS
        )


def exit_codes_epilog(codes: Mapping[int, str]) -> str:
    """The ``--help`` epilog: ``exit codes: 0 ...; 1 ...; 2 ...`` in order (the command's own wording)."""
    listed = "; ".join(f"{code} {text}" for code, text in sorted(codes.items()))
    if EXIT_INTERNAL in codes:
        return f"exit codes: {listed}."
    return f"exit codes: {listed}; an unexpected error (a bug) prints a traceback and exits 1."


def error_exit(prog: str, exc: CxrEdgeError | str, stream: TextIO | None = None) -> int:
    """Print ``<prog>: error: <message>`` on stderr (no traceback); return :data:`EXIT_USAGE`."""
    print(f"{prog}: error: {exc}", file=stream or sys.stderr, flush=True)
    return EXIT_USAGE


#: Optional top-level modules and the extra of pyproject.toml that installs each.
OPTIONAL_MODULES: dict[str, str] = {
    "torch": "train",
    "torchvision": "train",
    "sklearn": "train",
    "matplotlib": "train",
    "tqdm": "train",
    "yaml": "train",
    "onnx": "export",
    "tensorflow": "export",
    "onnx2tf": "export",
    "onnxruntime": "runtime",
    "ai_edge_litert": "runtime",
    "pydicom": "dicom",
    "kivy": "app",
}


@contextmanager
def optional_dependencies(purpose: str, extra: str | None = None) -> Iterator[None]:
    """Turn an ImportError of an optional dependency into :class:`MissingDependencyError`.

    For the plain ``import torch`` at the top of a training module, reached from a command line:
    the error then names the extra to install (``extra``, or the one in :data:`OPTIONAL_MODULES`)
    instead of ending in a traceback. A missing module that is not optional is re-raised unchanged.
    """
    try:
        yield
    except MissingDependencyError:
        raise
    except ImportError as exc:  # ModuleNotFoundError, or a partly installed package ("cannot import name")
        root = (exc.name or "").split(".")[0]
        if root not in OPTIONAL_MODULES:
            raise
        needed = extra or OPTIONAL_MODULES[root]
        raise MissingDependencyError(
            f"{purpose} needs the Python package '{root}', which is not installed ({exc}). "
            f"Install it with: {install_hint(needed)}"
        ) from exc
