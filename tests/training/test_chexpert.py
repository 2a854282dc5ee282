"""CheXpert loader, uncertainty policies and study-level aggregation on tiny fake data (real JPEGs)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cxr_core.errors import DatasetError
from cxr_core.labels import CHESTXRAY14, CHEXPERT, CHEXPERT_LABELS
from training.data.chexpert import load_chexpert, resolve_image_path
from training.data.loading import load_dataset
from training.data.policies import EncodedTargets, encode_targets, resolve_policy
from training.data.records import ImageRecord
from training.data.studies import aggregate_by_study

HEADER = "Path,Sex,Age,Frontal/Lateral,AP/PA," + ",".join(CHEXPERT_LABELS)
CELLS = ["1.0", "0.0", "-1.0", ""]
FOLDER = "CheXpert-v1.0-small"


def write_jpeg(path: Path, seed: int, size: int = 64) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size, size), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def label_cells(patient: int, study: int, valid: bool) -> list[str]:
    cells = [CELLS[(patient + study + j) % 4] for j in range(len(CHEXPERT_LABELS))]
    return [c if c in ("1.0", "0.0") or not valid else "0.0" for c in cells]  # valid.csv: no -1, no blanks


def build_chexpert(parent: Path, *, folder: str = FOLDER, n_train: int = 16, n_valid: int = 3) -> Path:
    """Write {train,valid}.csv and JPEGs: 2 studies per train patient, a frontal and a lateral per study."""
    dataset = parent / folder
    for split, first, count in (("train", 1, n_train), ("valid", 64541, n_valid)):
        lines = [HEADER]
        for patient in range(first, first + count):
            studies = 2 if split == "train" else 1
            for study in range(1, studies + 1):
                cells = ",".join(label_cells(patient, study, split == "valid"))
                sex, age = ("Male", "60") if patient % 2 else ("Female", "45")
                base = f"{split}/patient{patient:05d}/study{study}"
                for view, kind, ap_pa in (
                    ("view1_frontal", "Frontal", "AP" if study == 1 else "PA"),
                    ("view2_lateral", "Lateral", ""),
                ):
                    rel = f"{base}/{view}.jpg"
                    lines.append(f"{FOLDER}/{rel},{sex},{age},{kind},{ap_pa},{cells}")
                    write_jpeg(dataset / rel, seed=patient * 10 + study)
        (dataset / f"{split}.csv").write_text("\n".join(lines) + "\n")
    return dataset


def test_both_root_choices_resolve_paths(tmp_path: Path) -> None:
    dataset = build_chexpert(tmp_path)
    from_dataset = load_chexpert(dataset)
    from_parent = load_chexpert(tmp_path)
    assert from_dataset == from_parent
    every = from_dataset.train + from_dataset.val + from_dataset.test
    assert every and all(r.path.is_file() for r in every)
    assert every[0].path == dataset / "train" / "patient00001" / "study1" / "view1_frontal.jpg"


def test_renamed_folder_still_resolves(tmp_path: Path) -> None:
    build_chexpert(tmp_path, folder="my-chexpert-copy")
    splits = load_chexpert(tmp_path / "my-chexpert-copy")
    assert all(r.path.is_file() for r in splits.train)


def test_resolve_image_path_variants(tmp_path: Path) -> None:
    target = tmp_path / "train" / "patient00001" / "study1" / "view1_frontal.jpg"
    assert (
        resolve_image_path(tmp_path, "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg")
        == target
    )
    assert resolve_image_path(tmp_path, "CheXpert-v1.0/train/patient00001/study1/view1_frontal.jpg") == target
    assert resolve_image_path(tmp_path, "train/patient00001/study1/view1_frontal.jpg") == target
    assert (
        resolve_image_path(tmp_path, "CheXpert-v1.0-small\\train\\patient00001\\study1\\view1_frontal.jpg")
        == target
    )
    assert resolve_image_path(tmp_path, "/data/x/train/p.jpg") == Path("/data/x/train/p.jpg")


def test_records_parsed_from_rows_and_paths(tmp_path: Path) -> None:
    build_chexpert(tmp_path)
    splits = load_chexpert(tmp_path, frontal_only=False, val_fraction=0.0)
    by_path = {str(r.path.relative_to(tmp_path / FOLDER)): r for r in splits.train}
    rec = by_path["train/patient00002/study1/view1_frontal.jpg"]
    assert rec.patient_id == "patient00002" and rec.study_id == "patient00002/study1"
    assert rec.view == "AP" and rec.frontal and rec.sex == "F" and rec.age == 45.0
    # Cells cycle 1.0, 0.0, -1.0, blank starting at (patient + study) % 4 = 3 -> blank first.
    assert math.isnan(rec.labels[0]) and rec.labels[1:4] == (1.0, 0.0, -1.0)
    lateral = by_path["train/patient00002/study1/view2_lateral.jpg"]
    assert not lateral.frontal and lateral.view == "LATERAL" and lateral.study_id == rec.study_id
    assert by_path["train/patient00002/study2/view1_frontal.jpg"].view == "PA"


def test_frontal_only_filters_laterals(tmp_path: Path) -> None:
    build_chexpert(tmp_path)
    frontal = load_chexpert(tmp_path)
    both = load_chexpert(tmp_path, frontal_only=False)
    assert all(r.frontal for r in frontal.train + frontal.val + frontal.test)
    assert len(both.train) + len(both.val) == 2 * (len(frontal.train) + len(frontal.val)) == 64
    assert len(both.test) == 6 and len(frontal.test) == 3


def test_default_splits_use_valid_csv_as_test_and_patient_holdout(tmp_path: Path) -> None:
    build_chexpert(tmp_path)
    splits = load_chexpert(tmp_path, seed=5)
    assert {r.patient_id for r in splits.test} == {"patient64541", "patient64542", "patient64543"}
    val_patients = {r.patient_id for r in splits.val}
    assert len(val_patients) == 2  # 16 train patients / 8
    assert not val_patients & {r.patient_id for r in splits.train}
    assert load_chexpert(tmp_path, seed=5) == splits
    alt = load_dataset("chexpert", tmp_path, val_source="valid_csv")
    assert len(alt.train) == 32 and len(alt.val) == 3 and alt.test == ()
    with pytest.raises(ValueError, match="val_source"):
        load_chexpert(tmp_path, val_source="valid")


def test_missing_columns_bad_values_and_missing_files(tmp_path: Path) -> None:
    dataset = build_chexpert(tmp_path)
    train = dataset / "train.csv"
    lines = train.read_text().splitlines()
    lines[3] = lines[3][: lines[3].rindex(",")] + ",2.0"
    train.write_text("\n".join(lines) + "\n")
    (dataset / "train" / "patient00003" / "study1" / "view1_frontal.jpg").unlink()
    valid = dataset / "valid.csv"
    valid.write_text(valid.read_text().replace("Pleural Effusion", "Pleural Efusion"))
    with pytest.raises(DatasetError) as info:
        load_chexpert(tmp_path)
    message = str(info.value)
    assert "'Support Devices': '2.0'" in message and "line 4" in message
    assert "'Pleural Effusion' (did you mean 'Pleural Efusion'?)" in message
    assert "patient00003/study1/view1_frontal.jpg" in message and "1 of" in message


def test_missing_dataset_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no train.csv"):
        load_chexpert(tmp_path)


# ----- uncertainty policies, on hand-written rows ---------------------------------------------------
NAN = math.nan
ROWS = [
    (1.0, 0.0, -1.0, NAN) + (0.0,) * 10,
    (-1.0, -1.0, NAN, 1.0) + (-1.0,) * 10,
]


def hand_records() -> list[ImageRecord]:
    return [ImageRecord(Path(f"/x/{i}.jpg"), row, f"p{i}", f"p{i}/study1") for i, row in enumerate(ROWS)]


@pytest.mark.parametrize(
    ("policy", "uncertain_target", "uncertain_mask"),
    [("u-ignore", 0.0, 0.0), ("u-zeros", 0.0, 1.0), ("u-ones", 1.0, 1.0), ("U_Ones", 1.0, 1.0)],
)
def test_binary_policies(policy: str, uncertain_target: float, uncertain_mask: float) -> None:
    encoded = encode_targets(hand_records(), CHEXPERT, policy)
    assert encoded.targets.dtype == np.float32 and encoded.mask.dtype == np.float32
    assert encoded.targets.shape == (2, 14) and not encoded.multiclass
    u = uncertain_target
    # Row 0: positive, negative, uncertain, blank (-> negative, counted).
    assert encoded.targets[0, :4].tolist() == [1.0, 0.0, u, 0.0]
    assert encoded.mask[0, :4].tolist() == [1.0, 1.0, uncertain_mask, 1.0]
    assert encoded.targets[1].tolist() == [u, u, 0.0, 1.0] + [u] * 10


def test_multiclass_policy() -> None:
    encoded = encode_targets(hand_records(), CHEXPERT, "u-multiclass")
    assert encoded.multiclass and encoded.targets.dtype == np.int64
    assert encoded.targets[0, :4].tolist() == [1, 0, 2, 0]
    assert encoded.targets[1, :4].tolist() == [2, 2, 0, 1]
    assert encoded.mask.min() == 1.0


def test_chexpert_paper_preset_and_mappings() -> None:
    policies = dict(zip(CHEXPERT_LABELS, resolve_policy("chexpert-paper", CHEXPERT), strict=True))
    assert policies["Atelectasis"] == policies["Edema"] == "u-ones"
    assert policies["Cardiomegaly"] == policies["Consolidation"] == policies["Pleural Effusion"] == "u-zeros"
    assert policies["Fracture"] == "u-ignore"
    uncertain = [ImageRecord(Path("/x.jpg"), (-1.0,) * 14, "p", "p/study1")]
    encoded = encode_targets(uncertain, CHEXPERT, "chexpert-paper")
    index = CHEXPERT.index
    assert encoded.targets[0, index("Atelectasis")] == 1.0 and encoded.mask[0, index("Atelectasis")] == 1.0
    assert encoded.targets[0, index("Cardiomegaly")] == 0.0 and encoded.mask[0, index("Cardiomegaly")] == 1.0
    assert encoded.mask[0, index("Fracture")] == 0.0
    custom = encode_targets(uncertain, CHEXPERT, {"Edema": "u-ones", "*": "u-zeros"})
    assert custom.targets[0].sum() == 1.0 and custom.mask.min() == 1.0
    # The preset skips names the label set lacks (ChestX-ray14 spells it "Effusion").
    assert set(resolve_policy("chexpert-paper", CHESTXRAY14)) == {"u-ones", "u-zeros", "u-ignore"}


def test_policy_errors() -> None:
    with pytest.raises(ValueError, match="did you mean 'u-ones'"):
        resolve_policy("u-one", CHEXPERT)
    with pytest.raises(ValueError, match="did you mean 'Pleural Effusion'"):
        resolve_policy({"Pleural Efusion": "u-ones"}, CHEXPERT)
    with pytest.raises(ValueError, match="every label or to none"):
        resolve_policy({"Edema": "u-multiclass", "*": "u-ones"}, CHEXPERT)
    bad = [ImageRecord(Path("/bad.jpg"), (2.0,) + (0.0,) * 13, "p", "p/s")]
    with pytest.raises(DatasetError, match="/bad.jpg"):
        encode_targets(bad, CHEXPERT, "u-ones")


def test_encoded_targets_subset() -> None:
    encoded = encode_targets(hand_records(), CHEXPERT, "u-ignore")
    sub = encoded.subset([1])
    assert isinstance(sub, EncodedTargets) and len(sub) == 1
    assert np.array_equal(sub.targets[0], encoded.targets[1]) and np.array_equal(sub.mask[0], encoded.mask[1])


# ----- study-level aggregation ---------------------------------------------------------------------
def test_aggregate_by_study_takes_the_max() -> None:
    scores = np.array([[0.1, 0.9], [0.7, 0.2], [0.3, 0.3], [0.5, 0.4]], dtype=np.float32)
    studies = ["p1/study1", "p2/study1", "p1/study1", "p2/study1"]
    agg, ids = aggregate_by_study(scores, studies)
    assert ids == ("p1/study1", "p2/study1")
    assert agg.dtype == np.float32
    assert np.array_equal(agg, np.array([[0.3, 0.9], [0.7, 0.4]], dtype=np.float32))
    targets = np.array([[0, 1], [0, 0], [1, 0], [0, 0]], dtype=np.float32)
    agg_targets, _ = aggregate_by_study(targets, studies)
    assert agg_targets.tolist() == [[1.0, 1.0], [0.0, 0.0]]
    with pytest.raises(ValueError, match="one study id per row"):
        aggregate_by_study(scores, studies[:3])


def test_chexpert_study_aggregation_end_to_end(tmp_path: Path) -> None:
    build_chexpert(tmp_path)
    splits = load_chexpert(tmp_path, frontal_only=False, val_source="valid_csv")
    encoded = encode_targets(splits.val, CHEXPERT, "u-zeros")
    agg, ids = aggregate_by_study(encoded.targets, [r.study_id for r in splits.val])
    assert len(ids) == 3 and agg.shape == (3, 14)  # frontal + lateral of each study collapse to one row
    assert np.array_equal(agg, encoded.targets[::2])
