"""Errors of the bundle contract (reading, validating and verifying a model bundle)."""

from __future__ import annotations

from cxr_core.errors import CxrEdgeError


class BundleError(CxrEdgeError, ValueError):
    """A model bundle is missing, malformed, or of a format version this cxr-edge does not read."""


class BundleIntegrityError(BundleError):
    """A bundle file is missing or its sha256 differs from the manifest's (damaged or modified)."""
