"""Honest output: the synthetic mark everywhere, scores that are not percentages, unreliable thresholds
flagged, heat maps whose colour follows the score and that say what they show."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_core.bundle import SYNTHETIC_MARK, BundleError, Manifest, load_bundle
from cxr_core.predict_cli import main
from cxr_core.predictor import Predictor, clear_bundle_cache
from tests.benchmarks.conftest import rehash  # noqa: F401  (kept for symmetry with other bundle tests)
from tests.cxr_core.test_input_gate import chest
from tests.file_factory import write_png


def _manifest(bundle: Path) -> dict:
    return json.loads((bundle / "manifest.json").read_text())


def _write(bundle: Path, manifest: dict) -> None:
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    clear_bundle_cache()


def _clinical(dataset: str = "synthetic", positives: int = 25, source: str = "youden") -> dict:
    finding = {
        "label": "Atelectasis",
        "positives": 3,
        "negatives": 40,
        "auc": 0.7,
        "auc_ci": [0.5, 0.9],
        "sensitivity": 0.67,
        "sensitivity_ci": [0.2, 0.94],
        "specificity": 0.8,
        "specificity_ci": [0.65, 0.9],
        "operating_point": 0.5,
        "threshold_positives": positives,
        "threshold_source": source,
    }
    return {
        "intended_use": "test",
        "synthetic": dataset == "synthetic",
        "training_data": {"dataset": dataset, "label_source": "test"},
        "validation": {"source": "test", "images": 43, "findings": [finding]},
    }


def test_the_synthetic_mark_is_in_the_table_the_json_and_the_heat_map(
    session_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert load_bundle(session_bundle).synthetic  # the test bundles are trained on "synthetic" data
    image = write_png(tmp_path / "a.png", chest(320, 288))
    out = tmp_path / "p.json"
    code = main(
        [str(image), "--bundle", str(session_bundle), "--json", str(out), "--heatmap-dir", str(tmp_path)]
    )
    printed = capsys.readouterr().out
    assert code == 0
    assert printed.count(SYNTHETIC_MARK.upper()) >= 2  # above the image's table and the run summary
    assert "%" not in printed.split("score 0-100")[0].split("finding")[1]  # no percentages in the table
    document = json.loads(out.read_text())
    assert document["synthetic_training_data"] is True and SYNTHETIC_MARK in document["notices"]
    assert document["results"][0]["notices"] == [SYNTHETIC_MARK]
    png = Path(document["results"][0]["heatmap"]["file"])
    with Image.open(png) as figure:
        pixels = np.asarray(figure.convert("RGB"))
    assert np.all(pixels[4, :, :] == (178, 24, 24), axis=-1).mean() > 0.9  # the red band on top
    assert pixels.shape[0] > 320  # the caption panel below the radiograph


def test_no_setting_or_edit_can_switch_the_mark_off(bundle_copy: Path) -> None:
    manifest = _manifest(bundle_copy)
    manifest["clinical"] = _clinical("synthetic")
    manifest["clinical"]["synthetic"] = False
    with pytest.raises(BundleError, match="synthetic mark cannot be switched off"):
        Manifest.from_dict(manifest)
    manifest["clinical"] = None  # a bundle without the block: the training data set still decides
    _write(bundle_copy, manifest)
    with Predictor.load(bundle_copy, model="onnx") as predictor:
        assert predictor.notices == (SYNTHETIC_MARK,)


def test_a_real_data_bundle_carries_no_mark(bundle_copy: Path, tmp_path: Path) -> None:
    manifest = _manifest(bundle_copy)
    manifest["provenance"]["training_dataset"] = "chestxray14"
    manifest["clinical"] = _clinical("chestxray14")
    _write(bundle_copy, manifest)
    with Predictor.load(bundle_copy, model="onnx") as predictor:
        prediction = predictor.predict_file(write_png(tmp_path / "a.png", chest()))
    assert predictor.notices == () and prediction.notices == ()


@pytest.mark.parametrize(
    ("positives", "source", "expected"),
    [
        (25, "youden", None),
        (9, "youden", "set on 9 validation positives (< 10)"),
        (0, "fallback", "fallback 0.5"),
    ],
)
def test_an_unreliable_threshold_is_flagged_with_its_count(
    bundle_copy: Path, tmp_path: Path, positives: int, source: str, expected: str | None
) -> None:
    manifest = _manifest(bundle_copy)
    manifest["clinical"] = _clinical(positives=positives, source=source)
    _write(bundle_copy, manifest)
    with Predictor.load(bundle_copy, model="onnx") as predictor:
        finding = predictor.predict_file(write_png(tmp_path / "a.png", chest())).finding("Atelectasis")
    if expected is None:
        assert finding.threshold_note is None and finding.threshold_reliable
    else:
        assert "threshold unreliable" in finding.threshold_note and expected in finding.threshold_note


def test_heat_map_colour_strength_follows_the_score(session_bundle: Path, tmp_path: Path) -> None:
    """The CAM is min-max scaled per image; the shown colour is weighted by score / 100."""
    with Predictor.load(session_bundle, model="onnx") as predictor:
        prediction = predictor.predict_file(write_png(tmp_path / "a.png", chest(320, 288)))
    plain = np.repeat((prediction.image.pixels * 255).round()[..., None], 3, axis=2)

    def colour(label: str, by_score: bool) -> float:
        tinted = np.asarray(prediction.overlay(label, alpha=1.0, by_score=by_score), dtype=np.int32)
        return float(np.abs(tinted - plain).max())

    ranked = prediction.ranked()
    high, low = ranked[0], ranked[-1]
    assert high.score > low.score
    for finding in (high, low):
        unweighted, weighted = colour(finding.label, False), colour(finding.label, True)
        assert weighted <= unweighted + 1.0
        assert weighted <= 255.0 * finding.score / 100.0 + 2.0  # never stronger than its score allows
    assert colour(low.label, True) < colour(low.label, False)  # a low score is drawn fainter
