"""cxr-calibrate: a site's labelled images set new operating points in a new, verified bundle revision."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cxr_core.bundle import BundleIntegrityError, load_bundle, sha256_file
from cxr_core.calibrate_cli import main
from cxr_core.local_labels import read_local_labels
from cxr_core.predictor import Predictor, clear_bundle_cache
from cxr_core.recalibrate import RecalibrationError, recalibrate_bundle
from tests.cxr_core.test_input_gate import chest
from tests.file_factory import write_png

LABELLED = ("Atelectasis", "Cardiomegaly")


@pytest.fixture(scope="module")
def site_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 site images: Atelectasis 16 positive / 24 negative, Cardiomegaly never positive, the rest unread."""
    root = tmp_path_factory.mktemp("site")
    rng = np.random.default_rng(3)
    rows = []
    for i in range(40):
        image = chest(288 + int(rng.integers(0, 64)), 288 + int(rng.integers(0, 64)))
        write_png(root / f"img_{i:02d}.png", image)
        rows.append({"path": f"img_{i:02d}.png", "Atelectasis": int(i % 5 < 2), "Cardiomegaly": 0})
    with open(root / "labels.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["path", *LABELLED])
        writer.writeheader()
        writer.writerows(rows)
    (root / "bad.png").write_bytes(b"not a png")  # not listed: never read
    return root


def test_the_labels_csv_is_read_with_unlabelled_findings_masked(
    site_data: Path, session_bundle: Path
) -> None:
    labels = load_bundle(session_bundle).labels
    local = read_local_labels(site_data, labels)
    assert len(local.files) == 40 and local.truth.shape == (40, len(labels))
    atelectasis, effusion = labels.index("Atelectasis"), labels.index("Effusion")
    assert local.truth[:, atelectasis].sum() == 16 and local.mask[:, atelectasis].all()
    assert not local.mask[:, effusion].any()


def test_a_revision_updates_findings_with_enough_positives_and_keeps_the_rest(
    site_data: Path, bundle_copy: Path, tmp_path: Path
) -> None:
    parent_manifest = sha256_file(bundle_copy / "manifest.json")
    result = recalibrate_bundle(bundle_copy, site_data, "Clinic A", out=tmp_path / "rev2", resamples=200)
    assert result.revision == 2 and result.scored == 40 and result.refused == []
    changes = {c.label: c for c in result.changes}
    assert changes["Atelectasis"].updated and changes["Atelectasis"].positives == 16
    assert not changes["Cardiomegaly"].updated and "kept: 0 local positives" in changes["Cardiomegaly"].reason
    assert (
        not changes["Effusion"].updated
        and changes["Effusion"].new_operating_point == changes["Effusion"].old_operating_point
    )
    revision = load_bundle(tmp_path / "rev2")  # verifies every hash
    info = revision.manifest.revision
    assert info.site == "Clinic A" and info.images == 40 and info.parent_manifest_sha256 == parent_manifest
    assert info.previous_operating_points == load_bundle(bundle_copy).operating_points
    assert "Cardiomegaly" in info.kept and "Atelectasis" not in info.kept
    validation = revision.clinical.validation
    finding = next(f for f in validation.findings if f.label == "Atelectasis")
    assert finding.threshold_source == "site" and finding.positives == 16 and finding.threshold_reliable
    assert sha256_file(bundle_copy / "manifest.json") == parent_manifest  # the parent is untouched
    clear_bundle_cache()
    with Predictor.load(tmp_path / "rev2", model="onnx") as predictor:
        index = predictor.labels.index("Atelectasis")
        assert predictor.operating_points[index] == pytest.approx(changes["Atelectasis"].new_operating_point)


def test_a_tampered_revision_is_refused(site_data: Path, bundle_copy: Path, tmp_path: Path) -> None:
    recalibrate_bundle(bundle_copy, site_data, "Clinic A", out=tmp_path / "rev2", resamples=50)
    model = tmp_path / "rev2" / "model.onnx"
    data = bytearray(model.read_bytes())
    data[100] ^= 0xFF
    model.unlink()  # a hard link to the parent's file: replace it, do not edit the shared bytes
    model.write_bytes(bytes(data))
    with pytest.raises(BundleIntegrityError, match="model.onnx"):
        load_bundle(tmp_path / "rev2")
    load_bundle(bundle_copy)  # the parent still verifies


def test_no_scoreable_image_is_an_error(bundle_copy: Path, tmp_path: Path) -> None:
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "a.png").write_bytes(b"broken")
    (tmp_path / "site" / "labels.csv").write_text("path,Atelectasis\na.png,1\n")
    with pytest.raises(RecalibrationError, match="none of the 1 images"):
        recalibrate_bundle(bundle_copy, tmp_path / "site", "Clinic A", out=tmp_path / "rev2")
    assert not (tmp_path / "rev2").exists()


#: cxr-calibrate with torch (and TensorFlow, onnx) made unimportable, as on a Pi.
NO_TORCH = """
import importlib.abc, sys
class Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torch', 'torchvision', 'tensorflow', 'onnx', 'training', 'quantize'):
            raise ImportError('blocked by test: ' + name)
        return None
sys.meta_path.insert(0, Refuse())
from cxr_core.calibrate_cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_the_cli_runs_without_torch_and_prints_the_changes(
    site_data: Path, bundle_copy: Path, tmp_path: Path
) -> None:
    out = tmp_path / "site-rev"
    run = subprocess.run(
        [
            sys.executable,
            "-c",
            NO_TORCH,
            str(bundle_copy),
            "--data",
            str(site_data),
            "--site",
            "Clinic B",
            "--out",
            str(out),
            "--resamples",
            "100",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert (
        "revision 2 written to" in run.stdout
        and "Atelectasis" in run.stdout
        and "kept: 0 local" in run.stdout
    )
    assert json.loads((out / "manifest.json").read_text())["revision"]["site"] == "Clinic B"


def test_the_cli_refuses_a_missing_data_folder(bundle_copy: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    code = main([str(bundle_copy), "--data", str(tmp_path / "nowhere"), "--site", "A"])
    assert code == 2 and "is not a folder" in capsys.readouterr().err
