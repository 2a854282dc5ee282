"""python -m benchmarks.photo_study runs end to end on a few small rendered photos and writes its JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.photo_study import fit_limits, main


@pytest.mark.slow  # 30 s on a shared 2-core machine (24 photos rendered and captured)
def test_the_photo_study_writes_its_table_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "photo_study.json"
    code = main(
        ["--per-scene", "1", "--size", "480x360", "--timing-runs", "0", "--out", str(out), "--fit-limits"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "corner error <= 2% of the diagonal" in printed and "limits fitted on the good photos" in printed
    study = json.loads(out.read_text())
    summary = study["summary"]
    assert summary["good_photos"] == 3 and summary["unusable_photos"] == 21
    for key in ("corner_within_2pct", "good_accepted", "unusable_refused"):
        assert 0.0 <= summary[key] <= 1.0
    assert set(summary["per_scene"]) == {"lightbox", "monitor", "window"}
    assert {"glare", "two_films", "no_film"} <= set(summary["per_scene"]["lightbox"])
    limits = fit_limits(study["rows"])
    assert limits.max_blur > 0 and limits.max_tilt_deg > 0
