"""The training run on real phantom files with real tiny models: outputs, evaluation, errors."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from cxr_core.errors import DatasetError
from cxr_core.labels import CHESTXRAY14
from training.checkpoint import load_checkpoint
from training.config import ConfigError, TrainConfig
from training.data.loading import load_dataset
from training.data.records import ImageRecord
from training.evaluation import evaluate_checkpoint, evaluation_truth
from training.trainer import TrainResult, run_training

RUN_FILES = (
    "config.yaml",
    "metrics.json",
    "metrics.csv",
    "roc.png",
    "pr.png",
    "summary.md",
    "best.pt",
    "last.pt",
    "train.log",
    "val_predictions.npz",
)


@pytest.fixture(scope="module")
def trained(tiny_config, tmp_path_factory: pytest.TempPathFactory) -> TrainResult:
    out = tmp_path_factory.mktemp("run") / "chexnet"
    return run_training(tiny_config(out, epochs=2, augment="hflip"))


def _aucs(report: dict) -> list[float]:
    return [c["auc"] if c["auc"] is not None else math.nan for c in report["classes"]]


def test_run_writes_every_artefact(trained: TrainResult) -> None:
    out = trained.out_dir
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert [e["epoch"] for e in metrics["epochs"]] == [1, 2]
    assert metrics["labels"] == list(CHESTXRAY14.labels)
    assert len(metrics["epochs"][0]["val"]["classes"]) == 14
    assert metrics["best_epoch"] == trained.best_epoch
    csv_lines = (out / "metrics.csv").read_text().splitlines()
    assert len(csv_lines) == 3 and "auc_Pleural_Thickening" in csv_lines[0]
    summary = (out / "summary.md").read_text()
    assert "| Pleural Thickening |" in summary and "| **Mean** |" in summary
    assert "epoch 2/2" in (out / "train.log").read_text()
    for name in ("roc.png", "pr.png"):
        with Image.open(out / name) as image:
            assert image.format == "PNG"
    stored = TrainConfig.from_dict(yaml.safe_load((out / "config.yaml").read_text()))
    assert stored.epochs == 2 and stored.augment == "hflip"


def test_checkpoints_carry_the_best_epoch_and_its_operating_points(trained: TrainResult) -> None:
    best, last = load_checkpoint(trained.best_checkpoint), load_checkpoint(trained.last_checkpoint)
    assert last.epoch == 2 and best.epoch == trained.best_epoch
    entry = trained.history[trained.best_epoch - 1]
    assert best.operating_points == pytest.approx(entry["operating_points"])
    assert best.best_metric == pytest.approx(max(e["val"]["mean_auc"] for e in trained.history))
    assert best.spec.input_size == 32 and best.model_config.encoder == "tiny-densenet"
    assert last.optimizer_state is not None and last.rng_state is not None
    assert last.run_config["out_dir"] == str(trained.out_dir)
    assert all(0.0 <= p <= 1.0 for p in best.operating_points)


def test_evaluating_best_checkpoint_reproduces_its_validation_metrics(
    trained: TrainResult, phantom_root: Path, tmp_path: Path
) -> None:
    result = evaluate_checkpoint(
        trained.best_checkpoint, "val", tmp_path / "val", device="cpu", progress=False
    )
    expected = trained.history[trained.best_epoch - 1]["val"]
    assert result.output.report.mean_auc == pytest.approx(expected["mean_auc"], abs=1e-9)
    np.testing.assert_allclose(_aucs(result.output.report.to_dict()), _aucs(expected), atol=1e-9)
    test = evaluate_checkpoint(
        trained.best_checkpoint, "test", tmp_path / "test", device="cpu", progress=False
    )
    assert test.output.report.n_samples == len(
        load_dataset("synthetic", phantom_root, val_fraction=0.25).test
    )
    for name in ("evaluation.json", "metrics.csv", "roc.png", "pr.png", "summary.md", "predictions.npz"):
        assert (tmp_path / "test" / name).is_file(), name
    saved = np.load(tmp_path / "test" / "predictions.npz")
    assert saved["probs"].shape == (test.output.report.n_samples, 14)
    report = json.loads((tmp_path / "test" / "evaluation.json").read_text())
    assert report["split"] == "test" and len(report["operating_points"]["sensitivity"]) == 14


def test_an_existing_run_is_not_overwritten(trained: TrainResult, tiny_config) -> None:
    with pytest.raises(ConfigError, match=r"already holds a run .*--resume"):
        run_training(tiny_config(trained.out_dir))


def _expected_schedule(aucs: list[float], lr: float, es_patience: int) -> tuple[list[float], int]:
    """The lr of each epoch (ReduceLROnPlateau, mode max, patience 0, x0.1) and where early stopping ends."""
    lrs, sched_best, best, bad = [], -math.inf, -math.inf, 0
    for i, auc in enumerate(aucs):
        lrs.append(lr)
        if auc > sched_best * (1 + 1e-4) if sched_best > 0 else auc > sched_best:
            sched_best = auc
        else:
            lr *= 0.1
        if auc > best:
            best, bad = auc, 0
        else:
            bad += 1
            if bad >= es_patience:
                return lrs, i + 1
    return lrs, len(aucs)


def test_plateau_schedule_and_early_stopping_follow_the_validation_auc(tiny_config, tmp_path: Path) -> None:
    config = tiny_config(
        tmp_path / "es",
        epochs=6,
        early_stopping_patience=2,
        scheduler_patience=0,
        max_train_batches=1,
        lr=3e-3,
    )
    result = run_training(config)
    aucs = [e["val"]["mean_auc"] for e in result.history]
    lrs, stop = _expected_schedule(aucs, 3e-3, 2)
    assert len(aucs) == stop and result.stopped_early == (stop < 6)
    assert [e["lr"] for e in result.history] == pytest.approx(lrs, rel=1e-9)
    assert result.best_epoch == int(np.argmax(aucs)) + 1


def test_cpu_bfloat16_autocast_and_channels_last(tiny_config, tmp_path: Path) -> None:
    result = run_training(tiny_config(tmp_path / "bf16", amp="bf16", channels_last="on", max_train_batches=2))
    assert math.isfinite(result.history[0]["train_loss"]) and math.isfinite(
        result.history[0]["val"]["mean_auc"]
    )
    assert "amp torch.bfloat16" in (tmp_path / "bf16" / "train.log").read_text()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fp16_gradscaler_run(tiny_config, tmp_path: Path) -> None:
    result = run_training(
        tiny_config(tmp_path / "cuda", device="cuda", amp="fp16", architecture="dgc", epochs=2)
    )
    assert all(math.isfinite(e["train_loss"]) for e in result.history)
    assert load_checkpoint(result.last_checkpoint).scaler_state is not None


def test_chexpert_phantoms_are_evaluated_per_study(tiny_config, tmp_path: Path) -> None:
    from training.data.synthetic import generate_chexpert

    root = tmp_path / "chexpert"
    generate_chexpert(root, n_images=60, image_size=64, seed=0, progress=False)
    config = tiny_config(
        tmp_path / "run",
        dataset="chexpert",
        data_root=str(root),
        frontal_only=False,
        uncertainty_policy="chexpert-paper",
    )
    splits = load_dataset("chexpert", root, val_fraction=0.25, frontal_only=False, seed=0)
    studies = {r.study_id for r in splits.val}
    assert len(studies) < len(splits.val)  # some studies have several images: aggregation matters
    result = run_training(config)
    assert result.history[0]["val"]["n_samples"] == len(studies)
    saved = np.load(tmp_path / "run" / "val_predictions.npz")
    assert sorted(saved["ids"].tolist()) == sorted(studies)


def test_augmentation_flips_and_rotates_reproducibly() -> None:
    from cxr_core.preprocess import PreprocessSpec
    from training.augment import build_augmentation

    spec = PreprocessSpec(input_size=16, resize_to=16)
    image = torch.arange(3 * 16 * 16, dtype=torch.float32).reshape(3, 16, 16) / 768.0
    assert build_augmentation("none", spec) is None
    flip = build_augmentation("hflip", spec)
    torch.manual_seed(0)
    outs = [flip(image) for _ in range(20)]
    flipped = [torch.equal(o, torch.flip(image, dims=(-1,))) for o in outs]
    assert any(flipped) and not all(flipped)
    assert all(f or torch.equal(o, image) for f, o in zip(flipped, outs, strict=True))
    rotate = build_augmentation("hflip-rotate", spec, degrees=20.0)
    torch.manual_seed(1)
    first = rotate(image)
    torch.manual_seed(1)
    assert torch.equal(rotate(image), first) and first.shape == image.shape
    black = (0.0 - spec.mean[0]) / spec.std[0]
    assert first[0].min() == pytest.approx(min(black, float(image[0].min())), abs=1e-4)


@pytest.mark.parametrize(
    ("loss", "head", "policy", "architecture"),
    [
        ("weighted-bce", "binary", "u-ignore", "chexnet"),
        ("batch-balanced-bce", "binary", "u-zeros", "dgc"),
        ("multiclass-ce", "multiclass3", "u-multiclass", "dgc-baseline"),
    ],
)
def test_losses_heads_and_architectures_train(
    tiny_config, tmp_path: Path, loss, head, policy, architecture
) -> None:
    config = tiny_config(
        tmp_path / loss,
        loss=loss,
        head=head,
        uncertainty_policy=policy,
        architecture=architecture,
        max_train_batches=2,
        max_val_batches=1,
    )
    before = {
        k: v.clone()
        for k, v in run_training(
            config.replace(out_dir=str(tmp_path / "init"), lr=1e-12, max_train_batches=1)
        )
        .model.state_dict()
        .items()
    }
    result = run_training(config)
    assert math.isfinite(result.history[0]["train_loss"])
    assert result.history[0]["val"]["n_samples"] == 8  # max_val_batches=1 x batch_size=8
    changed = [
        k
        for k, v in result.model.state_dict().items()
        if v.dtype.is_floating_point and not torch.equal(v, before[k])
    ]
    assert changed, "training changed no weight"
    assert load_checkpoint(result.last_checkpoint).model_config.head == head


def test_policy_and_head_must_fit(tiny_config, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'u-multiclass' needs head 'multiclass3'"):
        run_training(tiny_config(tmp_path / "bad", uncertainty_policy="u-multiclass"))


def _copy_with_corrupt_image(phantom_root: Path, tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "data"
    shutil.copytree(phantom_root, root)
    splits = load_dataset("synthetic", root, val_fraction=0.25)
    victim = Path(splits.train[3].path)
    victim.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    return root, victim


def test_corrupt_image_stops_the_run_naming_the_file(phantom_root: Path, tiny_config, tmp_path: Path) -> None:
    root, victim = _copy_with_corrupt_image(phantom_root, tmp_path)
    with pytest.raises(DatasetError, match=victim.name) as info:
        run_training(tiny_config(tmp_path / "run", data_root=str(root)))
    assert "pre-flight" in str(info.value)
    assert not (tmp_path / "run" / "last.pt").exists()
    # Without the pre-flight check the same file still stops the run, when it is reached.
    with pytest.raises(DatasetError, match=victim.name):
        run_training(tiny_config(tmp_path / "run2", data_root=str(root), skip_preflight=True))


def test_missing_image_is_named(phantom_root: Path, tiny_config, tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(phantom_root, root)
    victim = (
        next((root / "images").glob("*.png")) if (root / "images").is_dir() else next(root.rglob("*.png"))
    )
    victim.unlink()
    with pytest.raises(DatasetError, match=victim.name):
        run_training(tiny_config(tmp_path / "run", data_root=str(root)))


def test_study_level_truth_takes_the_maximum_per_study() -> None:
    labels = CHESTXRAY14.labels
    pos = tuple(1.0 if i == 0 else 0.0 for i in range(len(labels)))
    neg = (0.0,) * len(labels)
    records = [
        ImageRecord(Path(f"{i}.png"), lab, "p1", study)
        for i, (lab, study) in enumerate([(pos, "s1"), (neg, "s1"), (neg, "s2")])
    ]
    truth, mask, ids = evaluation_truth(records, CHESTXRAY14, study_level=True)
    assert ids == ("s1", "s2") and truth.shape == (2, 14)
    assert truth[0, 0] == 1.0 and truth[1, 0] == 0.0 and mask.min() == 1.0
