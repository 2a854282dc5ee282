"""Signing helpers for the tests: a trusted key for the session, and re-signing an edited manifest."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from cxr_core.bundle.signing import (
    KEY_DIR_ENV,
    PRIVATE_KEY_NAME,
    TRUSTED_KEYS_ENV,
    generate_key,
    install_trusted,
    key_id,
    load_private,
    raw_public_of,
    sign_manifest,
)

#: Set while a test session's key is in use; a child test session reuses that key.
TEST_KEYS_ENV = "CXR_EDGE_TEST_KEYS"


@contextlib.contextmanager
def trusted_signing_key(folder: Path) -> Iterator[str]:
    """Create a key under ``folder``, trust it, point the environment at both; yield its key id.

    A child test session (the app's window tests run in one) inherits the parent's key through
    ``$CXR_EDGE_TEST_KEYS``, so the parent's bundles stay trusted there.
    """
    inherited = os.environ.get(TEST_KEYS_ENV)
    if inherited and Path(inherited, "keys", PRIVATE_KEY_NAME).is_file():
        yield key_id(raw_public_of(load_private(Path(inherited, "keys", PRIVATE_KEY_NAME))))
        return
    keys, trusted = folder / "keys", folder / "trusted-keys"
    saved = {name: os.environ.get(name) for name in (KEY_DIR_ENV, TRUSTED_KEYS_ENV, TEST_KEYS_ENV)}
    os.environ[KEY_DIR_ENV] = str(keys)
    os.environ[TRUSTED_KEYS_ENV] = str(trusted)
    os.environ[TEST_KEYS_ENV] = str(folder)
    try:
        private = generate_key(keys / PRIVATE_KEY_NAME)
        install_trusted(private.with_suffix(".pub"), trusted)
        yield key_id(raw_public_of(load_private(private)))
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def resign(bundle: Path) -> str:
    """Sign ``bundle``'s (deliberately edited) manifest again with the session's trusted key."""
    return sign_manifest(bundle)
