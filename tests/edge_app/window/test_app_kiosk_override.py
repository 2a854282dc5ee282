"""Score anyway in kiosk mode: a watch-folder study the learned gate refused is scored at the user's
request, its report is written with the override, and the study log records it as scored anyway."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_app.gate_text import OVERRIDE_LOG
from edge_app.history import detail_text
from tests.edge_app.window.conftest import start_app
from tests.file_factory import write_png


@pytest.fixture(scope="module")
def watch_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("usb_stick_override")


@pytest.fixture(scope="module")
def running(app_gated_bundle: Path, watch_dir: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    app, session = start_app(
        tmp_path_factory.mktemp("kiosk_override_data"),
        size=(1280, 800),
        bundle=app_gated_bundle,
        kiosk=True,
        watch=watch_dir,
        watch_interval_s=0.1,
        watch_settle_s=0.3,
    )
    session.wait_until(lambda: app.model_ready, 60, "bundle loaded")
    yield app, session
    session.stop()


def test_a_refused_study_scored_anyway_is_logged_and_reported(running, watch_dir: Path) -> None:  # type: ignore[no-untyped-def]
    app, session = running
    target = write_png(watch_dir / "noise_from_scanner.png", np.random.default_rng(3).random((320, 320)))
    session.wait_until(lambda: app.screens.current == "message" and not app.busy, 60, "study refused")
    study = app.study_log.studies()[0]
    assert study.name == target.name and study.state == "refused" and "unlike the images" in study.error
    screen = app.screens.get_screen("message")
    button = screen.ids.score_anyway_button
    assert screen.overridable and button.opacity == 1 and not button.disabled

    session.tap(button)
    session.wait_until(lambda: app.screens.current == "result" and not app.busy, 60, "study scored anyway")
    assert app.prediction.gate_override
    assert app.screens.get_screen("result").findings.ids.override_mark.text.startswith("SCORED ANYWAY")
    logged = app.study_log.get(study.id)
    assert logged.state == "scored" and logged.gate.startswith(OVERRIDE_LOG)
    assert "unlike the images" in logged.gate and logged.top_finding
    assert len(app.study_log.studies()) == 1  # the same study, not a new one
    payload = json.loads(Path(logged.report_json).read_text(encoding="utf-8"))
    assert payload["report"]["score_anyway"]["user_chose_to_score_anyway"] is True
    assert Path(logged.report_png).is_file() and app.report_text.startswith("Report saved")
    assert "scored anyway at the user's request" in detail_text(logged)
