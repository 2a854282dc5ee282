"""Import optional dependencies where they are used, with an install hint when missing.

Nothing is ever installed at run time (ARCHITECTURE.md, convention 7). The extras are ``dicom``,
``train``, ``export``, ``runtime``, ``app``, ``pi`` and ``dev`` (pyproject.toml). cxr-edge is not on
PyPI, so the hint names both ways to get an extra: from a checkout, or from a built wheel.
"""

from __future__ import annotations

from types import ModuleType

from cxr_core.errors import MissingDependencyError

#: The optional-dependency groups declared in pyproject.toml.
EXTRAS = ("dicom", "train", "export", "runtime", "app", "pi", "dev")


def install_hint(extra: str) -> str:
    """The one wording of "how to install extra ``extra``" used in every message of cxr-edge."""
    return (
        f"pip install -e '.[{extra}]' in a cxr-edge checkout "
        f"(or pip install 'cxr-edge[{extra}]' from a built wheel)"
    )


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra that provides it.

    >>> np = require("numpy", extra="runtime", purpose="arrays")
    """
    from cxr_core.privacy import import_offline

    try:
        return import_offline(module)  # pydicom without requests (no network probe at import)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{purpose} needs the Python package '{module.split('.')[0]}', which is not installed "
            f"({exc}). Install it with: {install_hint(extra)}"
        ) from exc
