"""Nothing phones home: switch off what third-party libraries would send or probe on the network.

Found by running the device path under ``strace -f -e trace=network`` (docs/runtime.md, "No
network"):

* **onnxruntime's telemetry.** The PyPI wheels of onnxruntime 1.32 are built with Microsoft's 1DS
  telemetry SDK (``core/platform/posix/telemetry_1ds.cc``, libcurl and sqlite linked in). Any
  process holding an ``InferenceSession`` resolves ``mobile.events.data.microsoft.com`` after about
  9 s and writes ``~/.cache/Microsoft/DeveloperTools/.onnxruntime/{deviceid,onnxruntime.db}``.
  ``onnxruntime.disable_telemetry_events()`` does not stop it. The library reads the environment
  variable ``ORT_DISABLE_TELEMETRY`` **when it is imported**: set to ``1`` before
  ``import onnxruntime`` there is no socket and no file; set later it has no effect. So
  :func:`disable_telemetry` runs when :mod:`cxr_core` is imported, before any onnxruntime import
  of this project, and warns when onnxruntime was imported earlier without it.
* **pydicom's import of requests.** ``import pydicom`` imports ``pydicom.data.download``, which
  tries ``import requests``; importing urllib3 opens an ``AF_INET6`` socket to probe IPv6 support.
  pydicom only needs requests to download its test files (it falls back to urllib), so
  :func:`import_offline` imports pydicom with ``requests`` marked unavailable.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
from collections.abc import Iterator
from types import ModuleType

logger = logging.getLogger(__name__)

#: Environment variables that turn a library's telemetry off (read at the library's import).
TELEMETRY_OFF: dict[str, str] = {"ORT_DISABLE_TELEMETRY": "1"}
#: Modules a dependency would import only for network features we never use.
NETWORK_ONLY_IMPORTS: dict[str, tuple[str, ...]] = {"pydicom": ("requests",)}

_warned = False


def disable_telemetry() -> None:
    """Set :data:`TELEMETRY_OFF` in this process's environment (inherited by child processes)."""
    global _warned
    late = [
        name
        for name, value in TELEMETRY_OFF.items()
        if os.environ.get(name) != value and "onnxruntime" in sys.modules
    ]
    os.environ.update(TELEMETRY_OFF)
    if late and not _warned:
        _warned = True
        logger.warning(
            "onnxruntime was imported before cxr_core without %s=1, so its telemetry may be on in this "
            "process; import cxr_core first or set the variable in the environment",
            late[0],
        )


@contextlib.contextmanager
def _unavailable(modules: tuple[str, ...]) -> Iterator[None]:
    blocked = [m for m in modules if m not in sys.modules]
    for name in blocked:
        sys.modules[name] = None  # type: ignore[assignment]  # makes `import name` raise ImportError
    try:
        yield
    finally:
        for name in blocked:
            if sys.modules.get(name, 0) is None:
                del sys.modules[name]


def import_offline(module: str) -> ModuleType:
    """Import ``module`` without the network-only modules it would pull in (:data:`NETWORK_ONLY_IMPORTS`)."""
    top = module.split(".")[0]
    if top in sys.modules or top not in NETWORK_ONLY_IMPORTS:
        return importlib.import_module(module)
    with _unavailable(NETWORK_ONLY_IMPORTS[top]):
        return importlib.import_module(module)
