"""The Backend interface: one opened model file, called with the canonical batch.

Callers always hand a backend the canonical tensor, ``(N, 3, H, W)`` float32 NCHW preprocessed
with the bundle's spec, and always get back ``{"probabilities": (N, L) float32, "feature_map":
(N, C, h, w) float32 NCHW}``, whatever the file wants: NHWC layouts, int8/uint8/float16 tensors
(:mod:`cxr_core.runtime.tensors`), a fixed batch of 1, outputs whose names and order differ per
file (:mod:`cxr_core.runtime.signature`).
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cxr_core.runtime.errors import BackendClosedError, BatchShapeError, ModelFileError
from cxr_core.runtime.signature import ModelSignature
from cxr_core.runtime.tensors import from_runtime, to_runtime


class Backend(ABC):
    """One opened model file. Call it with a canonical batch; it adapts the tensors to the file.

    Subclasses open the runtime, set :attr:`signature` (specs refined with the runtime's own
    report, ``key`` = how the runtime addresses each tensor) and :attr:`fixed_batch` (an int when
    the file only takes that batch size), and implement :meth:`_run`.
    """

    runtime: str
    model_name: str
    threads: int
    input_size: int
    path: Path
    signature: ModelSignature
    fixed_batch: int | None = None
    load_ms: float = 0.0
    _closed: bool = False

    def __init__(self, path: str | Path, signature: ModelSignature, threads: int) -> None:
        self.path = Path(path)
        self.signature = signature
        self.model_name = signature.name
        self.threads = threads
        self.input_size = signature.input_size
        self._lock = threading.Lock()
        if not self.path.is_file():
            raise ModelFileError(f"model file {self.path} does not exist; expected a {signature.format} file")

    @property
    def input_channels(self) -> int:
        """C of the canonical NCHW batch: 3 for the classifiers, 1 for the gate's autoencoder."""
        shape = self.signature.input.shape
        channels = shape[3] if self.signature.input.layout == "NHWC" else shape[1]
        return 3 if channels is None else int(channels)

    @property
    def format(self) -> str:
        return self.signature.format

    @abstractmethod
    def _run(self, batch: NDArray[Any]) -> dict[str, NDArray[Any]]:
        """Raw outputs by role for a runtime-ready batch (layout and dtype already adapted)."""

    def close(self) -> None:
        """Release the runtime's resources; the backend cannot be called afterwards."""
        self._closed = True

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(model={self.model_name!r}, runtime={self.runtime!r}, "
            f"threads={self.threads}, path={str(self.path)!r})"
        )

    def __call__(self, batch: NDArray[np.float32]) -> dict[str, NDArray[np.float32]]:
        """``batch`` (N, 3, H, W) float32 NCHW -> ``probabilities`` (N, L), ``feature_map`` (N, C, h, w)."""
        if self._closed:
            raise BackendClosedError(
                f"model {self.model_name!r} ({self.path}) was closed; open it again to run it"
            )
        batch = self._check_batch(batch)
        ready = to_runtime(batch, self.signature.input)
        chunk = self.fixed_batch or len(ready)
        parts: dict[str, list[NDArray[np.float32]]] = {role: [] for role in self.signature.outputs}
        with self._lock:
            for start in range(0, len(ready), chunk):
                piece = ready[start : start + chunk]
                count = len(piece)
                if count < chunk:
                    pad = np.zeros((chunk - count, *piece.shape[1:]), dtype=piece.dtype)
                    piece = np.concatenate([piece, pad])
                raw = self._run(piece)
                for role, spec in self.signature.outputs.items():
                    parts[role].append(from_runtime(raw[role][:count], spec))
        return {role: np.concatenate(arrays) for role, arrays in parts.items()}

    def _check_batch(self, batch: NDArray[Any]) -> NDArray[np.float32]:
        array = np.asarray(batch)
        size = self.input_size
        channels = self.input_channels
        if (
            array.ndim != 4
            or array.shape[1] != channels
            or array.shape[2:] != (size, size)
            or len(array) == 0
        ):
            raise BatchShapeError(
                f"model {self.model_name!r} ({self.path.name}) got a batch of shape {array.shape}; expected "
                f"(N, {channels}, {size}, {size}) float32 NCHW with N >= 1, preprocessed with the "
                "bundle's spec"
            )
        if not np.issubdtype(array.dtype, np.floating):
            raise BatchShapeError(
                f"model {self.model_name!r} got a {array.dtype} batch; expected float32 preprocessed tensors"
            )
        return np.ascontiguousarray(array, dtype=np.float32)


class Stopwatch:
    """Milliseconds since construction (load time of a backend)."""

    def __init__(self) -> None:
        self._start = time.perf_counter()

    def ms(self) -> float:
        return (time.perf_counter() - self._start) * 1000.0
