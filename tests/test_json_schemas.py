"""docs/schemas/ holds the JSON Schemas generated from the classes, and real outputs validate against them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cxr_core.json_schema import SCHEMAS, dumps

jsonschema = pytest.importorskip("jsonschema", reason="the dev extra brings jsonschema")

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "docs" / "schemas"


def _all_generators() -> dict:
    from benchmarks.schema import SCHEMAS as RESULTS

    return {**SCHEMAS, **RESULTS}


@pytest.mark.parametrize("name", ["manifest.schema.json", "predictions.schema.json", "results.schema.json"])
def test_the_shipped_schema_is_what_the_classes_generate(name: str) -> None:
    generated = _all_generators()[name]()
    jsonschema.Draft202012Validator.check_schema(generated)
    shipped = (FOLDER / name).read_text(encoding="utf-8")
    assert shipped == dumps(generated), (
        f"docs/schemas/{name} is stale: run python -m cxr_core.json_schema --write docs/schemas "
        "and python -m benchmarks.schema --write docs/schemas"
    )


def _validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads((FOLDER / name).read_text(encoding="utf-8")))


def test_an_exported_manifest_validates(session_bundle: Path) -> None:
    manifest = json.loads((session_bundle / "manifest.json").read_text())
    errors = [e.message for e in _validator("manifest.schema.json").iter_errors(manifest)]
    assert errors == []
    manifest["models"][0]["precision"] = "int4"
    assert list(_validator("manifest.schema.json").iter_errors(manifest))


def test_predictions_json_validates(session_bundle: Path, tmp_path: Path) -> None:
    from cxr_core.predict_cli import main
    from tests.cxr_core.test_input_gate import chest
    from tests.file_factory import write_dicom, write_png

    good = write_png(tmp_path / "a.png", chest(320, 288))
    refused = write_dicom(tmp_path / "ct.dcm", chest(), bits_stored=8, modality="CT")
    out = tmp_path / "predictions.json"
    code = main(
        [
            str(good),
            str(refused),
            "--bundle",
            str(session_bundle),
            "--json",
            str(out),
            "--heatmap-dir",
            str(tmp_path / "maps"),
        ]
    )
    assert code == 1  # one refused
    document = json.loads(out.read_text())
    assert document["summary"] == {"scored": 1, "failed": 1}
    errors = [e.message for e in _validator("predictions.schema.json").iter_errors(document)]
    assert errors == []
    document["results"][0]["findings"][0]["probability"] = "high"
    assert list(_validator("predictions.schema.json").iter_errors(document))
