"""The synthetic phantom generator: layouts, determinism, splits, prevalence, visible signs, safety.

Real files are written (small: a few dozen images at 64-128 px) and read back with the csv module
and Pillow, and with the project's own ChestX-ray14 and CheXpert loaders.
"""

from __future__ import annotations

import csv
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_core.labels import CHESTXRAY14_LABELS, CHEXPERT_LABELS
from training.data import synthetic
from training.data.loading import load_dataset
from training.data.phantom import DRAWABLE_FINDINGS, draw_scene, render_phantom
from training.data.synthetic import (
    DATA_ENTRY_HEADER,
    SyntheticOutputError,
    generate_chestxray14,
    generate_chexpert,
)
from training.data.synthetic_cli import main
from training.data.synthetic_labels import (
    PREVALENCE_PRESETS,
    choose_test_patients,
    plan_chestxray14,
    plan_chexpert,
)

HEADER_FIELDS = [
    "Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
    "View Position", "OriginalImage[Width", "Height]", "OriginalImagePixelSpacing[x", "y]", "",
]  # fmt: skip
PATH_PATTERN = r"CheXpert-v1\.0-small/(train|valid)/patient\d{5}/study\d+/view[12]_(frontal|lateral)\.jpg"
CHEXPERT_HEADER = "Path,Sex,Age,Frontal/Lateral,AP/PA," + ",".join(CHEXPERT_LABELS)


def read_rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def nih_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("nih")
    generate_chestxray14(root, n_images=30, image_size=128, seed=11, workers=1, progress=False)
    return root


# -- ChestX-ray14 layout -----------------------------------------------------------------------
def test_chestxray14_header_rows_and_images(nih_set: Path) -> None:
    csv_path = nih_set / "Data_Entry_2017.csv"
    assert csv_path.read_text().splitlines()[0] == DATA_ENTRY_HEADER
    rows = read_rows(csv_path)
    assert rows[0] == HEADER_FIELDS
    assert len(rows) == 31 and all(len(r) == len(HEADER_FIELDS) for r in rows)
    known = set(CHESTXRAY14_LABELS)
    for name, findings, follow_up, patient, age, sex, view, w, h, sx, sy, empty in rows[1:]:
        assert re.fullmatch(r"\d{8}_\d{3}\.png", name)
        assert int(name[:8]) == int(patient) and int(name[9:12]) == int(follow_up)
        assert findings == "No Finding" or set(findings.split("|")) <= known
        assert 1 <= int(age) <= 95 and sex in ("M", "F") and view in ("PA", "AP")
        assert (int(w), int(h)) == (128, 128) and float(sx) == float(sy) > 0 and empty == ""
        with Image.open(nih_set / "images_001" / "images" / name) as img:
            assert (img.format, img.mode, img.size) == ("PNG", "L", (128, 128))
    assert not list(nih_set.rglob("*.tmp"))


def test_patients_have_several_follow_ups(nih_set: Path) -> None:
    per_patient = Counter(r[3] for r in read_rows(nih_set / "Data_Entry_2017.csv")[1:])
    assert max(per_patient.values()) >= 2
    assert len(per_patient) < 30


def test_patient_level_split_covers_every_image_once(nih_set: Path) -> None:
    rows = read_rows(nih_set / "Data_Entry_2017.csv")[1:]
    train_val = (nih_set / "train_val_list.txt").read_text().split()
    test = (nih_set / "test_list.txt").read_text().split()
    assert sorted(train_val + test) == sorted(r[0] for r in rows)
    assert test and train_val
    assert not {n[:8] for n in train_val} & {n[:8] for n in test}


def test_test_split_is_about_a_fifth_of_patients() -> None:
    plan = plan_chestxray14(3000, seed=2)
    patients = [p.patient_id for p in plan]
    test = choose_test_patients(patients, seed=2)
    assert 0.2 <= len(test) / len(set(patients)) <= 0.25


def test_images_are_batched_into_numbered_folders(tmp_path: Path) -> None:
    generate_chestxray14(
        tmp_path, n_images=25, image_size=64, workers=1, progress=False, images_per_folder=10
    )
    counts = {d.name: len(list((d / "images").glob("*.png"))) for d in sorted(tmp_path.glob("images_*"))}
    assert counts == {"images_001": 10, "images_002": 10, "images_003": 5}


def test_real_loader_reads_the_phantom_set(nih_set: Path) -> None:
    splits = load_dataset("synthetic", nih_set)
    records = splits.train + splits.val + splits.test
    assert len(records) == 30 and all(r.path.is_file() for r in records)
    test_patients = {r.patient_id for r in splits.test}
    assert not test_patients & {r.patient_id for r in splits.train + splits.val}


# -- determinism ----------------------------------------------------------------------------------
def test_same_seed_identical_bytes_across_worker_counts(tmp_path: Path) -> None:
    one, two, other = tmp_path / "one", tmp_path / "two", tmp_path / "other"
    generate_chestxray14(one, n_images=12, image_size=96, seed=5, workers=1, progress=False)
    generate_chestxray14(two, n_images=12, image_size=96, seed=5, workers=2, progress=False)
    generate_chestxray14(other, n_images=12, image_size=96, seed=6, workers=1, progress=False)
    files_one, files_two = all_files(one), all_files(two)
    assert len(files_one) == 12 + 4  # images, CSV, two lists, marker
    assert files_one == files_two
    files_other = all_files(other)
    shared = set(files_one) & set(files_other)
    assert any(files_one[k] != files_other[k] for k in shared if k.endswith(".png"))


def test_render_is_deterministic_and_seed_dependent() -> None:
    a = render_phantom(["Nodule"], seed=3, size=64).image
    assert np.array_equal(a, render_phantom(["Nodule"], seed=3, size=64).image)
    assert not np.array_equal(a, render_phantom(["Nodule"], seed=4, size=64).image)


# -- prevalence and co-occurrence -----------------------------------------------------------------
@pytest.mark.parametrize("preset", sorted(PREVALENCE_PRESETS))
def test_label_prevalence_matches_preset(preset: str) -> None:
    plan = plan_chestxray14(20_000, seed=1, prevalence=preset)
    counts = Counter(f for p in plan for f in p.findings)
    for label, target in PREVALENCE_PRESETS[preset].items():
        assert counts[label] / len(plan) == pytest.approx(target, abs=0.015), label
    no_finding = sum(1 for p in plan if not p.findings) / len(plan)
    assert (0.45 <= no_finding <= 0.6) if preset == "realistic" else (0.15 <= no_finding <= 0.35)
    if preset == "balanced":
        assert min(counts[k] for k in CHESTXRAY14_LABELS) / len(plan) >= 0.07


def test_findings_co_occur_like_chestxray14() -> None:
    plan = plan_chestxray14(20_000, seed=4, prevalence="realistic")
    sets = [set(p.findings) for p in plan]

    def conditional(a: str, b: str) -> float:
        with_b = [s for s in sets if b in s]
        return sum(a in s for s in with_b) / len(with_b)

    def marginal(a: str) -> float:
        return sum(a in s for s in sets) / len(sets)

    assert conditional("Edema", "Cardiomegaly") > 3 * marginal("Edema")
    assert conditional("Effusion", "Cardiomegaly") > 2 * marginal("Effusion")
    assert conditional("Consolidation", "Pneumonia") > 3 * marginal("Consolidation")
    assert conditional("Infiltration", "Pneumonia") > 1.5 * marginal("Infiltration")


def test_follow_ups_are_correlated() -> None:
    plan = plan_chestxray14(5000, seed=3)
    pairs = [(a, b) for a, b in zip(plan, plan[1:], strict=False) if a.patient_id == b.patient_id]
    same = sum(a.findings == b.findings for a, b in pairs) / len(pairs)
    assert same > 0.45  # persistence 0.5 plus chance agreement of independent draws


def test_unknown_preset_suggests_the_right_one(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="did you mean 'balanced'"):
        generate_chestxray14(tmp_path, n_images=2, prevalence="balancd")


# -- the signs ------------------------------------------------------------------------------------
BRIGHTER = ["Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
            "Consolidation", "Edema", "Fibrosis", "Pleural_Thickening"]  # fmt: skip
DARKER = ["Pneumothorax", "Emphysema"]


def _box_diff(finding: str, seed: int, size: int = 256) -> tuple[np.ndarray, np.ndarray, float]:
    """Image with minus without ``finding`` (same patient), the box mask and the 128 px box max diff."""
    base = render_phantom([], seed=seed, size=size)
    sick = render_phantom([finding], seed=seed, size=size)
    diff = sick.image.astype(np.float32) - base.image
    x0, y0, x1, y1 = sick.geometry.pixel_box(sick.geometry.boxes[finding])
    mask = np.zeros(diff.shape, bool)
    mask[y0:y1, x0:x1] = True
    small = [np.asarray(Image.fromarray(p.image).resize((128, 128), Image.Resampling.BILINEAR), np.float32)
             for p in (sick, base)]  # fmt: skip
    f = 128 / size
    small_diff = (small[0] - small[1])[int(y0 * f) : int(np.ceil(y1 * f)), int(x0 * f) : int(np.ceil(x1 * f))]
    return diff, mask, float(np.abs(small_diff).max())


@pytest.mark.parametrize("finding", CHESTXRAY14_LABELS)
def test_each_sign_changes_pixels_where_expected(finding: str) -> None:
    for seed in (0, 1, 2):
        diff, mask, small_max = _box_diff(finding, seed)
        inside, outside = np.abs(diff[mask]).mean(), np.abs(diff[~mask]).mean()
        assert inside > 4.0 and inside > 4 * outside, (finding, seed, inside, outside)
        assert small_max > 40, (finding, seed, small_max)  # survives 256 -> 128 downsampling
        if finding in BRIGHTER:
            assert diff[mask].mean() > 3.0, (finding, seed)
        elif finding in DARKER:
            assert diff[mask].mean() < -3.0, (finding, seed)
        else:  # Hernia: a bright sac with a dark air cap
            assert diff[mask].max() > 12 and diff[mask].min() < -40, (finding, seed)


def test_cardiomegaly_has_a_cardiothoracic_ratio_above_half() -> None:
    for seed in range(8):
        for view in ("PA", "AP"):
            normal = render_phantom([], seed=seed, size=64, view=view).geometry
            big = render_phantom(["Cardiomegaly"], seed=seed, size=64, view=view).geometry
            assert 0.36 <= normal.ctr < 0.5 and big.ctr >= 0.55
            assert big.thorax_width == pytest.approx(normal.thorax_width)


def test_pneumothorax_rim_is_dark_and_has_no_markings() -> None:
    for seed in range(3):
        normal = draw_scene([], seed=seed, size=128)
        ptx = draw_scene(["Pneumothorax"], seed=seed, size=128)
        rim = ptx.keep == 0.0  # fully inside the pneumothorax
        assert rim.sum() > 50
        assert ptx.markings[rim].max() == 0.0 and normal.markings[rim].max() > 0.0
        assert ptx.canvas.density[rim].mean() < normal.canvas.density[rim].mean() - 0.1


def test_views_look_different() -> None:
    for seed in range(3):
        pa, ap = (render_phantom([], seed=seed, size=128, view=v) for v in ("PA", "AP"))
        lateral = render_phantom([], seed=seed, size=128, view="LATERAL").image.astype(np.float32)
        assert ap.geometry.ctr > pa.geometry.ctr
        frontal_gap = np.abs(pa.image.astype(np.float32) - ap.image).mean()
        assert np.abs(lateral - pa.image).mean() > 2 * frontal_gap
        # a side silhouette is far from left-right symmetric (density before pose and exposure)
        densities = [draw_scene([], seed=seed, size=128, view=v).canvas.density for v in ("PA", "LATERAL")]
        asymmetry = [np.abs(d - d[:, ::-1]).mean() for d in densities]
        assert asymmetry[1] > 1.8 * asymmetry[0]


def test_unknown_finding_and_view_are_refused() -> None:
    with pytest.raises(ValueError, match="Pneumothorx"):
        render_phantom(["Pneumothorx"])
    with pytest.raises(ValueError, match="OBLIQUE"):
        render_phantom(view="OBLIQUE")


def test_every_finding_draws_on_a_small_phantom() -> None:
    for view in ("PA", "AP", "LATERAL"):
        phantom = render_phantom(DRAWABLE_FINDINGS, seed=9, size=64, view=view)
        assert phantom.image.shape == (64, 64) and phantom.image.dtype == np.uint8


# -- CheXpert layout ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chexpert_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("chexpert")
    generate_chexpert(root, n_images=60, image_size=64, seed=2, workers=2, progress=False)
    return root


def test_chexpert_layout_values_and_laterals(chexpert_set: Path) -> None:
    folder = chexpert_set / "CheXpert-v1.0-small"
    train, valid = read_rows(folder / "train.csv"), read_rows(folder / "valid.csv")
    for path in (folder / "train.csv", folder / "valid.csv"):
        assert path.read_text().splitlines()[0] == CHEXPERT_HEADER
    assert len(train) > 1 and len(valid) > 1 and len(train) + len(valid) == 62
    train_cells = [c for r in train[1:] for c in r[5:]]
    assert "-1.0" in train_cells and "" in train_cells and set(train_cells) <= {"1.0", "0.0", "-1.0", ""}
    assert {c for r in valid[1:] for c in r[5:]} <= {"1.0", "0.0"}
    rows = train[1:] + valid[1:]
    laterals = [r for r in rows if r[3] == "Lateral"]
    assert laterals and all(r[4] == "" and "view2_lateral" in r[0] for r in laterals)
    assert all(r[4] in ("AP", "PA") and "view1_frontal" in r[0] for r in rows if r[3] == "Frontal")
    assert {r[1] for r in rows} <= {"Male", "Female"} and all(r[2].isdigit() for r in rows)
    for r in rows:
        assert re.fullmatch(PATH_PATTERN, r[0])
        with Image.open(chexpert_set / r[0]) as img:
            assert img.format == "JPEG" and img.size == (64, 64)
    assert not {r[0].split("/")[2] for r in train[1:]} & {r[0].split("/")[2] for r in valid[1:]}


def test_chexpert_study_views_share_labels(chexpert_set: Path) -> None:
    rows = read_rows(chexpert_set / "CheXpert-v1.0-small" / "train.csv")[1:]
    by_study: dict[str, set[tuple[str, ...]]] = {}
    for r in rows:
        by_study.setdefault(r[0].rsplit("/", 1)[0], set()).add(tuple(r[5:]))
    assert all(len(labels) == 1 for labels in by_study.values())


def test_chexpert_loader_reads_it(chexpert_set: Path) -> None:
    splits = load_dataset("chexpert", chexpert_set, frontal_only=False)
    assert len(splits.train) + len(splits.val) + len(splits.test) == 60


def test_chexpert_plan_maps_extras() -> None:
    plan = plan_chexpert(3000, seed=0)
    extras = Counter(e for p in plan for e in p.extras)
    assert {"Support Devices", "Fracture", "Enlarged Cardiomediastinum"} <= set(extras)
    assert 0.2 < sum(p.view == "LATERAL" for p in plan) / len(plan) < 0.3


# -- output safety and the CLI --------------------------------------------------------------------
def test_foreign_non_empty_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(SyntheticOutputError, match=re.escape(str(tmp_path))):
        generate_chestxray14(tmp_path, n_images=2, image_size=64, progress=False)
    generate_chestxray14(tmp_path, n_images=2, image_size=64, progress=False, overwrite=True)
    assert (tmp_path / "notes.txt").read_text() == "mine" and (tmp_path / "Data_Entry_2017.csv").is_file()


def test_previous_phantom_set_is_replaced_without_leftovers(tmp_path: Path) -> None:
    generate_chestxray14(tmp_path, n_images=12, image_size=64, workers=1, progress=False)
    generate_chestxray14(tmp_path, n_images=4, image_size=64, workers=1, progress=False)
    assert len(list(tmp_path.rglob("*.png"))) == 4
    assert len(read_rows(tmp_path / "Data_Entry_2017.csv")) == 5


def test_interrupted_run_leaves_no_index_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    generate_chestxray14(tmp_path, n_images=6, image_size=64, workers=1, progress=False)
    real_job = synthetic._render_job

    def failing_job(job: synthetic._Job) -> int:
        if job.index == 3:
            raise KeyboardInterrupt
        return real_job(job)

    monkeypatch.setattr(synthetic, "_render_job", failing_job)
    with pytest.raises(KeyboardInterrupt):
        generate_chestxray14(tmp_path, n_images=6, image_size=64, workers=1, progress=False)
    assert not (tmp_path / "Data_Entry_2017.csv").exists() and not (tmp_path / "test_list.txt").exists()
    assert '"complete": false' in (tmp_path / "cxr_synth.json").read_text()
    monkeypatch.undo()
    generate_chestxray14(tmp_path, n_images=6, image_size=64, workers=1, progress=False)  # recognised as ours
    assert len(read_rows(tmp_path / "Data_Entry_2017.csv")) == 7


def test_cli_writes_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "set"
    assert main([str(out), "--images", "8", "--size", "64", "--workers", "1", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and "Hernia" in printed and "No Finding" in printed
    assert len(list(out.rglob("*.png"))) == 8


def test_cli_refusal_names_the_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "data.csv").write_text("x")
    assert main([str(tmp_path), "--images", "2", "--size", "64", "--no-progress"]) == 2
    assert str(tmp_path) in capsys.readouterr().err


def test_cli_chexpert_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main([str(tmp_path), "--layout", "chexpert", "--images", "6", "--size", "64", "--no-progress"]) == 0
    )
    assert "uncertain" in capsys.readouterr().out
    assert (tmp_path / "CheXpert-v1.0-small" / "valid.csv").is_file()


def test_contact_sheet(tmp_path: Path) -> None:
    path = synthetic.write_contact_sheet(tmp_path / "sheet.png", tile=48)
    with Image.open(path) as img:
        assert img.size == (5 * 48, 4 * 48)


def test_generator_modules_do_not_import_torch() -> None:
    code = (
        "import sys, training.data.synthetic, training.data.synthetic_cli, training.data.phantom; "
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_phantom_renders_at_detector_like_sizes() -> None:
    """768 and 1024 px used to fail in the bone layer (an in-place multiply on a read-only array)."""
    from training.data.phantom import render_phantom

    for size in (768, 1024):
        phantom = render_phantom(["Fracture"], seed=1, size=size)
        assert phantom.image.shape == (size, size)
