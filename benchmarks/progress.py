"""Progress while edge-bench runs: a tqdm bar when tqdm is installed (it is not in the runtime extras),
else plain log lines, so a Pi with only the runtime extras still shows where the run is."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

logger = logging.getLogger(__name__)

Step = Callable[[int], None]


class Reporter:
    """Progress bars (tqdm, or log lines) and one log line per measured variant."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        try:
            from tqdm import tqdm
        except ImportError:
            tqdm = None
        self._tqdm: Any = tqdm if enabled else None

    @contextmanager
    def bar(self, total: int, description: str) -> Iterator[Step]:
        """Yield ``step(n)``, advancing a bar of ``total`` units."""
        if self._tqdm is not None:
            from tqdm.contrib.logging import logging_redirect_tqdm

            with logging_redirect_tqdm(), self._tqdm(total=total, desc=description, leave=False) as bar:
                yield bar.update
            return
        done = 0

        def step(n: int) -> None:
            nonlocal done
            done += n
            if self.enabled and (done == total or done % max(1, total // 10) == 0):
                logger.info("%s: %d/%d", description, done, total)

        yield step

    def variant_callback(self, step: Step) -> Callable[[str, dict[str, Any] | None], None]:
        """A callback for :func:`benchmarks.runner.run_variants`: log the start and the outcome."""

        def callback(label: str, result: dict[str, Any] | None) -> None:
            if result is None:
                logger.info("measuring %s", label)
                return
            step(1)
            if result.get("status") == "ok":
                latency = result.get("latency_ms") or {}
                logger.info(
                    "%s: p50 %.2f ms, load %.0f ms",
                    label,
                    latency.get("p50", float("nan")),
                    result.get("load_ms") or float("nan"),
                )
            else:
                logger.warning("%s: %s: %s", label, result.get("status"), result.get("error"))

        return callback
