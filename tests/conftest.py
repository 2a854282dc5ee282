"""Suite-wide fixtures: tiny checkpoints, calibration PNGs and tiny bundles (see bundle_fixtures)."""

from tests.bundle_fixtures import (
    bundle_copy,
    calibration_dir,
    checkpoint_factory,
    session_bundle,
    session_bundle_all_formats,
)

__all__ = [
    "bundle_copy",
    "calibration_dir",
    "checkpoint_factory",
    "session_bundle",
    "session_bundle_all_formats",
]
