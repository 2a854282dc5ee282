"""Run bundle loading, prediction, overlays, reports and the self-test on one worker thread.

The UI thread must never block on inference (a DenseNet-121 takes ~0.1-1 s per image on a Pi),
so every call to cxr_core happens here, one job at a time, in submission order. Outcomes are
handed to ``post`` -- in the app, a wrapper around ``Clock.schedule_once`` -- so callbacks run on
the UI thread. Kivy is not imported: the service is plain threading and can be tested alone.

Photos of films (``edge_app.photo``) take two jobs: :meth:`PredictionService.open_photo` loads the
photo and finds the film (:class:`PhotoLoaded`, for the confirm screen), then
:meth:`PredictionService.predict_photo` scores it with the corners the clinician confirmed.

Every job's failure becomes an outcome, never a dead thread: a refused image becomes
:class:`Refused` (with the gate's reasons, and whether the user may score it anyway; for a photo
also what to do and the corners used), a file that
cannot be decoded or a bundle that cannot be loaded becomes :class:`Failed` with a title and the
library's message, and anything unexpected is logged with its traceback and reported as
:class:`Failed` too -- the app keeps running.

Stopping (:meth:`PredictionService.shutdown`, and the interpreter's exit) drops the jobs not started
yet and lets the running one finish: a process must not end under an inference.
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxr_core.bundle import BundleError
from cxr_core.errors import CxrEdgeError, ImageDecodeError, MissingDependencyError
from cxr_core.text import printable
from edge_app.display import DISPLAY_MAX_SIDE, DisplayImages, display_images, fit_for_display
from edge_app.photo import PHOTO_DISPLAY_SIDE, PhotoView, as_corners, inset_corners
from edge_app.report import ExportedReport, export_report

if TYPE_CHECKING:
    from cxr_core.gate_signals import SignalDecision
    from cxr_core.predictor import Prediction, Predictor

logger = logging.getLogger(__name__)

Post = Callable[[Callable[[], None]], None]

#: At interpreter exit, how long to wait for a job that is still running (see :func:`_finish_at_exit`).
EXIT_WAIT_S = 30.0


@dataclass(frozen=True)
class Loaded:
    """A bundle was loaded and verified."""

    bundle: Path
    model_name: str
    runtime: str
    load_ms: float
    notices: tuple[str, ...] = ()  # e.g. the synthetic-data mark: shown in the header, never hidden
    provenance: tuple[str, ...] = ()  # what the bundle says of itself (ClinicalInfo.summary)
    #: Empty for a bundle signed by a trusted key; else what was accepted (e.g. "UNSIGNED bundle ...").
    trust: str = ""


@dataclass(frozen=True)
class Scored:
    """An image was scored; ``display`` holds the top finding's overlay, ready for a texture."""

    source: str
    prediction: Prediction
    display: DisplayImages
    elapsed_ms: float
    report: ExportedReport | None = None  # written by ``process_study`` (kiosk studies)


@dataclass(frozen=True)
class Rendered:
    """The overlay of another finding of an already scored image."""

    prediction: Prediction
    display: DisplayImages


@dataclass(frozen=True)
class Exported:
    """A report was written (PNG and JSON)."""

    source: str
    report: ExportedReport


@dataclass(frozen=True)
class Refused:
    """The input gate refused the image: it is not scored, and ``reasons`` say why.

    ``overridable`` when only the learned signals refused it (``GateRefusedError``): the user may
    then choose "Score anyway". A rule refusal (DICOM modality, size, colour) is never overridable.
    ``signals`` holds every learned signal's verdict (score, threshold), accepted or not.
    For a photo (:meth:`PredictionService.predict_photo`): ``corners`` are the ones it was scored
    with (photo pixels), and a refusal by ``cxr_core.capture`` (``PhotoRefusedError``) adds
    ``fix`` (what to do: "avoid the reflection"...) and ``measures`` (the quality figures).
    """

    source: str
    reasons: tuple[str, ...]
    overridable: bool = False
    signals: tuple[SignalDecision, ...] = ()
    corners: tuple[tuple[float, float], ...] | None = None
    fix: str = ""
    measures: dict[str, Any] = field(default_factory=dict)

    @property
    def photo(self) -> bool:
        """Whether the refused input was a photo of a film."""
        return self.corners is not None


@dataclass(frozen=True)
class PhotoLoaded:
    """A photo was read and the film looked for: ``view`` goes to the confirm screen."""

    source: str
    view: PhotoView
    elapsed_ms: float


@dataclass(frozen=True)
class Failed:
    """A job failed: ``kind`` is ``decode`` (bad file), ``bundle`` (cannot load) or ``error``."""

    source: str
    kind: str
    title: str
    message: str


@dataclass(frozen=True)
class SelfTested:
    """The bundle's golden set was run through each of its models (``cxr_core.selftest``).

    ``rows`` are :func:`cxr_core.selftest.run_selftest`'s dicts, one per model, unchanged.
    """

    bundle: Path
    rows: tuple[dict[str, Any], ...]
    elapsed_ms: float


Outcome = Loaded | Scored | Rendered | Exported | Refused | Failed | SelfTested | PhotoLoaded


@dataclass
class _Job:
    run: Callable[[], Outcome]
    on_done: Callable[[Outcome], None]
    source: str
    submitted: float = field(default_factory=time.perf_counter)
    corners: tuple[tuple[float, float], ...] | None = None  # a photo job's corners (photo pixels)


class PredictionService:
    """A single worker thread that owns the Predictor."""

    def __init__(
        self,
        post: Post,
        loader: Callable[..., Predictor] | None = None,
        display_max_side: int = DISPLAY_MAX_SIDE,
        opener: Callable[..., Any] | None = None,
    ) -> None:
        self._post = post
        self._loader = loader
        self._opener = opener
        self._max_side = display_max_side
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._pending = 0
        self._lock = threading.Lock()
        self.predictor: Predictor | None = None
        # A daemon, so that a service nobody shut down never keeps the process alive; the job it may
        # be running at exit is waited for by _finish_at_exit.
        self._thread = threading.Thread(target=self._loop, name="cxr-edge-worker", daemon=True)
        self._thread.start()
        _LIVE_SERVICES.add(self)

    @property
    def busy(self) -> bool:
        """True while any submitted job has not yet posted its outcome."""
        with self._lock:
            return self._pending > 0

    def load(self, bundle: Path, on_done: Callable[[Outcome], None], **predictor_kwargs: Any) -> None:
        """Load (and verify) ``bundle``; replaces the current predictor on success."""
        self._submit(lambda: self._load(Path(bundle), predictor_kwargs), on_done, str(bundle))

    def predict(self, path: Path, on_done: Callable[[Outcome], None], override_gate: bool = False) -> None:
        """Score the image file ``path`` with the current predictor.

        ``override_gate``: the user chose "Score anyway" for an image the learned gate refused; the
        result then carries the overridden reasons (``Prediction.gate_override``).
        """
        self._submit(lambda: self._predict(Path(path), override_gate), on_done, str(path))

    def open_photo(self, path: Path, on_done: Callable[[Outcome], None]) -> None:
        """Read the photo ``path`` and find the film in it (:class:`PhotoLoaded` for the confirm screen).

        No film found (or two candidates) is not a failure here: the view then starts from the
        photo's inset rectangle, with the refusal's reason and fix, for the clinician to place the
        corners by hand. A file that is not a readable photo becomes ``Failed(kind="decode")``.
        """
        self._submit(lambda: self._open_photo(Path(path)), on_done, str(path))

    def predict_photo(
        self,
        path: Path,
        corners: Any,
        on_done: Callable[[Outcome], None],
        override_gate: bool = False,
    ) -> None:
        """Score the photo ``path`` rectified with ``corners`` (photo pixels, the clinician's choice).

        ``Predictor.predict_photo``: capture's quality checks (a refusal says what to do), then the
        same preprocessing, input gate and learned gate as any file; ``override_gate`` as for
        :meth:`predict`.
        """
        quad = tuple((float(x), float(y)) for x, y in as_corners(corners))
        self._submit(
            lambda: self._predict_photo(Path(path), quad, override_gate), on_done, str(path), corners=quad
        )

    def process_study(
        self,
        path: Path,
        folder: Path,
        stem: str,
        bundle_title: str,
        on_done: Callable[[Outcome], None],
        override_gate: bool = False,
    ) -> None:
        """Score ``path`` and write its report ``folder/<stem>.png`` + ``.json`` (kiosk studies).

        The report shows the top finding's heat map at the default opacity; the outcome is
        :class:`Scored` with ``report`` set (or :class:`Refused` / :class:`Failed`, no report).
        ``override_gate`` as for :meth:`predict` (a refused study the user chose to score anyway).
        """

        def run() -> Scored:
            scored = self._predict(Path(path), override_gate)
            label = scored.display.label
            report = export_report(scored.prediction, folder, label, 0.6, bundle_title, stem=stem)
            return replace(scored, report=report)

        self._submit(run, on_done, str(path))

    def render(self, prediction: Prediction, label: str, on_done: Callable[[Outcome], None]) -> None:
        """Compute the display overlay of ``label`` for an already scored ``prediction``."""
        self._submit(
            lambda: Rendered(prediction, display_images(prediction, label, self._max_side)),
            on_done,
            prediction.source,
        )

    def export(
        self,
        prediction: Prediction,
        folder: Path,
        label: str,
        opacity: float,
        bundle_title: str,
        on_done: Callable[[Outcome], None],
        photo: dict[str, Any] | None = None,
        photo_rgb: Any = None,
    ) -> None:
        """Write the PNG + JSON report of ``prediction`` into ``folder``.

        ``photo`` / ``photo_rgb``: a photo input's corner confirmation and pixels (``export_report``).
        """
        self._submit(
            lambda: Exported(
                prediction.source,
                export_report(
                    prediction, folder, label, opacity, bundle_title, photo=photo, photo_rgb=photo_rgb
                ),
            ),
            on_done,
            prediction.source,
        )

    def selftest(
        self,
        bundle: Path,
        on_done: Callable[[Outcome], None],
        threads: int | None = None,
        allow_untrusted: bool = False,
    ) -> None:
        """Check every model of ``bundle`` against its golden reference (:class:`SelfTested`).

        A bundle that cannot be read or verified becomes ``Failed(kind="bundle")``.
        """
        self._submit(
            lambda: self._selftest(Path(bundle), threads, self._opener, allow_untrusted),
            on_done,
            str(bundle),
        )

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop the thread: jobs not started yet are dropped (their callbacks never run) and the one
        running finishes. ``timeout`` bounds only this call's wait; a job still running when the
        interpreter exits is waited for then (:func:`_finish_at_exit`)."""
        self._stop_after_current_job()
        self._thread.join(timeout)

    def _stop_after_current_job(self) -> None:
        """Drop the jobs not started yet and tell the thread to end after the one it runs."""
        while True:
            try:
                dropped = self._jobs.get_nowait()
            except queue.Empty:
                break
            if dropped is not None:
                with self._lock:
                    self._pending -= 1
        self._jobs.put(None)

    # ------------------------------------------------------------------ worker side

    def _submit(
        self,
        run: Callable[[], Outcome],
        on_done: Callable[[Outcome], None],
        source: str,
        corners: tuple[tuple[float, float], ...] | None = None,
    ) -> None:
        with self._lock:
            self._pending += 1
        self._jobs.put(_Job(run, on_done, source, corners=corners))

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            outcome = self._execute(job)
            self._post(self._deliver(job, outcome))

    def _deliver(self, job: _Job, outcome: Outcome) -> Callable[[], None]:
        def deliver() -> None:
            with self._lock:
                self._pending -= 1
            job.on_done(outcome)

        return deliver

    def _execute(self, job: _Job) -> Outcome:
        from cxr_core.capture_common import PhotoRefusedError  # light: the predictor imports it anyway
        from cxr_core.gate_signals import GateRefusedError
        from cxr_core.input_gate import ImageRefusedError

        try:
            return job.run()
        except GateRefusedError as exc:  # only the learned signals refused: the user may score anyway
            reasons = tuple(exc.reasons) or (str(exc),)
            return Refused(
                job.source, reasons, overridable=True, signals=tuple(exc.decisions), corners=job.corners
            )
        except PhotoRefusedError as exc:  # the photo itself is unusable: say why and what to do
            return Refused(
                job.source,
                (exc.reason,) if exc.reason else tuple(exc.reasons) or (str(exc),),
                corners=job.corners,
                fix=str(exc.fix or ""),
                measures=dict(exc.measures or {}),
            )
        except ImageRefusedError as exc:
            return Refused(job.source, tuple(exc.reasons) or (str(exc),), corners=job.corners)
        except ImageDecodeError as exc:
            return Failed(job.source, "decode", "This file cannot be read", exc.reason)
        except (BundleError, MissingDependencyError) as exc:
            return Failed(job.source, "bundle", "The model bundle cannot be used", str(exc))
        except CxrEdgeError as exc:
            return Failed(job.source, "error", "The image could not be analysed", str(exc))
        except OSError as exc:  # a report folder that cannot be written, a file that vanished
            return Failed(job.source, "error", "A file could not be read or written", str(exc))
        except Exception as exc:  # a worker thread must survive anything; the traceback goes to the log
            logger.exception("unexpected error while processing %s", printable(job.source))
            return Failed(job.source, "error", "Unexpected error", f"{type(exc).__name__}: {exc}")

    def _load(self, bundle: Path, kwargs: dict[str, Any]) -> Loaded:
        loader = self._loader
        if loader is None:
            from cxr_core.predictor import Predictor

            loader = Predictor.load
        predictor = loader(bundle, **kwargs)
        self.predictor = predictor
        notices = tuple(getattr(predictor, "notices", ()))
        provenance = tuple(getattr(predictor, "model_information", ()))
        status = getattr(getattr(predictor, "bundle", None), "trust", None)
        trust = status.describe() if status is not None and not status.trusted else ""
        return Loaded(
            bundle,
            predictor.model_name,
            predictor.runtime,
            float(predictor.load_ms),
            notices=notices,
            provenance=provenance,
            trust=trust,
        )

    def _predict(self, path: Path, override_gate: bool = False) -> Scored:
        predictor = self.predictor
        if predictor is None:
            raise BundleError("no model bundle is loaded; choose one in the settings before opening an image")
        start = time.perf_counter()
        if override_gate:
            prediction = predictor.predict_file(path, override_gate=True)
        else:
            prediction = predictor.predict_file(path)
        top = prediction.ranked()[0].label
        display = display_images(prediction, top, self._max_side)
        return Scored(str(path), prediction, display, (time.perf_counter() - start) * 1000.0)

    def _open_photo(self, path: Path) -> PhotoLoaded:
        from cxr_core.capture import PhotoRefusedError, find_film, load_photo

        start = time.perf_counter()
        rgb = load_photo(path)
        height, width = rgb.shape[:2]
        display = fit_for_display(rgb, PHOTO_DISPLAY_SIDE)
        scale = display.shape[1] / width
        try:
            quad = find_film(rgb)
        except PhotoRefusedError as exc:
            corners = inset_corners(width, height)
            view = PhotoView(
                str(path), display, (width, height), scale, corners, False, 0.0, exc.reason, exc.fix
            )
        else:
            corners = as_corners(quad.corners, f"{path}: the detected film")
            view = PhotoView(
                str(path), display, (width, height), scale, corners, True, float(quad.confidence)
            )
        return PhotoLoaded(str(path), view, (time.perf_counter() - start) * 1000.0)

    def _predict_photo(
        self, path: Path, corners: tuple[tuple[float, float], ...], override_gate: bool = False
    ) -> Scored:
        predictor = self.predictor
        if predictor is None:
            raise BundleError("no model bundle is loaded; choose one in the settings before opening a photo")
        start = time.perf_counter()
        prediction = predictor.predict_photo(path, corners=corners, override_gate=override_gate)
        top = prediction.ranked()[0].label
        display = display_images(prediction, top, self._max_side)
        return Scored(str(path), prediction, display, (time.perf_counter() - start) * 1000.0)

    @staticmethod
    def _selftest(
        bundle: Path,
        threads: int | None,
        opener: Callable[..., Any] | None = None,
        allow_untrusted: bool = False,
    ) -> Outcome:
        from cxr_core.selftest import run_selftest

        start = time.perf_counter()
        rows = run_selftest(bundle, threads=threads, opener=opener, allow_untrusted=allow_untrusted)
        return SelfTested(bundle, tuple(rows), (time.perf_counter() - start) * 1000.0)


_LIVE_SERVICES: weakref.WeakSet[PredictionService] = weakref.WeakSet()


def _finish_at_exit() -> None:
    """Let a job that is still running finish before the interpreter exits (queued ones are dropped).

    What happened without it, measured: a process that ended while a daemon thread ran Predictor
    predictions back to back through ONNX Runtime (as this worker does) aborted in ONNX Runtime's
    teardown (SIGABRT, 8 of 8 runs; 0 of 8 through LiteRT); and once the interpreter had shut the
    thread pools down, every queued job failed in turn with "cannot schedule new futures after
    shutdown" and a logged traceback (of 200 queued predictions, 105, 183 and 109 in three runs).
    At most :data:`EXIT_WAIT_S` per service, so that a job stuck on a dead drive cannot hold the
    exit. Registered to run before the interpreter shuts down the thread pools the Predictor's gate
    uses (:func:`_register_exit_hook`).
    """
    running = [service for service in list(_LIVE_SERVICES) if service._thread.is_alive()]
    for service in running:  # every queue stopped first, then each running job waited for
        service._stop_after_current_job()
    for service in running:
        service._thread.join(EXIT_WAIT_S)


def _register_exit_hook() -> None:
    """Run :func:`_finish_at_exit` at shutdown before ``concurrent.futures`` refuses new work.

    ``threading._register_atexit`` (CPython 3.9+, what ``concurrent.futures`` itself uses) runs its
    callbacks last-registered first, before non-daemon threads are joined and before :mod:`atexit`;
    ``concurrent.futures.thread`` is imported first so that its own hook is the earlier one.
    """
    import concurrent.futures.thread  # noqa: F401  (registers the executors' exit hook now)

    register = getattr(threading, "_register_atexit", None)
    if callable(register):
        register(_finish_at_exit)
    else:  # another interpreter: at least before the modules are torn down
        atexit.register(_finish_at_exit)


_register_exit_hook()
