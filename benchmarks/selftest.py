"""Device self-test: run the bundle's golden set through each model and say pass or fail per format.

For the app's diagnostics screen (and anyone checking a device by hand): no subprocess, no
timing loops, no plots; numpy + cxr_core only, so it runs wherever the app runs. It uses the same
golden comparison as edge-bench's golden columns (:func:`benchmarks.golden.golden_parity`), so the
screen and the benchmark can never disagree about a format.

Why here and not in cxr_core: the self-test is edge-bench's golden check with the benchmark left
out, and keeping one implementation of that check beside the benchmark keeps them identical.
It imports nothing the app lacks (this module and benchmarks.golden import numpy and cxr_core
only), so an app build that ships the ``benchmarks`` package (a few kB) can call it; if a
packaging route ever has to leave ``benchmarks`` out, these two modules move into cxr_core as
they are.

>>> from benchmarks.selftest import run_selftest
>>> for row in run_selftest("bundles/chexnet"):          # doctest: +SKIP
...     print(row["model"], row["status"], row["max_abs_dp"])
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.golden import golden_parity, tolerance_for
from cxr_core.bundle import load_bundle, load_golden
from cxr_core.errors import MissingDependencyError

logger = logging.getLogger(__name__)


def _unavailable(exc: BaseException) -> bool:
    if isinstance(exc, MissingDependencyError | ImportError):
        return True
    from cxr_core.runtime import RuntimeUnavailableError

    return isinstance(exc, RuntimeUnavailableError)


#: ``opener(bundle, entry, threads) -> Backend``: how a platform opens a model (default: cxr_core.runtime).
ModelOpener = Callable[[Any, Any, "int | None"], Any]


def _default_opener(bundle: Any, entry: Any, threads: int | None) -> Any:
    from cxr_core.runtime import open_model

    return open_model(bundle.path(entry), entry, threads=threads)


def _check_model(
    bundle: Any,
    raw: dict[str, Any],
    golden: dict[str, Any],
    threads: int | None,
    opener: ModelOpener = _default_opener,
) -> dict[str, Any]:
    name = str(raw["name"])
    row: dict[str, Any] = {
        "model": name,
        "runtime": raw.get("runtime"),
        "status": "error",
        "message": None,
        "max_abs_dp": None,
        "mean_abs_dp": None,
        "feature_map_rel_error": None,
        "tolerance": tolerance_for(raw),
        "ms": None,
    }
    try:
        entry = bundle.model(name)
        start = time.perf_counter_ns()
        backend = opener(bundle, entry, threads)
        try:
            outputs = backend(np.asarray(golden["inputs"], dtype=np.float32))
            row["runtime"] = backend.runtime
        finally:
            backend.close()
        row["ms"] = round((time.perf_counter_ns() - start) / 1e6, 2)
        parity = golden_parity(outputs, golden, row["tolerance"], bundle.operating_points)
    except Exception as exc:  # a broken model is a failed row on the screen, never a crash
        row["status"] = "unavailable" if _unavailable(exc) else "error"
        row["message"] = f"{type(exc).__name__}: {exc}"
        return row
    row.update({k: parity[k] for k in ("max_abs_dp", "mean_abs_dp", "feature_map_rel_error")})
    row["status"] = "pass" if parity["passed"] else "fail"
    row["message"] = (
        f"{parity['images']} golden images within tolerance"
        if parity["passed"]
        else f"outputs differ from the reference: max |dp| {parity['max_abs_dp']:.3g} "
        f"(tolerance {row['tolerance']['max_abs_dp']}), "
        f"feature-map error {parity['feature_map_rel_error']:.3g} "
        f"(tolerance {row['tolerance']['feature_map_rel_error']})"
    )
    return row


def run_selftest(
    bundle_dir: str | Path, threads: int | None = None, opener: ModelOpener | None = None
) -> list[dict[str, Any]]:
    """One dict per model of the bundle: ``model``, ``runtime``, ``status`` (``pass`` / ``fail`` /
    ``unavailable`` / ``error``), ``message``, ``max_abs_dp``, ``mean_abs_dp``,
    ``feature_map_rel_error``, ``tolerance`` and ``ms`` (open + run).

    ``opener`` replaces how each model is opened (the Android app passes its LiteRT adapter).
    Raises :class:`~cxr_core.bundle.BundleError` when the bundle itself cannot be read or verified
    (every format would fail; the screen shows that one message instead).
    """
    bundle = load_bundle(bundle_dir)
    golden = load_golden(bundle)
    open_with = opener or _default_opener
    rows = [_check_model(bundle, dict(raw), golden, threads, open_with) for raw in bundle.manifest["models"]]
    for row in rows:
        logger.info(
            "self-test %s on %s: %s (%s)", row["model"], row["runtime"], row["status"], row["message"]
        )
    return rows
