"""ChestX-ray14 loader on tiny fake datasets written in the real NIH layout (real PNG files)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_core.errors import DatasetError
from cxr_core.labels import CHESTXRAY14_LABELS
from training.data.checks import check_patient_overlap
from training.data.chestxray14 import load_chestxray14
from training.data.loading import load_dataset
from training.data.records import ImageRecord

HEADER_2017 = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],"
)
HEADER_2020 = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Sex,View Position,"
    "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]"
)
FINDING_CELLS = ["No Finding", "Atelectasis|Effusion", "Cardiomegaly", "Mass|Nodule|Pneumothorax", "Hernia"]


def write_png(path: Path, seed: int, size: int = 64) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size, size), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def build_nih(
    root: Path,
    *,
    n_patients: int = 20,
    per_patient: int = 2,
    n_test_patients: int = 4,
    variant: str = "2017",
    flat_images: bool = False,
) -> dict[str, list[str]]:
    """Write a ChestX-ray14 layout: CSV, split lists and 64 px PNGs in images_00N/images/ (or images/)."""
    root.mkdir(parents=True, exist_ok=True)
    header = HEADER_2017 if variant == "2017" else HEADER_2020
    lines, train_val, test = [header], [], []
    for patient in range(1, n_patients + 1):
        for follow_up in range(per_patient):
            name = f"{patient:08d}_{follow_up:03d}.png"
            findings = FINDING_CELLS[(patient + follow_up) % len(FINDING_CELLS)]
            age = f"{30 + patient:03d}Y" if variant == "2020" else str(30 + patient)
            sex = "M" if patient % 2 else "F"
            view = "PA" if follow_up % 2 == 0 else "AP"
            row = f"{name},{findings},{follow_up},{patient},{age},{sex},{view},64,64,0.143,0.143"
            lines.append(row + ("," if variant == "2017" else ""))
            folder = root / "images" if flat_images else root / f"images_{1 + patient % 2:03d}" / "images"
            write_png(folder / name, seed=patient * 100 + follow_up)
            (test if patient > n_patients - n_test_patients else train_val).append(name)
    csv_name = "Data_Entry_2017.csv" if variant == "2017" else "Data_Entry_2017_v2020.csv"
    (root / csv_name).write_text("\n".join(lines) + "\n")
    (root / "train_val_list.txt").write_text("\n".join(train_val) + "\n")
    (root / "test_list.txt").write_text("\n".join(test) + "\n")
    return {"train_val": train_val, "test": test}


def names(records: tuple[ImageRecord, ...]) -> set[str]:
    return {record.path.name for record in records}


def rewrite_csv(root: Path, edit) -> None:
    path = root / "Data_Entry_2017.csv"
    path.write_text("\n".join(edit(path.read_text().splitlines())) + "\n")


def test_2017_header_parsed_into_records(tmp_path: Path) -> None:
    build_nih(tmp_path)
    splits = load_chestxray14(tmp_path)
    records = {r.path.name: r for r in splits.train + splits.val + splits.test}
    assert len(records) == 40
    rec = records["00000001_000.png"]  # patient 1, follow-up 0 -> FINDING_CELLS[1]
    expected = [1.0 if label in ("Atelectasis", "Effusion") else 0.0 for label in CHESTXRAY14_LABELS]
    assert rec.labels == tuple(expected)
    assert rec.patient_id == "1" and rec.study_id == "00000001_000"
    assert rec.view == "PA" and rec.frontal is True
    assert rec.age == 31.0 and rec.sex == "M"
    assert rec.path == tmp_path / "images_002" / "images" / "00000001_000.png" and rec.path.is_file()
    assert records["00000005_000.png"].labels == (0.0,) * 14  # No Finding
    assert splits.name == "chestxray14" and splits.label_set.labels == CHESTXRAY14_LABELS


def test_2020_header_flat_images_and_newest_csv_preferred(tmp_path: Path, caplog) -> None:
    build_nih(tmp_path, variant="2020", flat_images=True)
    # An older, broken 2017 file beside it must be ignored in favour of the v2020 revision.
    broken = HEADER_2017 + "\n00000001_000.png,Bogus,0,1,31,M,PA,64,64,1,1,\n"
    (tmp_path / "Data_Entry_2017.csv").write_text(broken)
    with caplog.at_level("INFO", logger="training.data.chestxray14"):
        splits = load_chestxray14(tmp_path)
    assert "Data_Entry_2017_v2020.csv" in caplog.text
    rec = next(r for r in splits.train + splits.val + splits.test if r.path.name == "00000002_001.png")
    assert rec.sex == "F" and rec.age == 32.0 and rec.view == "AP"
    assert rec.path.parent == tmp_path / "images"


def test_official_test_split_respected_and_val_is_patient_level(tmp_path: Path) -> None:
    lists = build_nih(tmp_path, n_patients=20, n_test_patients=4)
    splits = load_chestxray14(tmp_path, val_fraction=0.125, seed=3)
    assert names(splits.test) == set(lists["test"])
    assert names(splits.train) | names(splits.val) == set(lists["train_val"])
    assert not names(splits.train) & names(splits.val)
    val_patients = {r.patient_id for r in splits.val}
    assert len(val_patients) == 2  # round(16 train/val patients / 8)
    assert not val_patients & {r.patient_id for r in splits.train}
    assert len(splits.val) == 4  # whole patients: both images of each held-out patient


def test_val_split_deterministic_by_seed(tmp_path: Path) -> None:
    build_nih(tmp_path, n_patients=20)
    first = load_chestxray14(tmp_path, seed=7)
    again = load_chestxray14(tmp_path, seed=7)
    assert first == again
    others = {frozenset(r.patient_id for r in load_chestxray14(tmp_path, seed=s).val) for s in range(8)}
    assert len(others) > 1  # the seed changes which patients are held out


def test_planted_patient_overlap_between_train_val_and_test(tmp_path: Path) -> None:
    build_nih(tmp_path)
    # Move one image of patient 3 (otherwise in train/val) to the test list.
    train_val = (tmp_path / "train_val_list.txt").read_text().split()
    train_val.remove("00000003_001.png")
    (tmp_path / "train_val_list.txt").write_text("\n".join(train_val) + "\n")
    with open(tmp_path / "test_list.txt", "a") as handle:
        handle.write("00000003_001.png\n")
    with pytest.raises(DatasetError, match="patient") as info:
        load_chestxray14(tmp_path, val_fraction=0.0)
    message = str(info.value)
    assert "'train'" in message and "'test'" in message and ": 3" in message


def test_check_patient_overlap_lists_ids() -> None:
    def rec(patient: str) -> ImageRecord:
        return ImageRecord(Path(f"/x/{patient}.png"), (0.0,), patient, patient)

    check_patient_overlap({"train": [rec("a"), rec("b")], "test": [rec("c")]})
    with pytest.raises(DatasetError) as info:
        check_patient_overlap({"train": [rec("a"), rec("b")], "val": [rec("b")], "test": [rec("a")]})
    message = str(info.value)
    assert "'train' and the 'val'" in message and "'train' and the 'test'" in message
    assert ": b" in message and ": a" in message


def test_unknown_label_names_listed_with_rows(tmp_path: Path) -> None:
    build_nih(tmp_path)
    rewrite_csv(tmp_path, lambda lines: [line.replace("Cardiomegaly", "Cardiomegally") for line in lines])
    with pytest.raises(DatasetError) as info:
        load_chestxray14(tmp_path)
    message = str(info.value)
    assert "'Cardiomegally' (did you mean 'Cardiomegaly'?)" in message
    assert "line 4 (00000002_000.png)" in message  # the first Cardiomegaly row


def test_missing_required_column(tmp_path: Path) -> None:
    build_nih(tmp_path)
    rewrite_csv(tmp_path, lambda lines: [lines[0].replace("Patient ID", "Patient_Id")] + lines[1:])
    with pytest.raises(DatasetError) as info:
        load_chestxray14(tmp_path)
    assert "'Patient ID' (did you mean 'Patient_Id'?)" in str(info.value)


def test_missing_image_files_counted_and_listed(tmp_path: Path) -> None:
    lists = build_nih(tmp_path)
    gone = sorted(lists["train_val"])[:7]
    for folder in tmp_path.glob("images_*/images"):
        for name in gone:
            (folder / name).unlink(missing_ok=True)
    with pytest.raises(DatasetError) as info:
        load_chestxray14(tmp_path)
    message = str(info.value)
    assert "7 of 40 image file(s)" in message
    assert all(name in message for name in gone[:5]) and "(2 more)" in message
    splits = load_chestxray14(tmp_path, allow_missing_images=True)
    kept = names(splits.train + splits.val + splits.test)
    assert len(kept) == 33 and not kept & set(gone)


def test_every_problem_reported_in_one_error(tmp_path: Path) -> None:
    build_nih(tmp_path)
    rewrite_csv(tmp_path, lambda lines: [line.replace("Hernia", "Hernea") for line in lines])
    next(tmp_path.glob("images_*/images/00000001_000.png")).unlink()
    with open(tmp_path / "test_list.txt", "a") as handle:
        handle.write("99999999_000.png\n")
    with pytest.raises(DatasetError) as info:
        load_chestxray14(tmp_path)
    message = str(info.value)
    assert "'Hernea'" in message
    assert "00000001_000.png" in message and "not on disk" in message
    assert "99999999_000.png" in message and "absent from the metadata CSV" in message


def test_image_in_both_lists_refused(tmp_path: Path) -> None:
    lists = build_nih(tmp_path)
    with open(tmp_path / "test_list.txt", "a") as handle:
        handle.write(lists["train_val"][0] + "\n")
    with pytest.raises(DatasetError, match="listed in both") as info:
        load_chestxray14(tmp_path)
    assert lists["train_val"][0] in str(info.value)


def test_missing_csv_and_missing_lists(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="Data_Entry_2017"):
        load_chestxray14(tmp_path)
    build_nih(tmp_path)
    (tmp_path / "test_list.txt").unlink()
    with pytest.raises(DatasetError, match="test_list.txt is missing"):
        load_chestxray14(tmp_path)
    splits = load_chestxray14(tmp_path, official_split=False, test_fraction=0.25, seed=1)
    assert len({r.patient_id for r in splits.test}) == 5  # a quarter of 20 patients
    check_patient_overlap(splits)


def test_load_dataset_dispatch_and_option_errors(tmp_path: Path) -> None:
    build_nih(tmp_path)
    assert load_dataset("chestxray14", tmp_path, seed=2) == load_chestxray14(tmp_path, seed=2)
    synthetic = load_dataset("synthetic", tmp_path)
    assert synthetic.name == "synthetic" and len(synthetic.test) == 8
    with pytest.raises(ValueError, match="did you mean 'chestxray14'"):
        load_dataset("chestxray-14", tmp_path)
    with pytest.raises(ValueError, match="did you mean 'val_fraction'"):
        load_dataset("chestxray14", tmp_path, val_fracton=0.1)
    with pytest.raises(ValueError, match="val_fraction=1.5"):
        load_dataset("chestxray14", tmp_path, val_fraction=1.5)


def test_age_out_of_range_is_unknown(tmp_path: Path) -> None:
    build_nih(tmp_path, n_patients=6, n_test_patients=2)
    rewrite_csv(tmp_path, lambda lines: [lines[0]] + [lines[1].replace(",31,M,", ",414,M,")] + lines[2:])
    splits = load_chestxray14(tmp_path)
    rec = next(r for r in splits.train + splits.val + splits.test if r.path.name == "00000001_000.png")
    assert rec.age is None
    assert not math.isnan(splits.train[0].labels[0])
