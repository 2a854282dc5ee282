"""The history screen's text helpers (edge_app.history), without a window."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path

from edge_app.history import RETENTION_CHOICES, day_heading, detail_text, retention_label, row_text
from edge_app.studylog import REFUSED, SCORED, open_log


def test_day_headings_and_retention_labels() -> None:
    now = datetime.now().astimezone()
    today = now.date()
    assert day_heading(now.isoformat(), today) == "Today"
    assert day_heading((now - timedelta(days=1)).isoformat(), today) == "Yesterday"
    assert day_heading("2025-03-04T12:00:00+00:00", date(2026, 1, 1)).startswith("2025-03-0")
    for label, (days, count) in RETENTION_CHOICES.items():
        assert retention_label(days, count) == label
    assert retention_label(12.0, None) == "Keep reports 12 days"
    assert retention_label(None, 42) == "Keep the last 42 reports"


def test_row_and_detail_text_say_what_happened(tmp_path: Path) -> None:
    log = open_log(tmp_path)
    a = log.record(tmp_path / "a.png", "a" * 64, 1, 1)
    b = log.record(tmp_path / "b.dcm", "b" * 64, 1, 1)
    findings = [
        {
            "label": "Pleural_Thickening",
            "score": 71.0,
            "model_output": 0.2,
            "above_operating_point": True,
            "threshold_note": "threshold unreliable: set on 3 validation positives (< 10)",
        }
    ]
    log.finish(a, SCORED, bundle_sha256="c" * 64, bundle_revision="chexnet | onnx", gate="accepted",
               findings=findings, report_png=str(tmp_path / "r.png"))  # fmt: skip
    log.finish(b, REFUSED, gate="refused", error="modality CT is not a radiograph")
    scored, refused = log.get(a), log.get(b)
    assert "a.png: scored - top: Pleural_Thickening" in row_text(scored)
    detail = detail_text(scored)
    assert "Pleural Thickening: score 71 * !" in detail and "manifest sha256 cccccccccccc" in detail
    assert "%" not in detail
    assert "Input gate: accepted" in detail and "Report:" in detail
    assert "Reason: modality CT is not a radiograph" in detail_text(refused)
    log.forget_derived([a])
    assert "deleted by the retention setting" in detail_text(log.get(a))
