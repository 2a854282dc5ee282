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


def test_a_site_revision_and_its_predictions_validate(bundle_copy: Path, tmp_path: Path) -> None:
    """cxr-calibrate's manifest (revision: model, file, runtime) and cxr-predict's bundle_revision."""
    from cxr_core.calibrate_cli import main as calibrate
    from cxr_core.predict_cli import main as predict
    from tests.cxr_core.test_input_gate import chest
    from tests.file_factory import write_png

    site = tmp_path / "site"
    site.mkdir()
    rows = ["path,Atelectasis"]
    for i in range(4):
        write_png(site / f"{i}.png", chest(288, 288))
        rows.append(f"{i}.png,{i % 2}")
    (site / "labels.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "rev2"
    argv = [
        str(bundle_copy),
        "--data",
        str(site),
        "--site",
        "Clinic A",
        "--out",
        str(out),
        "--resamples",
        "20",
    ]
    assert calibrate(argv) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert (
        manifest["revision"]["model"]
        and manifest["revision"]["model_file"]
        and manifest["revision"]["runtime"]
    )
    assert [e.message for e in _validator("manifest.schema.json").iter_errors(manifest)] == []
    older = json.loads(json.dumps(manifest))  # a revision written before the model was recorded
    for key in ("model", "model_file", "runtime"):
        del older["revision"][key]
    assert [e.message for e in _validator("manifest.schema.json").iter_errors(older)] == []
    document = tmp_path / "predictions.json"
    assert predict([str(site / "0.png"), "--bundle", str(out), "--json", str(document)]) == 0
    predictions = json.loads(document.read_text())
    assert predictions["results"][0]["bundle_revision"]["site"] == "Clinic A"
    assert [e.message for e in _validator("predictions.schema.json").iter_errors(predictions)] == []
    predictions["results"][0]["bundle_revision"]["number"] = "two"
    assert list(_validator("predictions.schema.json").iter_errors(predictions))
