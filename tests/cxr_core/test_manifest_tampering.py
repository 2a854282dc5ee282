"""Malformed manifests give a BundleError naming the field, never a raw traceback (issue 15, item 3).

A generated list of tamperings of a real exported manifest (delete each key, wrong types, NaN / inf /
negative numbers, huge lists, nested garbage), each re-signed with the suite's trusted key so the
manifest's own validation (not the signature) is what answers. Every one must either load or raise a
:class:`BundleError`; a ``TypeError``, ``AttributeError``, ``KeyError``, ... fails the test.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cxr_core.bundle import BundleError, load_bundle
from tests.signing import resign

Tamper = Callable[[dict[str, Any]], None]

#: Values of the wrong kind for any field.
GARBAGE: dict[str, Any] = {
    "none": None,
    "int": 7,
    "neg": -1,
    "nan": math.nan,
    "inf": math.inf,
    "text": "x",
    "list": [1, "a", None],
    "dict": {"a": {"b": [None]}},
    "bool": True,
}


def _delete(path: tuple[Any, ...]) -> Tamper:
    def tamper(manifest: dict[str, Any]) -> None:
        node = manifest
        for key in path[:-1]:
            node = node[key]
        del node[path[-1]]

    return tamper


def _set(path: tuple[Any, ...], value: Any) -> Tamper:
    def tamper(manifest: dict[str, Any]) -> None:
        node = manifest
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = copy.deepcopy(value)

    return tamper


def tamperings() -> list[tuple[str, Tamper]]:
    cases: list[tuple[str, Tamper]] = []
    top = ["format_version", "architecture", "labels", "preprocess", "models", "files"]
    top += ["operating_points", "golden", "cam", "recommended", "provenance"]
    for key in top:
        cases.append((f"delete {key}", _delete((key,))))
    for key in ("labels", "preprocess", "models", "files", "operating_points", "golden", "cam"):
        for kind in ("int", "text", "list", "dict", "nan"):
            cases.append((f"{key} = {kind}", _set((key,), GARBAGE[kind])))
    model = ("models", 0)
    for key in ("name", "file", "format", "sha256", "inputs", "outputs"):
        cases.append((f"delete models[0].{key}", _delete((*model, key))))
    for key in ("inputs", "golden_tolerance", "size_bytes", "opset", "precision", "runtime", "quantization"):
        for kind in ("int", "text", "dict", "neg"):
            cases.append((f"models[0].{key} = {kind}", _set((*model, key), GARBAGE[kind])))
    for kind in ("nan", "inf", "neg", "text"):
        tolerance = (*model, "golden_tolerance", "max_abs_dp")
        cases.append((f"golden_tolerance.max_abs_dp = {kind}", _set(tolerance, GARBAGE[kind])))
        cases.append((f"operating_points[0] = {kind}", _set(("operating_points", 0), GARBAGE[kind])))
        cases.append((f"preprocess.input_size = {kind}", _set(("preprocess", "input_size"), GARBAGE[kind])))
    for key in ("shape", "dtype", "layout", "quantization", "name"):
        cases.append((f"inputs[0].{key} = dict", _set((*model, "inputs", 0, key), GARBAGE["dict"])))
    cases.append(("inputs[0].shape huge", _set((*model, "inputs", 0, "shape"), list(range(100_000)))))
    cases.append(("inputs[0].shape negative", _set((*model, "inputs", 0, "shape"), [1, 3, -64, 64])))
    cases.append(("inputs[0] = text", _set((*model, "inputs", 0), "x")))
    cases.append(("models = [[]]", _set(("models",), [[]])))
    cases.append(("models = []", _set(("models",), [])))
    cases.append(("labels huge", _set(("labels",), [f"l{i}" for i in range(100_000)])))
    cases.append(("labels = [1, 2]", _set(("labels",), [1, 2])))
    cases.append(("labels = []", _set(("labels",), [])))
    cases.append(("files = {}", _set(("files",), {})))
    cases.append(("files entry = int", _set(("files", "golden.npz"), 5)))
    cases.append(("files entry sha = list", _set(("files", "golden.npz", "sha256"), [1])))
    cases.append(("files entry size = nan", _set(("files", "golden.npz", "size_bytes"), math.nan)))
    cases.append(("files key ../x", _set(("files", "../x"), {"sha256": "0" * 64})))
    cases.append(("golden.file = int", _set(("golden", "file"), 3)))
    cases.append(("golden.files = dict", _set(("golden", "files"), {"a": 1})))
    cases.append(("golden.images = nan", _set(("golden", "images"), math.nan)))
    cases.append(("cam.pooling = dict", _set(("cam", "pooling"), {"a": 1})))
    cases.append(("cam.file = list", _set(("cam", "file"), ["classifier.npz"])))
    cases.append(("recommended = list", _set(("recommended",), ["onnx"])))
    cases.append(("recommended.onnxruntime = dict", _set(("recommended", "onnxruntime"), {"a": 1})))
    cases.append(("provenance = text", _set(("provenance",), "x")))
    cases.append(("provenance.toolchain = list", _set(("provenance", "toolchain"), [1])))
    cases.append(("preprocess.mean = text", _set(("preprocess", "mean"), "abc")))
    cases.append(("preprocess.mean = [nan]*3", _set(("preprocess", "mean"), [math.nan] * 3)))
    cases.append(("preprocess.std = [0]*3", _set(("preprocess", "std"), [0, 0, 0])))
    cases.append(("preprocess.value_range = dict", _set(("preprocess", "value_range"), {"a": 1})))
    cases.append(("format_version = 2.0", _set(("format_version",), 2.0)))
    cases.append(("format_version = list", _set(("format_version",), [2])))
    cases.append(("export_report = dict", _set(("export_report",), {"a": 1})))
    cases.append(("export_report = [1]", _set(("export_report",), [1])))
    cases.append(("parity = list", _set(("parity",), [1])))
    cases.append(("nested garbage", _set(("models", 0, "outputs"), [[[[{"role": ["x"]}]]]])))
    return cases


CASES = tamperings()


def test_the_list_is_big_enough() -> None:
    assert len(CASES) >= 76


@pytest.fixture(scope="module")
def outcomes(
    session_bundle: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[str, BaseException | None]]:
    """Every tampering applied to a private copy of the session bundle: (outcome, the exception)."""
    import shutil

    root = tmp_path_factory.mktemp("tamper") / "bundle"
    shutil.copytree(session_bundle, root)
    pristine = json.loads((root / "manifest.json").read_text())
    results: dict[str, tuple[str, BaseException | None]] = {}
    for name, tamper in CASES:
        manifest = copy.deepcopy(pristine)
        try:
            tamper(manifest)
        except (KeyError, IndexError, TypeError) as exc:  # the tampering itself does not apply
            raise AssertionError(f"tampering {name!r} does not apply to this manifest: {exc!r}") from exc
        (root / "manifest.json").write_text(json.dumps(manifest))
        resign(root)
        try:
            load_bundle(root)
        except BundleError as exc:
            results[name] = ("refused", exc)
        except Exception as exc:  # noqa: BLE001 - the point: anything else is a raw traceback
            results[name] = ("crashed", exc)
        else:
            results[name] = ("loaded", None)
    return results


def test_no_tampering_gives_a_raw_traceback(outcomes: dict[str, tuple[str, BaseException | None]]) -> None:
    crashed = {name: repr(exc) for name, (outcome, exc) in outcomes.items() if outcome == "crashed"}
    assert crashed == {}
    refused = sum(1 for outcome, _ in outcomes.values() if outcome == "refused")
    assert refused >= 70, f"only {refused} of {len(outcomes)} were refused"


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("delete labels", "labels"),
        ("models[0].golden_tolerance = text", "golden_tolerance"),
        ("operating_points[0] = nan", "operating_points[0]"),
        ("preprocess.input_size = nan", "preprocess"),
        ("files entry size = nan", "size_bytes"),
        ("golden.images = nan", "golden.images"),
        ("inputs[0].shape huge", "expected 1 to 8"),
        ("inputs[0].shape negative", "expected ints >= 0"),
        ("files key ../x", "leaves the bundle"),
        ("cam.pooling = dict", "cam.pooling"),
        ("recommended = list", "recommended"),
        ("preprocess.mean = [nan]*3", "expected finite numbers"),
        ("preprocess.mean = text", "preprocess"),
    ],
)
def test_the_refusal_names_the_field(
    outcomes: dict[str, tuple[str, BaseException | None]], name: str, field: str
) -> None:
    outcome, exc = outcomes[name]
    assert outcome == "refused", (name, outcome, exc)
    assert field in str(exc), str(exc)
