"""The worker thread over the real Predictor: every outcome, and survival after anything."""

from __future__ import annotations

import queue
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edge_app.display import fit_for_display
from edge_app.worker import Exported, Failed, Loaded, PredictionService, Refused, Rendered, Scored


class Inbox:
    """``post`` for the service: callbacks are queued and run on the test's thread, like Clock does."""

    def __init__(self) -> None:
        self.callbacks: queue.Queue[Callable[[], None]] = queue.Queue()

    def post(self, callback: Callable[[], None]) -> None:
        self.callbacks.put(callback)

    def run_one(self, timeout: float = 60.0) -> None:
        self.callbacks.get(timeout=timeout)()


@pytest.fixture(scope="module")
def service(session_bundle: Path):  # type: ignore[no-untyped-def]
    inbox = Inbox()
    svc = PredictionService(inbox.post, display_max_side=128)
    outcomes: list = []
    svc.load(session_bundle, outcomes.append)
    inbox.run_one()
    assert isinstance(outcomes[0], Loaded), outcomes
    yield svc, inbox
    svc.shutdown()


def _ask(service, submit) -> object:  # type: ignore[no-untyped-def]
    svc, inbox = service
    outcomes: list = []
    submit(outcomes.append)
    assert svc.busy
    inbox.run_one()
    assert not svc.busy
    return outcomes[0]


def test_scored_with_display_arrays(service, image_files) -> None:  # type: ignore[no-untyped-def]
    svc, _inbox = service
    outcome = _ask(service, lambda done: svc.predict(image_files["png"], done))
    assert isinstance(outcome, Scored)
    prediction, display = outcome.prediction, outcome.display
    assert display.label == prediction.ranked()[0].label
    assert max(display.grey.shape[:2]) == 128 and display.grey.shape == display.overlay.shape
    expected = fit_for_display(prediction.overlay(display.label, alpha=1.0), 128)
    assert np.array_equal(display.overlay, expected)
    other = prediction.ranked()[3].label
    rendered = _ask(service, lambda done: svc.render(prediction, other, done))
    assert isinstance(rendered, Rendered) and rendered.display.label == other


def test_refusals_and_decode_errors(service, image_files) -> None:  # type: ignore[no-untyped-def]
    svc, _inbox = service
    refused = _ask(service, lambda done: svc.predict(image_files["photo"], done))
    assert isinstance(refused, Refused) and any("colour" in r.lower() for r in refused.reasons)
    bad = _ask(service, lambda done: svc.predict(image_files["bad"], done))
    assert isinstance(bad, Failed) and bad.kind == "decode" and "PNG, JPEG or DICOM" in bad.message
    gone = _ask(service, lambda done: svc.predict(image_files["png"].parent / "gone.png", done))
    assert isinstance(gone, Failed) and gone.kind == "decode" and "not found" in gone.message


def test_export_through_the_worker(service, image_files, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    svc, _inbox = service
    scored = _ask(service, lambda done: svc.predict(image_files["dicom"], done))
    label = scored.display.label
    out = _ask(service, lambda done: svc.export(scored.prediction, tmp_path, label, 0.5, "t", done))
    assert isinstance(out, Exported) and out.report.png.is_file() and out.report.json.is_file()
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("x")
    failed = _ask(service, lambda done: svc.export(scored.prediction, blocked, "Mass", 0.5, "t", done))
    assert isinstance(failed, Failed) and failed.kind == "error"


def test_bundle_failures_and_unexpected_errors(tmp_path: Path, image_files) -> None:  # type: ignore[no-untyped-def]
    def broken_loader(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("driver crashed")

    inbox = Inbox()
    svc = PredictionService(inbox.post)
    try:
        outcomes: list = []
        svc.predict(image_files["png"], outcomes.append)  # nothing loaded yet
        svc.load(tmp_path / "nowhere", outcomes.append)
        for _ in range(2):
            inbox.run_one()
        assert [type(o) for o in outcomes] == [Failed, Failed]
        assert outcomes[0].kind == "bundle" and "no model bundle is loaded" in outcomes[0].message
        assert outcomes[1].kind == "bundle" and "does not exist" in outcomes[1].message
        crashing = PredictionService(inbox.post, loader=broken_loader)
        crashing.load(tmp_path, outcomes.append)
        crashing.predict(image_files["png"], outcomes.append)  # the thread survived the crash
        for _ in range(2):
            inbox.run_one()
        assert outcomes[2].title == "Unexpected error" and "driver crashed" in outcomes[2].message
        assert isinstance(outcomes[3], Failed) and outcomes[3].kind == "bundle"
        crashing.shutdown()
    finally:
        svc.shutdown()


def test_damaged_files_are_refused_and_the_worker_goes_on(service, image_files, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Issue-15 cases that crashed or were scored silently: each a decode failure, then a good file."""
    from tests.fuzz_corpus import crafted_cases

    wanted = {
        "dicom WindowWidth text",
        "dicom WindowWidth NaN",
        "dicom VOI LUT 0 bits",
        "dicom unknown VR XX",
        "dicom Rows smaller than pixel data",
        "jpeg truncated 50% + EOI",
    }
    svc, _inbox = service
    cases = [c for c in crafted_cases() if c.name in wanted]
    assert len(cases) == len(wanted)
    for i, case in enumerate(cases):
        path = tmp_path / f"damaged{i}{case.suffix}"
        path.write_bytes(case.data)
        outcome = _ask(service, lambda done, p=path: svc.predict(p, done))
        assert isinstance(outcome, Failed) and outcome.kind == "decode", (case.name, outcome)
    assert isinstance(_ask(service, lambda done: svc.predict(image_files["png"], done)), Scored)


def test_a_learned_refusal_is_overridable_and_scores_anyway(
    gated_bundle: Path, image_files, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from tests.file_factory import write_png

    inbox = Inbox()
    svc = PredictionService(inbox.post, display_max_side=128)
    try:
        service = (svc, inbox)
        loaded = _ask(service, lambda done: svc.load(gated_bundle, done))
        assert isinstance(loaded, Loaded), loaded
        noise = write_png(tmp_path / "noise.png", np.random.default_rng(5).random((300, 300)))
        refused = _ask(service, lambda done: svc.predict(noise, done))
        assert isinstance(refused, Refused) and refused.overridable
        feature = [d for d in refused.signals if d.signal == "feature_mahalanobis"]
        assert len(feature) == 1 and not feature[0].accepted
        scored = _ask(service, lambda done: svc.predict(noise, done, override_gate=True))
        assert isinstance(scored, Scored) and scored.prediction.gate_override == refused.reasons
        rule = _ask(service, lambda done: svc.predict(image_files["photo"], done))  # colour: a rule
        assert isinstance(rule, Refused) and not rule.overridable and rule.signals == ()
        still = _ask(service, lambda done: svc.predict(image_files["photo"], done, override_gate=True))
        assert isinstance(still, Refused) and not still.overridable  # rules cannot be overridden
    finally:
        svc.shutdown()


_EXIT_DURING_WORK = """
import atexit, sys, time
from pathlib import Path

outcomes = []
# registered before the worker's own exit hook, so it runs after it (last in, first out)
atexit.register(lambda: print(len(outcomes) - 1, "scored by the end", flush=True))
from edge_app.worker import Loaded, PredictionService

bundle, image, marker = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
svc = PredictionService(lambda deliver: deliver(), display_max_side=64)  # outcomes on the worker
svc.load(bundle, outcomes.append)
deadline = time.monotonic() + 120
while not outcomes and time.monotonic() < deadline:
    time.sleep(0.01)
assert isinstance(outcomes[0], Loaded), outcomes
for _ in range(200):  # real ONNX Runtime inferences, queued; the process ends among them
    svc.predict(image, outcomes.append)
time.sleep(0.05)


def slow_loader(*_args, **_kwargs):
    time.sleep(1.0)  # a job still running when the interpreter exits
    marker.write_text("finished")
    raise RuntimeError("not a bundle")


PredictionService(lambda deliver: deliver(), loader=slow_loader).load(bundle, lambda _outcome: None)
time.sleep(0.1)
"""


def test_a_process_that_ends_during_work_finishes_the_running_job_and_exits_cleanly(
    session_bundle: Path, image_files, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """Ended while the worker (a daemon thread) was inside an ONNX Runtime inference, a process
    aborted in ONNX Runtime's teardown (20 of 20 runs). At exit the running job now finishes and the
    queued ones are dropped: a clean exit code, the slow job's marker written, far fewer than 200
    predictions made."""
    import subprocess
    import sys

    marker = tmp_path / "finished.txt"
    done = subprocess.run(
        [sys.executable, "-c", _EXIT_DURING_WORK, str(session_bundle), str(image_files["png"]), str(marker)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert marker.read_text() == "finished"  # the job running at exit was waited for
    assert "cannot schedule new futures" not in done.stderr  # no job ran into the pools' shutdown
    scored = int(done.stdout.split()[0])
    assert scored < 200, done.stdout  # the queue was dropped, not worked through
