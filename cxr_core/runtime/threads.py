"""How many threads a backend uses: physical cores, capped, unless the caller says otherwise."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from cxr_core.runtime.errors import ThreadCountError

#: The most threads a default backend uses: past 4, CNN inference on small devices stops scaling.
MAX_DEFAULT_THREADS = 4


def default_threads() -> int:
    """Physical cores this process may use, capped at :data:`MAX_DEFAULT_THREADS`.

    SMT siblings share one core's vector units, so counting them only adds contention. The
    topology is read from /sys where it exists (Linux, Android); elsewhere the logical count is used.
    """
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = list(range(os.cpu_count() or 1))
    cores: set[tuple[str, str]] = set()
    for cpu in cpus:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            cores = {(str(c), "") for c in cpus}
            break
        cores.add((package, core))
    return max(1, min(MAX_DEFAULT_THREADS, len(cores) or 1))


def resolve_threads(threads: int | None) -> int:
    """``threads`` checked (a positive int), or :func:`default_threads` for None."""
    if threads is None:
        return default_threads()
    if isinstance(threads, bool) or not isinstance(threads, int | np.integer) or threads < 1:
        raise ThreadCountError(
            f"threads must be a positive integer or None (physical cores, max 4); got {threads!r}"
        )
    return int(threads)
