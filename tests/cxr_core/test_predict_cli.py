"""cxr-predict: batch behaviour, exit codes, JSON schema, heat-map files, a run with torch unimportable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_core.imaging import DecodedImage, ImageProvenance
from cxr_core.predict_cli import heatmap_png, main, overlay_size
from cxr_core.predictor import DISCLAIMER, Predictor
from tests.cxr_core.test_input_gate import chest
from tests.file_factory import truncate_copy, write_dicom, write_jpeg, write_png

#: Modules the device path must never need (onnxruntime is allowed: it is the runtime).
BLOCKED = ("torch", "torchvision", "tensorflow", "onnx", "sklearn", "matplotlib")


@pytest.fixture
def batch(tmp_path: Path) -> Path:
    """Two good images, one corrupt file and one refused (CT) DICOM, plus a non-image file."""
    folder = tmp_path / "study"
    folder.mkdir()
    write_png(folder / "a_good.png", chest(320, 288))
    write_jpeg(folder / "b_good.jpg", chest(300, 400))
    truncate_copy(write_png(tmp_path / "whole.png", chest()), folder / "c_corrupt.png", 0.4)
    write_dicom(folder / "d_ct.dcm", chest(), bits_stored=8, modality="CT")
    (folder / "notes.txt").write_text("not an image")
    return folder


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_partial_failure_scores_the_good_files_and_names_the_bad_ones(
    session_bundle: Path, batch: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_json, heat_dir = tmp_path / "out" / "results.json", tmp_path / "heat"
    code, out, err = _run(
        capsys,
        str(batch),
        "--bundle",
        str(session_bundle),
        "--json",
        str(out_json),
        "--heatmap-dir",
        str(heat_dir),
        "--model",
        "onnx-int8",
        "--threads",
        "1",
    )
    assert code == 1
    assert f"skipped {batch / 'c_corrupt.png'}: PNG data is truncated or corrupt" in err
    assert f"skipped {batch / 'd_ct.dcm'}: DICOM Modality is 'CT'" in err
    assert "notes.txt" not in err + out
    assert str(batch / "a_good.png") in out and str(batch / "b_good.jpg") in out
    assert DISCLAIMER in out and "2 image(s) scored, 2 skipped." in out

    document = json.loads(out_json.read_text())
    good = [str(batch / "a_good.png"), str(batch / "b_good.jpg")]
    assert [r["source"] for r in document["results"]] == good
    failures = {f["file"]: f for f in document["failures"]}
    assert set(failures) == {str(batch / "c_corrupt.png"), str(batch / "d_ct.dcm")}
    assert failures[str(batch / "d_ct.dcm")]["error"] == "ImageRefusedError"
    assert failures[str(batch / "c_corrupt.png")]["error"] == "CorruptImageError"
    assert document["summary"] == {"scored": 2, "failed": 2}

    pngs = sorted(heat_dir.iterdir())
    assert len(pngs) == 2
    for result, shape in zip(document["results"], [(320, 288), (300, 400)], strict=True):
        png = Path(result["heatmap"]["file"])
        top = max(result["findings"], key=lambda f: f["score"])["label"]
        assert result["heatmap"]["finding"] == top and png.name.endswith(f".{top}.png")
        with Image.open(png) as img:  # the radiograph (at most 1024 px) above a caption panel
            assert img.mode == "RGB" and img.size[0] >= max(shape[1], 480) and img.size[1] > shape[0]
    assert not list(out_json.parent.glob(".*")), "no temp files left behind"


def test_json_schema(session_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = write_dicom(tmp_path / "lat.dcm", chest(), bits_stored=12, view="LL")
    code, out, _ = _run(capsys, str(image), "--bundle", str(session_bundle), "--json", "-", "--model", "onnx")
    assert code == 0
    doc = json.loads(out)  # --json - prints only JSON
    assert set(doc) == {
        "tool",
        "version",
        "disclaimer",
        "score_definition",
        "synthetic_training_data",
        "notices",
        "clinical",
        "bundle",
        "architecture",
        "model",
        "runtime",
        "threads",
        "load_ms",
        "labels",
        "results",
        "failures",
        "summary",
        "bundle_trust",
        "bundle_revision",
    }
    assert doc["bundle_trust"]["state"] == "trusted"
    assert doc["bundle_revision"] is None  # an exported bundle, not a site revision
    assert doc["tool"] == "cxr-predict" and doc["disclaimer"] == DISCLAIMER
    assert doc["model"] == "onnx" and doc["runtime"] == "onnxruntime" and isinstance(doc["threads"], int)
    assert len(doc["labels"]) == 14 and doc["failures"] == [] and doc["summary"] == {"scored": 1, "failed": 0}
    (result,) = doc["results"]
    assert set(result) == {
        "source",
        "bundle",
        "model",
        "runtime",
        "findings",
        "warnings",
        "timings_ms",
        "provenance",
        "notices",
        "gate_signals",
        "gate_override",
        "heatmap",
        "input",
        "bundle_revision",
    }
    assert result["heatmap"] is None and result["bundle_revision"] is None  # an exported bundle
    assert result["input"] == {
        "kind": "file",
        "corners": None,
        "detected": None,
        "quality": None,
        "photo_size": None,
    }
    assert doc["synthetic_training_data"] is True  # the test bundles are trained on "synthetic" data
    assert doc["notices"] == result["notices"] == ["Synthetic training data: not for patients"]
    assert "not a probability" in doc["score_definition"]
    assert [f["label"] for f in result["findings"]] == doc["labels"]
    for finding in result["findings"]:
        assert set(finding) == {
            "label",
            "model_output",
            "score",
            "operating_point",
            "above_operating_point",
            "threshold_note",
        }
        assert isinstance(finding["above_operating_point"], bool)
        assert all(isinstance(finding[k], float) for k in ("model_output", "score", "operating_point"))
        assert 0.0 <= finding["score"] <= 100.0
    stages = {"decode", "gate", "preprocess", "inference", "learned_gate", "calibrate"}
    assert set(result["timings_ms"]) == stages
    assert any(w.startswith("a lateral view") for w in result["warnings"])
    assert result["provenance"]["view_position"] == "LL" and result["provenance"]["format"] == "dicom"


def test_all_good_exits_0_and_finding_selects_the_heat_map(
    session_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    images = [write_png(tmp_path / "a" / "x.png", chest()), write_png(tmp_path / "b" / "x.png", chest(300))]
    code, out, err = _run(
        capsys,
        *map(str, images),
        "--bundle",
        str(session_bundle),
        "--heatmap-dir",
        str(tmp_path / "h"),
        "--finding",
        "Effusion",
    )
    assert code == 0 and err == ""
    assert sorted(p.name for p in (tmp_path / "h").iterdir()) == ["x-2.Effusion.png", "x.Effusion.png"]
    assert out.count("heat map (Effusion)") == 2


def test_folders_expand_recursively_and_skip_the_heatmap_folder(
    session_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "in"
    (root / "series").mkdir(parents=True)
    write_png(root / "one.png", chest())
    write_dicom(root / "series" / "IM0001", chest(), bits_stored=12)  # DICOM without a suffix
    uid_named = root / "series" / "1.2.840.113619.2.55.3.604688119.868.2"  # an archive's UID name: ".2"
    write_dicom(uid_named, chest(), bits_stored=12)
    (root / "series" / "README").write_text("no image here")
    (root / "series" / "notes.v2").write_text("not DICOM either")
    heat = root / "heat"
    heat.mkdir()
    write_png(heat / "old.png", chest())  # an earlier run's output must not be re-scored
    code, out, err = _run(
        capsys,
        str(root),
        "--bundle",
        str(session_bundle),
        "--json",
        str(tmp_path / "r.json"),
        "--heatmap-dir",
        str(heat),
    )
    assert code == 0, err
    sources = [r["source"] for r in json.loads((tmp_path / "r.json").read_text())["results"]]
    assert sources == [str(root / "one.png"), str(uid_named), str(root / "series" / "IM0001")]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("glob", "--json a.png is an image file name or holds an image"),
        ("image_content", "--json scan.out is an image file name or holds an image"),
        ("input", "is also an input image"),
        ("folder", "is a folder; expected the path of a file to write"),
        ("same_as_jsonl", "--json and --jsonl both name"),
        ("jsonl_image", "--jsonl b.dcm is an image file name"),
    ],
)
def test_an_output_that_would_overwrite_an_image_or_the_stream_is_refused_before_scoring(
    session_bundle: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    write_png(tmp_path / "a.png", chest())
    write_png(tmp_path / "b.png", chest())
    write_png(tmp_path / "scan.out", chest())  # an image under a name that says nothing
    (tmp_path / "out").mkdir()
    argv = {
        "glob": ["--json", "a.png", "b.png"],  # what `--json *.png` expands to
        "image_content": ["b.png", "--json", "scan.out"],
        "input": ["a.png", "b.png", "--json", "./b.png"],
        "folder": ["b.png", "--json", "out"],
        "same_as_jsonl": ["b.png", "--json", "r.out", "--jsonl", "./r.out"],
        "jsonl_image": ["b.png", "--jsonl", "b.dcm"],
    }[case]
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    code, out, err = _run(capsys, *argv, "--bundle", str(session_bundle))
    assert code == 2 and message in err, err
    assert out == ""  # refused before any image was scored
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_an_empty_folder_is_a_failure(
    session_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "empty").mkdir()
    code, _, err = _run(capsys, str(tmp_path / "empty"), "--bundle", str(session_bundle))
    assert code == 1 and "folder has no PNG, JPEG or DICOM files" in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--bundle", "{missing}"], "does not exist or is not a directory"),
        (["--bundle", "{bundle}", "--finding", "effusion"], "did you mean 'Effusion'"),
        (["--bundle", "{bundle}", "--model", "tflite"], "has no model 'tflite'"),
        (["--bundle", "{bundle}", "--runtime", "onxruntime"], "unknown runtime 'onxruntime'"),
        (["--bundle", "{bundle}", "--threads", "0"], "0 is outside 1.."),
        (["--bundle", "{bundle}", "--threads", "20000"], "20000 is outside 1.."),
        ([], "--bundle"),
    ],
)
def test_usage_and_bundle_errors_exit_2(
    session_bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    image = write_png(tmp_path / "x.png", chest())
    filled = [a.format(missing=tmp_path / "nope", bundle=session_bundle) for a in argv]
    code, _, err = _run(capsys, str(image), *filled)
    assert code == 2 and message in err


def test_predict_runs_with_torch_and_friends_unimportable(
    session_bundle: Path, batch: Path, tmp_path: Path
) -> None:
    """The installed cxr-predict script, with an import blocker loaded by sitecustomize before it starts."""
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import importlib.abc, sys\n"
        f"BLOCKED = {BLOCKED!r}\n"
        "class Refuse(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BLOCKED:\n"
        "            raise ImportError('blocked by test: ' + name)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Refuse())\n"
    )
    script = Path(sys.executable).parent / "cxr-predict"
    assert script.is_file(), "cxr-predict is installed as a console script (pip install -e .)"
    env = {**os.environ, "PYTHONPATH": str(blocker)}
    probe = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True, text=True)
    assert probe.returncode != 0 and "blocked by test: torch" in probe.stderr, "the blocker must be active"
    out_json = tmp_path / "r.json"
    result = subprocess.run(
        [
            str(script),
            str(batch / "a_good.png"),
            str(batch / "b_good.jpg"),
            str(batch / "d_ct.dcm"),
            "--bundle",
            str(session_bundle),
            "--json",
            str(out_json),
            "--heatmap-dir",
            str(tmp_path / "h"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 1, result.stderr  # the CT file is refused; the two good ones are scored
    assert "blocked by test" not in result.stderr
    doc = json.loads(out_json.read_text())
    assert len(doc["results"]) == 2 and doc["runtime"] == "onnxruntime"
    probabilities = np.array([f["model_output"] for f in doc["results"][0]["findings"]])
    assert probabilities.shape == (14,) and np.isfinite(probabilities).all()
    assert len(list((tmp_path / "h").glob("*.png"))) == 2


def test_overlay_size_caps_the_longer_side_and_keeps_small_images() -> None:
    assert overlay_size((320, 288)) == (320, 288)
    assert overlay_size((2048, 1000)) == (2048, 1000)
    assert overlay_size((8000, 6000)) == (2048, 1536)
    assert overlay_size((3000, 4000), longest=1000) == (750, 1000)


def test_a_large_image_s_heat_map_figure_is_drawn_without_a_full_size_overlay(session_bundle: Path) -> None:
    # A 12-megapixel image's figure (1,024 px): the full-size overlay took 5.5x the image's float
    # pixels (heat map, score weighting, RGB blend); drawn at 2,048 px, 1.7x.
    pixels = chest(4000, 3000).astype(np.float32)
    provenance = ImageProvenance(
        path="big.png", format="png", width=3000, height=4000, bit_depth=8, source_mode="L"
    )
    with Predictor.load(session_bundle) as predictor:
        pred = predictor.predict_image(DecodedImage(pixels, provenance), "big.png", override_gate=True)
    label = pred.ranked()[0].label
    tracemalloc.start()
    try:
        figure = heatmap_png(pred, label, 0.45)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert figure.shape[0] >= 1024 and figure.dtype == np.uint8
    assert peak < 3 * pixels.nbytes, f"{peak / 1e6:.0f} MB for {pixels.nbytes / 1e6:.0f} MB of pixels"
