"""Text that reaches a terminal, a log or a clinician's screen: file names made safe to print.

A file name may hold a newline, a carriage return or an ANSI escape sequence (``ESC[2J`` clears a
terminal; a newline forges a second "scored" line). :func:`printable` escapes every character that
Python does not consider printable (control characters, separators other than the space, format
characters) as ``\\xNN`` / ``\\uNNNN``, and a backslash as ``\\\\`` so the escape is unambiguous.
Every message of the device path that names a file (CLI lines, error messages, log records) goes
through it; JSON output keeps the true name (JSON escapes control characters itself).
"""

from __future__ import annotations

from os import PathLike


def _escape(char: str) -> str:
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(value: str | PathLike[str] | object) -> str:
    """``value`` as text with non-printable characters escaped (``\\n`` -> ``\\x0a``, ESC -> ``\\x1b``)."""
    text = str(value)
    if text.isprintable() and "\\" not in text:
        return text
    return "".join("\\\\" if char == "\\" else char if char.isprintable() else _escape(char) for char in text)
