"""The imaging modules import one way: imaging -> imaging_dicom -> imaging_common, never back."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import cxr_core

CORE = Path(cxr_core.__file__).parent


def imported_modules(path: Path) -> set[str]:
    """Every module named by an ``import`` or ``from ... import`` anywhere in ``path`` (lazy ones too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module is not None and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_imaging_dicom_does_not_import_imaging() -> None:
    names = imported_modules(CORE / "imaging_dicom.py")
    assert "cxr_core.imaging" not in names, f"imaging_dicom imports cxr_core.imaging: {sorted(names)}"
    assert "cxr_core.imaging_common" in names


def test_imaging_common_imports_neither_decoder() -> None:
    names = imported_modules(CORE / "imaging_common.py")
    assert not names & {"cxr_core.imaging", "cxr_core.imaging_dicom"}, sorted(names)


def test_imaging_imports_imaging_dicom_only_lazily() -> None:
    """The one allowed direction: imaging reaches imaging_dicom inside a function, for DICOM files."""
    tree = ast.parse((CORE / "imaging.py").read_text(encoding="utf-8"))
    top_level = {
        node.module for node in tree.body if isinstance(node, ast.ImportFrom) and node.module is not None
    }
    assert "cxr_core.imaging_dicom" not in top_level
    assert "cxr_core.imaging_dicom" in imported_modules(CORE / "imaging.py")


@pytest.mark.parametrize("module", ["cxr_core.imaging", "cxr_core.imaging_dicom", "cxr_core.imaging_common"])
def test_each_imaging_module_imports_first_in_a_fresh_interpreter(module: str) -> None:
    code = (
        f"import sys, {module}\n"
        "print(sorted(m for m in ('cxr_core.imaging', 'cxr_core.imaging_dicom') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = result.stdout.strip().splitlines()[-1]
    expected = {
        "cxr_core.imaging": "['cxr_core.imaging']",
        "cxr_core.imaging_dicom": "['cxr_core.imaging_dicom']",
        "cxr_core.imaging_common": "[]",
    }[module]
    assert loaded == expected, f"importing {module} loaded {loaded}"


def test_shared_names_are_the_same_objects_through_both_decoders() -> None:
    import cxr_core.imaging as imaging
    import cxr_core.imaging_common as common
    import cxr_core.imaging_dicom as dicom

    assert imaging.CorruptImageError is common.CorruptImageError is dicom.CorruptImageError
    assert imaging.DecodedImage is common.DecodedImage is dicom.DecodedImage
    assert imaging.check_dimensions is common.check_dimensions
