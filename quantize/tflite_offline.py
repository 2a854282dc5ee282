"""A network guard for the TFLite conversion process: conversion must never touch the network.

onnx2tf fetches a sample-image file from GitHub when it does not find it in the working
directory (``calibration_image_sample_data_20x128x128x3_float32.npy``), even when calibration data
is given. The export writes that file itself; this guard makes sure nothing else slips through.
:func:`block_network` replaces the Python-level entry points every HTTP client goes through
(``socket.socket.connect`` / ``connect_ex``, ``socket.create_connection``, ``socket.getaddrinfo``)
with functions that record the attempt and raise :class:`NetworkBlockedError`; the conversion
child installs it before importing onnx2tf and fails when any attempt was recorded, even one that
the library caught and swallowed. Local ``AF_UNIX`` sockets stay allowed. Native code that opens
sockets without Python (none is used by the conversion) is outside its reach.
"""

from __future__ import annotations

import socket
from typing import Any

from cxr_core.errors import CxrEdgeError

#: Every blocked attempt, as ``"function(address)"``: checked after the conversion.
ATTEMPTS: list[str] = []

_ORIGINAL: dict[str, Any] = {}


class NetworkBlockedError(CxrEdgeError, OSError):
    """Something in the conversion process tried to reach the network, which the export forbids."""


def _refuse(what: str, address: Any) -> NetworkBlockedError:
    ATTEMPTS.append(f"{what}({address!r})")
    return NetworkBlockedError(
        f"network access blocked during TFLite conversion: {what}({address!r}); the conversion must run "
        "offline (a file it wanted to download must be provided locally)"
    )


def _is_local(sock: socket.socket) -> bool:
    return getattr(socket, "AF_UNIX", None) is not None and sock.family == socket.AF_UNIX


def _connect(self: socket.socket, address: Any) -> None:
    if _is_local(self):
        return _ORIGINAL["connect"](self, address)
    raise _refuse("socket.connect", address)


def _connect_ex(self: socket.socket, address: Any) -> int:
    if _is_local(self):
        return int(_ORIGINAL["connect_ex"](self, address))
    raise _refuse("socket.connect_ex", address)


def _create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
    raise _refuse("socket.create_connection", address)


def _getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
    raise _refuse("socket.getaddrinfo", (host, port))


def block_network() -> None:
    """Install the guard in this process (idempotent)."""
    if _ORIGINAL:
        return
    _ORIGINAL.update(
        connect=socket.socket.connect,
        connect_ex=socket.socket.connect_ex,
        create_connection=socket.create_connection,
        getaddrinfo=socket.getaddrinfo,
    )
    socket.socket.connect = _connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _connect_ex  # type: ignore[method-assign]
    socket.create_connection = _create_connection  # type: ignore[assignment]
    socket.getaddrinfo = _getaddrinfo  # type: ignore[assignment]


def unblock_network() -> None:
    """Restore the original socket functions (for tests that install the guard in-process)."""
    if not _ORIGINAL:
        return
    socket.socket.connect = _ORIGINAL["connect"]  # type: ignore[method-assign]
    socket.socket.connect_ex = _ORIGINAL["connect_ex"]  # type: ignore[method-assign]
    socket.create_connection = _ORIGINAL["create_connection"]
    socket.getaddrinfo = _ORIGINAL["getaddrinfo"]
    _ORIGINAL.clear()
