"""Every error the project raises on purpose is a CxrEdgeError (convention 8), checked on the source.

The packages are parsed, not imported (no torch, Kivy or TensorFlow needed), so the check runs on
any install. A handful of real raises are then triggered to show the classes keep their builtin
bases: ``except ValueError`` / ``except KeyError`` callers keep working.
"""

from __future__ import annotations

import ast
import builtins
from pathlib import Path

import pytest

from cxr_core.errors import CxrEdgeError

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("cxr_core", "training", "quantize", "edge_app", "benchmarks", "cxr_demo", "tools")

#: Builtin exceptions that a deliberate error must not be raised as directly. IndexError (the
#: sequence protocol of ``__getitem__``), NotImplementedError, StopIteration and SystemExit keep
#: their builtin meaning and are not listed.
BANNED = {
    "Exception",
    "ValueError",
    "RuntimeError",
    "TypeError",
    "KeyError",
    "LookupError",
    "OSError",
    "FileNotFoundError",
    "FileExistsError",
    "ImportError",
    "ModuleNotFoundError",
    "FloatingPointError",
    "TimeoutError",
    "AssertionError",
}


def _sources() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py"))


def _raised_name(node: ast.Raise) -> str | None:
    exc = node.exc
    target = exc.func if isinstance(exc, ast.Call) else exc
    return target.id if isinstance(target, ast.Name) else None


def builtin_raises(path: Path) -> list[tuple[int, str]]:
    """``(line, name)`` of every ``raise <banned builtin>`` in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            name = _raised_name(node)
            if name in BANNED:
                found.append((node.lineno, name))
    return sorted(found)


def test_the_scan_finds_a_builtin_raise(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "def f(x):\n"
        "    if x:\n"
        "        raise ValueError(f'x={x}')\n"
        "    raise KeyError\n"
        "def g():\n"
        "    raise IndexError('protocol')\n"
    )
    assert builtin_raises(sample) == [(3, "ValueError"), (4, "KeyError")]


def test_no_builtin_raise_anywhere() -> None:
    offenders = []
    for path in _sources():
        relative = path.relative_to(REPO).as_posix()
        offenders += [f"{relative}:{line}: raise {name}" for line, name in builtin_raises(path)]
    assert offenders == [], (
        "raise a CxrEdgeError subclass (which may also inherit the builtin) instead of:\n"
        + "\n".join(offenders)
    )


def test_exception_classes_derive_from_cxr_edge_error() -> None:
    """A class with a builtin exception base must also name a project error base (CxrEdgeError, ...)."""
    builtin_exceptions = {
        name
        for name in dir(builtins)
        if isinstance(getattr(builtins, name), type) and issubclass(getattr(builtins, name), BaseException)
    }
    offenders = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ClassDef):
                continue
            bases = [b.id if isinstance(b, ast.Name) else ast.unparse(b) for b in node.bases]
            if bases and all(b in builtin_exceptions for b in bases) and node.name != "CxrEdgeError":
                offenders.append(
                    f"{path.relative_to(REPO)}:{node.lineno}: class {node.name}({', '.join(bases)})"
                )
    assert offenders == [], "\n".join(offenders)


# ----------------------------------------------------------------------------- real raises


def test_score_checks_raise_a_value_error_that_is_a_cxr_edge_error() -> None:
    from cxr_core.calibrate import youden_operating_point
    from cxr_core.errors import ScoreInputError

    with pytest.raises(
        ScoreInputError, match=r"y_true has 3 values and y_score 2; expected the same length"
    ) as info:
        youden_operating_point([0, 1, 1], [0.2, 0.8])
    assert isinstance(info.value, ValueError) and isinstance(info.value, CxrEdgeError)


def test_unknown_label_set_is_a_key_error_and_a_cxr_edge_error() -> None:
    from cxr_core.labels import UnknownLabelError, get_label_set

    with pytest.raises(KeyError, match="unknown label set 'nope'; expected one of") as info:
        get_label_set("nope")
    assert isinstance(info.value, UnknownLabelError) and isinstance(info.value, CxrEdgeError)


def test_preprocess_of_no_images_names_what_was_expected() -> None:
    from cxr_core.errors import PreprocessInputError
    from cxr_core.preprocess import PreprocessSpec, preprocess_batch

    with pytest.raises(PreprocessInputError, match="got no images; expected at least one"):
        preprocess_batch([], PreprocessSpec())


def test_cam_class_index_out_of_range_is_an_index_error() -> None:
    import numpy as np

    from cxr_core.cam import CamIndexError, class_activation_map

    with pytest.raises(IndexError, match=r"class index 5 is out of range; expected 0 to 1") as info:
        class_activation_map(np.zeros((3, 2, 2)), np.zeros((2, 3)), 5)
    assert isinstance(info.value, CamIndexError) and isinstance(info.value, CxrEdgeError)


def test_timing_plan_refuses_zero_runs() -> None:
    from benchmarks.latency import LatencyError, TimingPlan

    with pytest.raises(ValueError, match=r"runs=0; expected an integer from 1 to 1000000") as info:
        TimingPlan(runs=0)
    assert isinstance(info.value, LatencyError) and isinstance(info.value, CxrEdgeError)


def test_unknown_split_is_a_key_error_and_a_dataset_option_error() -> None:
    from training.data.records import DatasetOptionError, UnknownSplitError

    assert issubclass(UnknownSplitError, KeyError) and issubclass(UnknownSplitError, DatasetOptionError)
    assert issubclass(DatasetOptionError, ValueError) and issubclass(DatasetOptionError, CxrEdgeError)


def test_synthetic_option_out_of_range() -> None:
    from training.data.synthetic import generate_chestxray14
    from training.data.synthetic_labels import SyntheticOptionError

    with pytest.raises(SyntheticOptionError, match=r"n_images=0; expected at least 1"):
        generate_chestxray14("/nonexistent-never-written", n_images=0)


def test_export_error_is_one_class_for_both_modules() -> None:
    pytest.importorskip("torch")
    from quantize import onnx_export, pipeline

    assert pipeline.ExportError is onnx_export.ExportError
    assert issubclass(onnx_export.ExportError, CxrEdgeError) and issubclass(
        onnx_export.ExportError, RuntimeError
    )
