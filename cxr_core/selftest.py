"""Device self-test: run the bundle's golden set through each model and say pass or fail per format.

For the app's diagnostics screen, ``cxr-export verify`` and anyone checking a device by hand: no
subprocess, no timing loops; numpy + cxr_core only, so it runs wherever the app runs. Every row is
judged by :func:`cxr_core.parity.golden_check` with the entry's golden tolerance, the same check
``edge-bench`` reports in its golden columns, so the screen, ``verify`` and the benchmark can
never disagree about a format.

>>> from cxr_core.selftest import run_selftest
>>> for row in run_selftest("bundles/chexnet"):          # doctest: +SKIP
...     print(row["model"], row["status"], row["max_abs_dp"])
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from cxr_core.bundle import Bundle, ModelEntry, load_bundle, load_golden
from cxr_core.errors import MissingDependencyError
from cxr_core.parity import describe_golden, golden_check, golden_tolerance_for

logger = logging.getLogger(__name__)

#: ``opener(bundle, entry, threads) -> Backend``: how a platform opens a model (default: cxr_core.runtime).
ModelOpener = Callable[[Bundle, ModelEntry, "int | None"], Any]
#: Row statuses: ``pass``/``fail`` (ran and compared), ``unavailable`` (no runtime here), ``error``.
STATUSES = ("pass", "fail", "unavailable", "error")


def _unavailable(exc: BaseException) -> bool:
    return isinstance(exc, MissingDependencyError | ImportError)


def _default_opener(bundle: Bundle, entry: ModelEntry, threads: int | None) -> Any:
    from cxr_core.runtime import open_model

    return open_model(bundle.path(entry), entry, threads=threads)


def check_model(
    bundle: Bundle,
    entry: ModelEntry,
    golden: Mapping[str, NDArray[Any]],
    threads: int | None = None,
    opener: ModelOpener = _default_opener,
) -> dict[str, Any]:
    """Open ``entry`` with ``opener``, run the golden inputs, and judge them; never raises for the model."""
    tolerance = golden_tolerance_for(entry)
    row: dict[str, Any] = {
        "model": entry.name,
        "format": entry.format,
        "precision": entry.precision,
        "runtime": entry.runtime,
        "status": "error",
        "message": None,
        "max_abs_dp": None,
        "mean_abs_dp": None,
        "feature_map_rel_error": None,
        "call_agreement": None,
        "tolerance": tolerance.to_dict(),
        "ms": None,
    }
    try:
        start = time.perf_counter_ns()
        backend = opener(bundle, entry, threads)
        try:
            outputs = backend(np.asarray(golden["inputs"], dtype=np.float32))
            row["runtime"] = backend.runtime
        finally:
            backend.close()
        row["ms"] = round((time.perf_counter_ns() - start) / 1e6, 2)
        check = golden_check(outputs, golden, tolerance, bundle.operating_points)
    except Exception as exc:  # a broken model is a failed row on the screen, never a crash
        row["status"] = "unavailable" if _unavailable(exc) else "error"
        row["message"] = f"{type(exc).__name__}: {exc}"
        return row
    row.update(
        {k: check[k] for k in ("max_abs_dp", "mean_abs_dp", "feature_map_rel_error", "call_agreement")}
    )
    row["status"] = "pass" if check["passed"] else "fail"
    row["message"] = describe_golden(check)
    return row


def run_selftest(
    bundle_dir: str | Path | Bundle,
    threads: int | None = None,
    opener: ModelOpener | None = None,
    models: list[str] | None = None,
    allow_untrusted: bool = False,
) -> list[dict[str, Any]]:
    """One dict per model of the bundle (or of ``models``): ``model``, ``format``, ``precision``,
    ``runtime``, ``status`` (one of :data:`STATUSES`), ``message``, ``max_abs_dp``, ``mean_abs_dp``,
    ``feature_map_rel_error``, ``call_agreement``, ``tolerance`` and ``ms`` (open + run).

    ``opener`` replaces how each model is opened (the Android app passes its LiteRT adapter).
    Raises :class:`~cxr_core.bundle.BundleError` when the bundle itself cannot be read or verified
    (every format would fail; the screen shows that one message instead).
    """
    bundle = (
        bundle_dir
        if isinstance(bundle_dir, Bundle)
        else load_bundle(bundle_dir, allow_untrusted=allow_untrusted)
    )
    golden = load_golden(bundle)
    entries = bundle.models if models is None else tuple(bundle.model(name) for name in models)
    rows = [check_model(bundle, entry, golden, threads, opener or _default_opener) for entry in entries]
    for row in rows:
        logger.info(
            "self-test %s on %s: %s (%s)", row["model"], row["runtime"], row["status"], row["message"]
        )
    return rows
