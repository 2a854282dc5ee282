"""The errors ``tools/arm64-check`` raises on purpose (each names what it got and what it expected)."""

from __future__ import annotations

from cxr_core.errors import CxrEdgeError


class Arm64CheckError(CxrEdgeError, RuntimeError):
    """The arm64 check could not be set up or run (a missing host tool, a failed step)."""


class HostToolMissingError(Arm64CheckError):
    """A program the check needs on the host (qemu-aarch64-static, apt-get, dpkg-deb) is not installed."""


class DownloadError(Arm64CheckError):
    """Fetching Debian packages or aarch64 wheels from the package registries failed."""


class StepFailedError(Arm64CheckError):
    """A command of the check (on the host or under qemu) failed in a way that leaves nothing to compare."""
