"""Settings of the app when it runs from a package that carries its own files (the Android APK).

``python -m edge_app.android.stage`` copies the public keys the builder chose into the app's source
folder as ``trusted-keys/<key id>.pub`` and writes a ``main.py`` that calls
:func:`use_packaged_trusted_keys` before the app starts. The bundle signature check
(:mod:`cxr_core.bundle.signing`) then reads that folder through ``$CXR_EDGE_TRUSTED_KEYS``: the same
code path as on a desktop, where the variable or ``~/.config/cxr-edge/trusted-keys`` names the folder.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cxr_core.bundle.signing import TRUSTED_KEYS_ENV

logger = logging.getLogger(__name__)

#: Folder, beside the packaged ``main.py``, that holds the public keys the package trusts.
PACKAGED_KEYS_DIR = "trusted-keys"


def use_packaged_trusted_keys(app_root: str | Path) -> Path | None:
    """Point ``$CXR_EDGE_TRUSTED_KEYS`` at ``app_root/trusted-keys`` when the package ships one.

    A value already in the environment wins (someone chose the folder on purpose). Returns the folder
    the signature check will use, or None when the package ships no keys (then the default folder).
    """
    folder = Path(app_root) / PACKAGED_KEYS_DIR
    chosen = os.environ.get(TRUSTED_KEYS_ENV)
    if chosen:
        logger.info("trusted keys: %s (from $%s)", chosen, TRUSTED_KEYS_ENV)
        return Path(chosen)
    if not folder.is_dir():
        logger.warning("no %s folder in %s: no bundle signature can be trusted", PACKAGED_KEYS_DIR, app_root)
        return None
    os.environ[TRUSTED_KEYS_ENV] = str(folder)
    logger.info("trusted keys: %s (%d shipped)", folder, len(list(folder.glob("*.pub"))))
    return folder
