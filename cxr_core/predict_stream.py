"""The JSON Lines stream of ``cxr-predict --jsonl OUT``: one line per image, written as it finishes.

Each line is one JSON object with a ``record`` field:

* ``run`` (first line): tool, version, disclaimer, bundle, architecture, model, runtime, threads,
  load_ms, labels (the header fields of ``predictions.json``);
* ``result``: one scored image, the fields of a ``predictions.json`` result;
* ``failure``: one file that was not scored: file, error, reasons;
* ``summary`` (last line): scored, failed, complete (``true`` when every input was processed,
  ``false`` when the run was interrupted, e.g. Ctrl-C).

Every line is flushed and fsynced before the next image starts, so a crash, ``kill -9`` or a power
cut keeps every finished image; a stream without a ``summary`` line is incomplete, and its last
line may be cut off (:func:`read_stream` ignores a last line that is not valid JSON).
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from cxr_core.errors import CxrEdgeError


class StreamFormatError(CxrEdgeError, ValueError):
    """A JSON Lines stream is not what ``cxr-predict --jsonl`` writes."""


class JsonlWriter:
    """Append one JSON object per line to ``path`` (``-``: standard output), durable line by line."""

    def __init__(self, target: str) -> None:
        self.target = target
        if target == "-":
            self._handle: IO[str] = sys.stdout
            self._owned = False
        else:
            path = Path(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = path.open("w", encoding="utf-8")
            self._owned = True

    def write(self, record: str, body: dict[str, Any]) -> None:
        line = json.dumps({"record": record, **body}, separators=(",", ":"), allow_nan=False)
        self._handle.write(line + "\n")
        self._handle.flush()
        if self._owned:
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        if self._owned and not self._handle.closed:
            self._handle.close()


@dataclass
class Stream:
    """A stream read back: the run header, results, failures, and the summary (None if cut short)."""

    run: dict[str, Any] | None = None
    results: list[dict[str, Any]] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None

    @property
    def complete(self) -> bool:
        return bool(self.summary and self.summary.get("complete"))


def read_stream(path: str | Path) -> Stream:
    """Read a ``--jsonl`` file; a last line cut off by a crash is ignored, any other bad line is an error."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    stream = Stream()
    for number, line in enumerate(lines, 1):
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            if number == len(lines):
                break  # the line being written when the process died
            raise StreamFormatError(
                f"{path}: line {number} is not JSON ({exc}); expected one object a line"
            ) from exc
        kind = obj.pop("record", None) if isinstance(obj, dict) else None
        if kind == "run":
            stream.run = obj
        elif kind == "result":
            stream.results.append(obj)
        elif kind == "failure":
            stream.failures.append(obj)
        elif kind == "summary":
            stream.summary = obj
        else:
            raise StreamFormatError(
                f"{path}: line {number} has record {kind!r}; expected run, result, failure or summary"
            )
    return stream
