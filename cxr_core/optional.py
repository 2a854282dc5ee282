"""Import optional dependencies where they are used, with an install hint when missing.

Nothing is ever installed at run time (docs/architecture.md, "Conventions"). cxr-edge is not
published on a package index, so the hint installs the extra from a checkout or a built wheel.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from cxr_core.errors import MissingDependencyError

#: The optional-dependency groups declared in pyproject.toml.
EXTRAS = ("dicom", "train", "export", "runtime", "app", "pi", "dev")


def install_hint(extra: str) -> str:
    """The one wording of how to install ``extra``: from a cxr-edge checkout, or a wheel built from one."""
    return (
        f"pip install -e '.[{extra}]' in a cxr-edge checkout "
        f"(or pip install 'dist/cxr_edge-<version>-py3-none-any.whl[{extra}]' after python -m build)"
    )


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra that provides it.

    >>> np = require("numpy", extra="runtime", purpose="arrays")
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{purpose} needs the Python package '{module.split('.')[0]}', which is not installed "
            f"({exc}). Install it with: {install_hint(extra)}"
        ) from exc
