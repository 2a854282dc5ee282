"""The out-of-distribution corpus (offline, deterministic, every category) and the gate study."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from benchmarks.gate_study import IN_DISTRIBUTION, GateStudyError, cost_interval, main, run_study, table
from benchmarks.ood_corpus import CATEGORIES, DEFAULT_PER_CATEGORY, MANIFEST, CorpusError, build_corpus
from cxr_core.bundle import load_bundle
from cxr_core.imaging import decode_image
from cxr_core.input_gate import ImageRefusedError, InputGate, default_checks
from cxr_core.predictor import Predictor, clear_bundle_cache
from cxr_core.runtime import open_backend

#: The gated_bundle's phantoms are 64 px; every other rule applies.
SMALL_RULES = InputGate(default_checks(min_side=32))


def _digests(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[Path]]:
    return build_corpus(tmp_path_factory.mktemp("ood") / "a", seed=3, per_category=1)


def test_the_corpus_has_every_category_at_the_asked_size_and_is_deterministic(
    tiny_corpus: dict[str, list[Path]], tmp_path: Path
) -> None:
    assert DEFAULT_PER_CATEGORY >= 5  # the per-category rates need more than a handful
    assert list(tiny_corpus) == list(CATEGORIES)
    assert {c: len(p) for c, p in tiny_corpus.items()} == dict.fromkeys(CATEGORIES, 1)
    root = tiny_corpus["noise"][0].parents[1]
    listed = json.loads((root / MANIFEST).read_text())
    assert len(listed["images"]) == len(CATEGORIES) and listed["seed"] == 3
    for category, paths in tiny_corpus.items():
        for path in paths:
            image = decode_image(path)
            assert min(image.pixels.shape) >= 512, (category, path.name)  # the size rule never decides
    assert _digests(
        Path(build_corpus(tmp_path / "b", seed=3, per_category=1)["flat"][0]).parents[1]
    ) == _digests(root)
    other = build_corpus(tmp_path / "c", seed=4, per_category=1)
    assert other["noise"][0].read_bytes() != tiny_corpus["noise"][0].read_bytes()
    with pytest.raises(CorpusError, match="per_category=0"):
        build_corpus(tmp_path / "d", per_category=0)


def test_the_acquired_category_is_pydicoms_own_images_every_one_decoded(tmp_path: Path) -> None:
    """Real CT, MR and nuclear-medicine images from the installed pydicom (never its downloader),
    each at its own window first, then other windows: 12 images, two of each of the six files."""
    from benchmarks.ood_corpus import ACQUIRED_DICOM

    corpus = build_corpus(tmp_path / "acq", per_category=2 * len(ACQUIRED_DICOM))
    paths = corpus["medical_acquired"]
    assert len(paths) == 2 * len(ACQUIRED_DICOM)  # every file decoded here (JPEG 2000 ones too)
    listed = json.loads((tmp_path / "acq" / MANIFEST).read_text())["images"]
    sources = [i["source"] for i in listed if i["category"] == "medical_acquired"]
    for name, _ in ACQUIRED_DICOM:
        assert sum(source.startswith(f"pydicom {name}:") for source in sources) == 2, name
    first, second = paths[0], paths[len(ACQUIRED_DICOM)]  # one file at two windows
    assert first.name.rsplit("_", 1)[0] == second.name.rsplit("_", 1)[0]
    assert not np.array_equal(decode_image(first).pixels, decode_image(second).pixels)
    for path in paths:
        pixels = decode_image(path).pixels
        assert min(pixels.shape) >= 512 and float(pixels.std()) > 0.05, path.name  # a picture, not a blank


def test_the_rules_see_what_the_corpus_promises(tiny_corpus: dict[str, list[Path]]) -> None:
    """CT/MR DICOMs with their Modality are refused by the rule gate, without it they reach the signals."""
    gate = InputGate()
    for category, refused in (("ct_dicom", True), ("mr_dicom", True), ("ct_dicom_untagged", False)):
        for path in tiny_corpus[category]:
            assert (not gate.evaluate(decode_image(path)).accepted) is refused, path


def _test_phantoms(bundle: Path, count: int) -> list[Path]:
    root = Path(load_bundle(bundle).manifest.calibration["root"])
    names = set((root / "test_list.txt").read_text().split())
    return sorted(p for p in root.rglob("*.png") if p.name in names)[:count]


def test_the_study_counts_add_up_and_match_the_predictor(
    gated_bundle: Path, tiny_corpus: dict[str, list[Path]], tmp_path: Path
) -> None:
    clear_bundle_cache()
    corpus = {c: paths[:1] for c, paths in tiny_corpus.items()}
    inside = _test_phantoms(gated_bundle, 10)
    study = run_study(gated_bundle, inside, corpus, threads=1, rules=SMALL_RULES, cost_pairs=2)
    assert list(study["models"]) == ["onnx", "onnx-int8"]
    assert study["cost_pairs"] == 2
    for name, summary in study["models"].items():
        assert summary["in_distribution"]["images"] == len(inside)
        assert list(summary["categories"]) == list(CATEGORIES)
        for row in [summary["in_distribution"], summary["corpus"], *summary["categories"].values()]:
            parts = row["accepted"] + row["refused_by_rules"] + row["refused_by_signals"] + row["unreadable"]
            assert parts == row["images"]
        assert summary["corpus"]["images"] == sum(c["images"] for c in summary["categories"].values())
        assert summary["categories"]["ct_dicom"]["refused_by_rules"] == 1
        assert {"feature_mahalanobis", "autoencoder_ssim", "quality_framing"} <= set(summary["signals"])
        for signal in ("feature_mahalanobis", "autoencoder_ssim"):
            assert 0.0 <= summary["auroc"][signal] <= 1.0
        assert 0.0 <= summary["auroc_combined"] <= 1.0
        assert summary["gate_ms_median"] > 0 and summary["inference_ms_median"] > 0
        low, high = summary["gate_cost_interval"]
        assert low <= high and np.isfinite([low, high]).all()
        rows = study["images"][name]
        assert len(rows) == len(inside) + len(CATEGORIES)
        for row in rows:  # the learned signals score every image, even one a rule refuses
            assert {"feature_mahalanobis", "autoencoder_ssim"} <= set(row["scores"])
    agreement = study["agreement"]["onnx-int8"]
    assert agreement["images"] == len(inside) + len(CATEGORIES)
    assert agreement["agree"] + len(agreement["disagree"]) == agreement["images"]
    text = table(study)
    assert all(category in text for category in CATEGORIES)

    # The study's decision is the Predictor's: refused exactly when predict_file raises.
    bundle = load_bundle(gated_bundle)
    with Predictor(bundle, open_backend(bundle, model="onnx", threads=1), gate=SMALL_RULES) as predictor:
        for row in study["images"]["onnx"]:
            try:
                predictor.predict_file(row["path"])
            except ImageRefusedError:
                refused = True
            else:
                refused = False
            assert refused == (row["decision"] != "accepted"), row
    assert any(
        r["decision"] == "accepted" for r in study["images"]["onnx"] if r["category"] == IN_DISTRIBUTION
    )


def test_the_study_command_writes_json(gated_bundle: Path, tmp_path: Path) -> None:
    clear_bundle_cache()
    folder = Path(load_bundle(gated_bundle).manifest.calibration["root"])
    out = tmp_path / "study.json"
    args = [str(gated_bundle), "--in-distribution", str(folder), "--limit", "4", "--per-category", "1"]
    args += ["--min-side", "32", "--threads", "1", "--models", "onnx", "--corpus", str(tmp_path / "c")]
    assert main([*args, "--out", str(out)]) == 0
    study = json.loads(out.read_text())
    assert study["models"]["onnx"]["in_distribution"]["images"] == 4
    assert study["models"]["onnx"]["corpus"]["images"] == len(CATEGORIES)
    assert (tmp_path / "c" / MANIFEST).is_file()
    assert np.isfinite(study["models"]["onnx"]["auroc"]["feature_mahalanobis"])


def test_the_cost_interval_is_a_seeded_bootstrap_around_the_median_ratio() -> None:
    rng = np.random.default_rng(5)
    inference = list(rng.normal(3.0, 0.1, 60))
    added = list(rng.normal(0.36, 0.05, 60))
    low, high = cost_interval(added, inference)
    point = float(np.median(added) / np.median(inference))
    assert low < point < high and high - low < 0.05
    assert cost_interval(added, inference) == [low, high]  # seeded: the same interval every time
    # twice the spread between images, a wider interval
    wide = cost_interval([0.36 + 2 * (a - 0.36) for a in added], inference)
    assert wide[1] - wide[0] > high - low
    # images without a time are left out; fewer than two left, no interval
    assert cost_interval([float("nan"), *added[:2]], [3.0, *inference[:2]]) is not None
    assert cost_interval([float("nan"), 0.3], [3.0, 3.0]) is None


def test_the_study_command_refuses_no_timed_pairs(
    gated_bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([str(gated_bundle), "--in-distribution", str(gated_bundle), "--cost-pairs", "0"])
    assert exit_info.value.code == 2
    assert "--cost-pairs 0; expected at least 1" in capsys.readouterr().err
    with pytest.raises(GateStudyError, match="cost pairs 0; expected at least 1"):
        run_study(
            gated_bundle, _test_phantoms(gated_bundle, 1), {}, threads=1, rules=SMALL_RULES, cost_pairs=0
        )
