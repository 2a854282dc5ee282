"""Errors of the runtime layer: no runtime, an unknown one, a bad model file, a bad batch."""

from __future__ import annotations

from cxr_core.bundle.errors import BundleError
from cxr_core.errors import CxrEdgeError, MissingDependencyError


class RuntimeUnavailableError(MissingDependencyError):
    """No installed runtime can run the requested model; the message carries the pip command."""


class UnknownRuntimeError(CxrEdgeError, ValueError):
    """A runtime name that cxr-edge does not know (the message suggests the closest one)."""


class ModelFileError(BundleError):
    """A model file is missing or is not a valid model for the runtime that should run it."""


class ModelSignatureError(BundleError):
    """A model file's inputs/outputs (shape, dtype, scale/zero-point) disagree with its manifest entry."""


class BatchShapeError(CxrEdgeError, ValueError):
    """The batch handed to a backend is not (N, 3, H, W) at the model's input size."""


class BackendClosedError(CxrEdgeError, RuntimeError):
    """A backend was called after :meth:`~cxr_core.runtime.backend.Backend.close`."""


class ThreadCountError(CxrEdgeError, ValueError):
    """A thread count that is not a positive integer."""
