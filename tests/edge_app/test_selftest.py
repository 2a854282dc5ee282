"""The self-test on the worker thread over real bundles, and the text the settings screen shows."""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from cxr_core.bundle import load_bundle as _load_bundle
from cxr_core.bundle import sha256_file
from cxr_core.parity import golden_tolerance_for
from edge_app.diagnostics import ALL_PASS, describe_row, overall_line
from edge_app.worker import Failed, PredictionService, SelfTested
from tests.edge_app.conftest import alter_golden
from tests.signing import resign


class Inbox:
    """``post`` for the service: callbacks run on the test's thread, as Clock runs them on the UI thread."""

    def __init__(self) -> None:
        self.callbacks: queue.Queue[Callable[[], None]] = queue.Queue()

    def post(self, callback: Callable[[], None]) -> None:
        self.callbacks.put(callback)


@pytest.fixture(scope="module")
def service():  # type: ignore[no-untyped-def]
    inbox = Inbox()
    svc = PredictionService(inbox.post)
    yield svc, inbox
    svc.shutdown()


def _selftest(service, bundle: Path) -> object:  # type: ignore[no-untyped-def]
    svc, inbox = service
    outcomes: list = []
    threads: list[str] = []

    def done(outcome: object) -> None:
        outcomes.append(outcome)
        threads.append(threading.current_thread().name)

    svc.selftest(bundle, done)
    inbox.callbacks.get(timeout=120)()
    assert threads == [threading.current_thread().name]  # delivered on the caller's (UI) thread
    return outcomes[0]


def _models(bundle: Path) -> list[dict]:
    return json.loads((bundle / "manifest.json").read_text())["models"]


def test_every_model_of_the_tiny_bundle_passes(
    service, session_bundle: Path, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    with caplog.at_level(logging.INFO, logger="cxr_core.selftest"):
        outcome = _selftest(service, session_bundle)
    ran_on = {r.threadName for r in caplog.records if r.name == "cxr_core.selftest"}
    assert ran_on == {"cxr-edge-worker"}  # the models ran on the worker thread, not the caller's
    assert isinstance(outcome, SelfTested) and outcome.bundle == session_bundle
    models = _models(session_bundle)
    assert [row["model"] for row in outcome.rows] == [m["name"] for m in models]
    assert [row["status"] for row in outcome.rows] == ["pass"] * len(models)
    assert overall_line(outcome.rows) == (ALL_PASS, True)
    for row, model in zip(outcome.rows, models, strict=True):
        line = describe_row(row)
        assert (line.model, line.runtime, line.status) == (model["name"], "onnxruntime", "pass")
        tolerance = golden_tolerance_for(_load_bundle(session_bundle).model(model["name"])).to_dict()
        assert f"max |dp| {row['max_abs_dp']:.3g} (tolerance {tolerance['max_abs_dp']:.3g})" in line.figures
        assert row["max_abs_dp"] <= tolerance["max_abs_dp"]


def test_a_consistent_bundle_with_a_wrong_reference_fails(service, bundle_copy: Path) -> None:  # type: ignore[no-untyped-def]
    alter_golden(bundle_copy, rehash=True)
    outcome = _selftest(service, bundle_copy)
    assert isinstance(outcome, SelfTested)
    names = [m["name"] for m in _models(bundle_copy)]
    assert [row["status"] for row in outcome.rows] == ["fail"] * len(names)
    text, ok = overall_line(outcome.rows)
    assert not ok and f"{len(names)} of {len(names)} models do NOT reproduce" in text
    assert all(name in text for name in names)
    row = outcome.rows[0]
    line = describe_row(row)
    assert line.status == "fail" and row["max_abs_dp"] > row["tolerance"]["max_abs_dp"]
    assert line.figures.startswith(f"max |dp| {row['max_abs_dp']:.3g} (tolerance ")


def test_a_damaged_golden_file_is_a_clear_bundle_failure(
    service, bundle_copy: Path, session_bundle: Path
) -> None:  # type: ignore[no-untyped-def]
    golden = alter_golden(bundle_copy, rehash=False)
    outcome = _selftest(service, bundle_copy)
    assert isinstance(outcome, Failed) and outcome.kind == "bundle"
    assert str(golden) in outcome.message and "sha256" in outcome.message
    assert isinstance(_selftest(service, session_bundle), SelfTested)  # the worker lives on


def test_a_model_that_cannot_run_is_an_error_row(service, bundle_copy: Path) -> None:  # type: ignore[no-untyped-def]
    """A model file replaced and re-hashed (only opening it shows the damage): an error row saying why."""
    manifest_path = bundle_copy / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    broken = manifest["models"][0]
    (bundle_copy / broken["file"]).write_bytes(b"not an onnx model")
    digest = sha256_file(bundle_copy / broken["file"])
    broken["sha256"] = digest
    record = manifest["files"][broken["file"]]
    manifest["files"][broken["file"]] = {**record, "sha256": digest} if isinstance(record, dict) else digest
    manifest_path.write_text(json.dumps(manifest))
    resign(bundle_copy)  # re-signed by the exporter: only running the model shows the damage
    outcome = _selftest(service, bundle_copy)
    assert isinstance(outcome, SelfTested)
    statuses = [row["status"] for row in outcome.rows]
    assert statuses[0] == "error" and set(statuses[1:]) == {"pass"}
    line = describe_row(outcome.rows[0])
    assert line.figures == outcome.rows[0]["message"] and line.figures  # the reason, not blank figures
    text, ok = overall_line(outcome.rows)
    assert not ok and f"1 of {len(statuses)} models do NOT reproduce" in text and broken["name"] in text
    assert f"{len(statuses) - 1} of {len(statuses)} models pass" in text


def test_overall_line_for_unchecked_models(service, session_bundle: Path) -> None:  # type: ignore[no-untyped-def]
    """A runtime missing on the device (e.g. LiteRT) is 'not checked', never counted as a pass."""
    rows = [dict(row) for row in _selftest(service, session_bundle).rows]  # type: ignore[attr-defined]
    rows[-1].update(status="unavailable", max_abs_dp=None, message="RuntimeUnavailableError: needs litert")
    text, ok = overall_line(rows)
    assert not ok and "do NOT" not in text
    assert f"Not checked (runtime not available on this device): {rows[-1]['model']}" in text
    assert describe_row(rows[-1]).figures == "RuntimeUnavailableError: needs litert"
    assert overall_line([]) == ("The bundle lists no models to check.", False)


#: Run in a child process from the staged Android sources: import the self-test, list what that imported
#: (outside the standard library), then run it on a bundle and print the statuses.
STAGED_CHECK = """
import json, sys
sys.path.insert(0, sys.argv[1])
before = set(sys.modules)
import cxr_core.selftest
imported = sorted({name.split(".")[0] for name in set(sys.modules) - before} - set(sys.stdlib_module_names))
rows = cxr_core.selftest.run_selftest(sys.argv[2])
print(json.dumps({"file": cxr_core.selftest.__file__, "imported": imported,
                  "statuses": [row["status"] for row in rows]}))
"""


def test_the_staged_android_sources_carry_a_working_selftest(tmp_path: Path, session_bundle: Path) -> None:
    import subprocess
    import sys

    from edge_app.android.stage import stage

    app_dir = stage([], tmp_path / "stage")["app"]
    assert not (app_dir / "benchmarks").exists()  # the self-test lives in cxr_core
    result = subprocess.run(
        [sys.executable, "-c", STAGED_CHECK, str(app_dir), str(session_bundle)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert Path(report["file"]).is_relative_to(app_dir)  # the staged copy, not the repository's
    # numpy and cxr_core (which brings Pillow): all in the APK (buildozer.spec's numpy and pillow recipes)
    assert set(report["imported"]) <= {"cxr_core", "numpy", "PIL"}, report["imported"]
    assert report["statuses"] and set(report["statuses"]) == {"pass"}
