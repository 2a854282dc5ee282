"""Import optional dependencies where they are used, with an install hint when missing.

Nothing is ever installed at run time (ARCHITECTURE.md, convention 7).
"""

from __future__ import annotations

import importlib
from types import ModuleType

from cxr_core.errors import MissingDependencyError


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra that provides it.

    >>> np = require("numpy", extra="core", purpose="arrays")
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{purpose} needs the Python package '{module.split('.')[0]}', which is not installed "
            f"({exc}). Install it with: pip install 'cxr-edge[{extra}]'"
        ) from exc
