"""The child edge-bench starts per (format, thread count): ``python -m benchmarks.worker TASK OUT``.

A fresh process per variant gives each format its own peak RSS and its own thread pools (a
previous session's spinning pool slows the next one, docs/toolchain-notes.md). The task is a JSON file, the
result is written atomically to ``OUT`` as JSON: ``{"status": "ok" | "error" | "unavailable",
"error": message or null, ...figures}``. Any failure inside becomes an error result, never a
traceback the parent has to parse; a crash that kills the process (e.g. a segfault in a runtime)
leaves no ``OUT`` and the parent reports the exit code and the end of stderr instead.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmarks.config import BenchConfigError
from benchmarks.fileio import write_json_atomic

logger = logging.getLogger(__name__)


def _is_unavailable(exc: BaseException) -> bool:
    """A missing runtime or optional package: a skipped row, not a broken one."""
    from cxr_core.errors import MissingDependencyError

    if isinstance(exc, MissingDependencyError | ImportError):
        return True
    try:
        from cxr_core.runtime import RuntimeUnavailableError
    except ImportError:
        return False
    return isinstance(exc, RuntimeUnavailableError)


def run_task(task: Mapping[str, Any]) -> dict[str, Any]:
    """Run one task dict and return its result dict (errors captured, see the module docstring)."""
    try:
        if task["kind"] == "torch":
            from benchmarks.torch_ref import measure_torch

            result = measure_torch(task)
        elif task["kind"] == "format":
            from benchmarks.measure import measure_format

            result = measure_format(task)
        elif task["kind"] == "peer":
            from benchmarks.peers import measure_peer

            result = measure_peer(task)
        else:
            raise BenchConfigError(
                f"unknown task kind {task['kind']!r}; expected 'format', 'torch' or 'peer'"
            )
        return {"status": "ok", "error": None, **result}
    except Exception as exc:  # every failure becomes a reported row (convention 3)
        logger.debug("task failed:\n%s", traceback.format_exc())
        status = "unavailable" if _is_unavailable(exc) else "error"
        return {"status": status, "error": f"{type(exc).__name__}: {exc}"}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the child: ``python -m benchmarks.worker TASK.json OUT.json``."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m benchmarks.worker TASK.json OUT.json", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    task = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    write_json_atomic(Path(args[1]), run_task(task))
    return 0


if __name__ == "__main__":
    sys.exit(main())
