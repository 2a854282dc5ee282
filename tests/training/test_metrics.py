"""Metrics (per-class AUC, AP, micro/macro) and the report files built from them."""

from __future__ import annotations

import csv
import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import average_precision_score, roc_auc_score

from training.metrics import compute_metrics, operating_point_stats
from training.reports import auc_table, plot_curves, write_history, write_summary

LABELS = ("Atelectasis", "Cardiomegaly", "Hernia")


@pytest.fixture()
def predictions() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 2, size=(80, 3)).astype(float)
    truth[:, 2] = 0.0  # Hernia: no positive in this split
    score = np.clip(0.35 * truth + rng.random((80, 3)) * 0.8, 0, 1)
    mask = np.ones_like(truth)
    mask[:10, 0] = 0  # uncertain labels left out
    return truth, score, mask


def test_per_class_metrics_match_sklearn_and_skip_single_valued(predictions, caplog) -> None:
    truth, score, mask = predictions
    with caplog.at_level(logging.WARNING):
        report = compute_metrics(truth, score, LABELS, mask)
    keep = mask[:, 0] > 0
    assert report.classes[0].auc == pytest.approx(roc_auc_score(truth[keep, 0], score[keep, 0]))
    assert report.classes[0].ap == pytest.approx(average_precision_score(truth[keep, 0], score[keep, 0]))
    assert report.classes[0].positives + report.classes[0].negatives == 70
    assert report.classes[1].auc == pytest.approx(roc_auc_score(truth[:, 1], score[:, 1]))
    assert math.isnan(report.classes[2].auc) and report.undefined == ("Hernia",)
    assert "Hernia" in caplog.text
    assert report.mean_auc == pytest.approx((report.classes[0].auc + report.classes[1].auc) / 2)
    assert report.macro_auc == report.mean_auc
    pooled = mask > 0
    assert report.micro_auc == pytest.approx(roc_auc_score(truth[pooled], score[pooled]))


def test_mask_changes_the_result_and_bad_input_is_refused(predictions) -> None:
    truth, score, mask = predictions
    flipped = score.copy()
    flipped[:10, 0] = 1.0 - truth[:10, 0]  # perfectly wrong scores on the masked rows only
    assert compute_metrics(truth, flipped, LABELS, mask).classes[0].auc == pytest.approx(
        compute_metrics(truth, score, LABELS, mask).classes[0].auc
    )
    assert compute_metrics(truth, flipped, LABELS).classes[0].auc != pytest.approx(
        compute_metrics(truth, score, LABELS).classes[0].auc
    )
    with pytest.raises(ValueError, match=r"expected \(N, 3\)"):
        compute_metrics(truth[:, :2], score[:, :2], LABELS)
    bad = score.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        compute_metrics(truth, bad, LABELS)


def test_operating_point_stats() -> None:
    truth = np.array([[1.0], [1.0], [0.0], [0.0]])
    score = np.array([[0.9], [0.4], [0.5], [0.1]])
    stats = operating_point_stats(truth, score, [0.45])
    assert stats["sensitivity"] == [0.5] and stats["specificity"] == [0.5]


def test_reports_are_written(tmp_path: Path, predictions) -> None:
    truth, score, mask = predictions
    report = compute_metrics(truth, score, LABELS, mask)
    for kind in ("roc", "pr"):
        path = plot_curves(kind, truth, score, LABELS, report, tmp_path / f"{kind}.png", mask, "test")
        with Image.open(path) as image:
            assert image.format == "PNG" and image.width > 400
    summary = write_summary(tmp_path / "summary.md", "Run", report, "tiny")
    text = summary.read_text()
    assert "| Cardiomegaly |" in text and "| **Mean** |" in text and "n/a" in text
    assert f"{report.mean_auc:.4f}" in text
    history = [
        {
            "epoch": e,
            "train_loss": 0.5,
            "val_loss": 0.4,
            "lr": 1e-3,
            "seconds": 1.0,
            "images_per_s": 10.0,
            "val": report.to_dict(),
        }
        for e in (1, 2)
    ]
    json_path, csv_path = write_history(tmp_path, history, LABELS, {"best_epoch": 2})
    data = json.loads(json_path.read_text())  # strict JSON: NaN written as null
    assert data["best_epoch"] == 2 and data["epochs"][0]["val"]["classes"][2]["auc"] is None
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 2 and float(rows[1]["auc_Cardiomegaly"]) == pytest.approx(report.classes[1].auc)
    assert rows[0]["auc_Hernia"] == ""
    table = auc_table({"A": report, "B": report}, LABELS)
    assert table.count("\n") == 2 + len(LABELS) + 1
