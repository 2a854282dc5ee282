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
from cxr_core.errors import DatasetError
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
from cxr_core.errors import DatasetError
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


# ----------------------------------------------------------------------------- where a revision may go


def _small_site(root: Path, rows: int = 3) -> Path:
    """A private site folder: ``rows`` PNGs and their labels.csv (a folder a test may see deleted)."""
    root.mkdir(parents=True)
    lines = ["path,Atelectasis,Cardiomegaly"]
    for i in range(rows):
        write_png(root / f"img_{i}.png", chest(288, 288))
        lines.append(f"img_{i}.png,{i % 2},0")
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def _calibrate(bundle: Path, data: Path, *extra: str) -> list[str]:
    return [str(bundle), "--data", str(data), "--site", "Clinic A", "--resamples", "20", *extra]


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize(
    ("out", "why"),
    [
        ("{tmp}", "contains the bundle"),  # the folder that holds the bundle
        ("{tmp}/bundle", "is the bundle"),
        ("{tmp}/bundle/sub", "lies inside the bundle"),
        ("{tmp}/site", "is the data folder"),
        ("{tmp}/site/rev", "lies inside the data folder"),
        ("{tmp}/labels.csv", "is the labels file"),
        ("{tmp}/other", "already exists"),  # any existing folder, even one unrelated to the bundle
    ],
)
def test_out_that_exists_or_overlaps_the_inputs_is_refused_before_any_work(
    bundle_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], out: str, why: str
) -> None:
    site = _small_site(tmp_path / "site")
    (tmp_path / "labels.csv").write_bytes((site / "labels.csv").read_bytes())
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("keep me")
    before = _tree(tmp_path)
    target = out.format(tmp=tmp_path)
    argv = _calibrate(bundle_copy, site, "--csv", str(tmp_path / "labels.csv"), "--out", target)
    code = main([*argv, "--progress"])
    err = capsys.readouterr().err
    assert code == 2 and why in err and target in err, err
    assert "image 1/" not in err  # refused before any image was scored
    assert _tree(tmp_path) == before  # nothing deleted, replaced or added


def test_a_second_run_never_replaces_an_existing_revision(bundle_copy: Path, tmp_path: Path) -> None:
    site = _small_site(tmp_path / "site")
    first = recalibrate_bundle(bundle_copy, site, "Clinic A", resamples=20)
    assert first.path == tmp_path / "bundle-rev2"
    manifest = (first.path / "manifest.json").read_bytes()
    with pytest.raises(RecalibrationError, match=r"bundle-rev2 already exists.*choose another folder"):
        recalibrate_bundle(bundle_copy, site, "Clinic B", resamples=20)
    assert (first.path / "manifest.json").read_bytes() == manifest  # Clinic A's revision is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "bundle-rev2", "site"]  # no temp left


def test_staging_without_replace_refuses_an_existing_folder_even_at_the_rename(tmp_path: Path) -> None:
    from cxr_core.bundle.writer import BundleWriteError, staging

    target = tmp_path / "data"
    target.mkdir()
    (target / "scan.png").write_bytes(b"patient data")
    with pytest.raises(BundleWriteError, match="already exists"), staging(target, replace=False) as folder:
        (folder / "a.txt").write_text("never published")
    later = tmp_path / "later"
    with pytest.raises(BundleWriteError, match="already exists"), staging(later, replace=False) as folder:
        (folder / "a.txt").write_text("never published")
        later.mkdir()  # made by someone else while the revision was being written
        (later / "scan.png").write_bytes(b"patient data")
    assert (target / "scan.png").read_bytes() == (later / "scan.png").read_bytes() == b"patient data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "later"]  # no temp folder left


# ----------------------------------------------------------------------------- the labels CSV


def _site_csv(tmp_path: Path, body: bytes) -> tuple[Path, Path]:
    site = _small_site(tmp_path / "site")
    csv_file = tmp_path / "labels-in.csv"
    csv_file.write_bytes(body)
    return site, csv_file


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"path,Atelectasis\nimg_0.png,1\ncaf\xe9.png,0\n", r"labels-in.csv:3: byte 0xe9, not UTF-8 text"),
        ("path,Atelectasis\nimg_0.png,1\n".encode("utf-16"), r"labels-in.csv:1: UTF-16 text.*UTF-8 CSV"),
        (b"path,Atelectasis,Cardiomegaly\nimg_0.png,1,0\nimg_1.png,1\n", r"labels-in.csv:3: 2 cells, fewer"),
        (b"path,Atelectasis\nimg_0.png,1\nimg_1,x.png,0\n", r"labels-in.csv:3: 3 cells, more .*quote a path"),
    ],
    ids=["latin-1", "utf-16", "short-row", "extra-cells"],
)
def test_a_labels_csv_that_cannot_be_read_is_a_usage_error_naming_file_and_line(
    session_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], body: bytes, expected: str
) -> None:
    site, csv_file = _site_csv(tmp_path, body)
    labels = load_bundle(session_bundle).labels
    with pytest.raises(DatasetError, match=expected):
        read_local_labels(site, labels, csv_file)
    code = main(_calibrate(session_bundle, site, "--csv", str(csv_file), "--out", str(tmp_path / "rev")))
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and str(csv_file) in err
    assert not (tmp_path / "rev").exists()


def test_the_same_image_on_two_rows_is_refused_naming_the_lines(session_bundle: Path, tmp_path: Path) -> None:
    body = b"path,Atelectasis\nimg_0.png,1\nimg_1.png,0\n./img_0.png,1\nimg_2.png,0\nimg_0.png,0\n"
    site, csv_file = _site_csv(tmp_path, body)
    labels = load_bundle(session_bundle).labels
    with pytest.raises(
        DatasetError, match=r"1 image\(s\) listed more than once: 'img_0.png' on lines 2, 4, 6"
    ):
        read_local_labels(site, labels, csv_file)


def test_a_finding_column_named_twice_is_refused(session_bundle: Path, tmp_path: Path) -> None:
    site, csv_file = _site_csv(tmp_path, b"path,Atelectasis,Cardiomegaly,Atelectasis\nimg_0.png,1,0,0\n")
    labels = load_bundle(session_bundle).labels
    with pytest.raises(DatasetError, match=r"column 'Atelectasis' appears 2 times \(columns 2, 4\)"):
        read_local_labels(site, labels, csv_file)


def test_threads_are_bounded_like_cxr_predict(capsys: pytest.CaptureFixture[str]) -> None:
    from cxr_core.calibrate_cli import build_parser
    from cxr_core.cli_common import max_threads

    argv = ["b", "--data", "d", "--site", "A", "--threads"]
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([*argv, "100000"])
    assert info.value.code == 2 and f"outside 1..{max_threads()}" in capsys.readouterr().err
    assert build_parser().parse_args([*argv, "1"]).threads == 1


# ----------------------------------------------------------------------------- the revision in cxr-predict


def test_site_thresholds_are_named_as_such_and_predictions_name_the_revision(
    bundle_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """6 site positives with --min-positives 5: a site threshold, unreliable, said to be set on site."""
    from cxr_core.predict_cli import main as predict

    site = _small_site(tmp_path / "site", rows=12)  # Atelectasis: 6 positive, 6 negative
    out = tmp_path / "rev2"
    code = main(
        _calibrate(bundle_copy, site, "--out", str(out), "--min-positives", "5", "--model", "onnx-int8")
    )
    assert code == 0
    info = load_bundle(out).manifest.revision
    assert (info.model, info.model_file, info.runtime) == ("onnx-int8", "model-int8.onnx", "onnxruntime")
    clear_bundle_cache()
    document = tmp_path / "p.json"
    image = str(site / "img_0.png")
    assert predict([image, "--bundle", str(out), "--model", "onnx-int8", "--json", str(document)]) == 0
    written = json.loads(document.read_text())
    (result,) = written["results"]
    revision = result["bundle_revision"]
    assert written["bundle_revision"] == revision  # the run names it too, not only each image
    assert revision["number"] == 2 and revision["site"] == "Clinic A" and revision["model"] == "onnx-int8"
    assert revision["description"] == f"rev 2 (Clinic A, {info.created_at[:10]})"
    note = next(f for f in result["findings"] if f["label"] == "Atelectasis")["threshold_note"]
    assert note.startswith("threshold unreliable: set on 6 site positives (< 10) in rev 2 (Clinic A, ")
    assert "validation" not in note and "scored with onnx-int8 (model-int8.onnx) on onnxruntime" in note
    assert not any("were set on" in w for w in result["warnings"])
    capsys.readouterr()
    assert predict([image, "--bundle", str(out), "--model", "onnx-int8"]) == 0
    header = capsys.readouterr().out.splitlines()
    assert any(f"operating points of rev 2 (Clinic A, {info.created_at[:10]})" in line for line in header)
    # Scored with another model file than the one that set the points: every result says so.
    assert predict([image, "--bundle", str(out), "--model", "onnx", "--json", str(document)]) == 0
    (result,) = json.loads(document.read_text())["results"]
    assert any(
        "were set on onnx-int8 (model-int8.onnx) on onnxruntime, not on onnx" in w for w in result["warnings"]
    )
