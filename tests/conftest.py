"""Suite-wide fixtures: tiny checkpoints, calibration PNGs and tiny bundles (see bundle_fixtures).

Every test runs with its own signing key and trusted-key folder (``$CXR_EDGE_KEY_DIR`` and
``$CXR_EDGE_TRUSTED_KEYS`` under the session's temp folder, set before any bundle is exported), so
the bundles cxr-export builds for the tests are signed by a trusted key, exactly as on a device
that trusts its exporter, and the user's own ~/.config/cxr-edge is never read or written.
"""

from collections.abc import Iterator

import pytest

from tests.bundle_fixtures import (
    bundle_copy,
    calibration_dir,
    checkpoint_factory,
    gated_bundle,
    session_bundle,
    session_bundle_all_formats,
)
from tests.signing import trusted_signing_key

__all__ = [
    "bundle_copy",
    "calibration_dir",
    "checkpoint_factory",
    "gated_bundle",
    "session_bundle",
    "session_bundle_all_formats",
    "suite_keys",
]


@pytest.fixture(scope="session", autouse=True)
def suite_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session's trusted signing key (its id); the environment points every CLI and library at it."""
    with trusted_signing_key(tmp_path_factory.mktemp("keys")) as key:
        yield key
