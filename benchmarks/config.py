"""What one edge-bench run measures and which gates it applies: frozen, validated settings."""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.latency import TimingPlan
from benchmarks.machine import physical_cores
from cxr_core.cli_common import MAX_BATCH, max_threads
from cxr_core.errors import CxrEdgeError


class BenchConfigError(CxrEdgeError, ValueError):
    """An edge-bench setting has an invalid value (the message says which and what is expected)."""


def default_threads() -> tuple[int, ...]:
    """1 and the number of physical cores capped at 4 (the Backend default), without repeats."""
    cores = physical_cores() or os.cpu_count() or 1
    return tuple(sorted({1, max(1, min(cores, 4))}))


def parse_threads(text: str) -> tuple[int, ...]:
    """``"1,2,4"`` -> (1, 2, 4); each a positive integer."""
    values = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        # ASCII digits only: str.isdigit() is also true for '²' or '①', which int() refuses
        if not (part.isascii() and part.isdigit()) or int(part) < 1:
            raise BenchConfigError(
                f"--threads {text!r}: {part!r} is not a positive integer; expected e.g. 1,2,4"
            )
        values.append(int(part))
    if not values:
        raise BenchConfigError(f"--threads {text!r}: no thread count; expected e.g. 1,2,4")
    return tuple(dict.fromkeys(values))


def check_formats(requested: Sequence[str], available: Sequence[str], bundle: Path) -> tuple[str, ...]:
    """The requested format names, each of which must be a model of the bundle (with a did-you-mean)."""
    for name in requested:
        if name not in available:
            hint = difflib.get_close_matches(name, available, n=1)
            raise BenchConfigError(
                f"--formats: bundle {bundle} has no model {name!r}; it has {list(available)}"
                + (f" (did you mean {hint[0]!r}?)" if hint else "")
            )
    return tuple(dict.fromkeys(requested))


#: Each gate's allowed thresholds (inclusive) and what the number is: a NaN or infinite threshold
#: would compare false with every figure and silently switch its gate off, so it is refused.
GATE_RANGES: dict[str, tuple[float, float, str]] = {
    "fail_under": (0.0, 1.0, "a mean AUC"),
    "max_auc_drop": (0.0, 1.0, "a drop in mean AUC"),
    "max_dp": (0.0, 1.0, "a probability difference"),
    "min_agreement": (0.0, 1.0, "a fraction of positive calls"),
}


@dataclass(frozen=True)
class Gates:
    """CI gates; None disables a gate. Which gates need ``--data`` is checked by :meth:`check`."""

    fail_under: float | None = None  # every format's mean AUC must be >= this
    max_auc_drop: float | None = None  # reference mean AUC - format mean AUC must be <= this
    max_dp: float | None = None  # max |dp| vs FP32 (golden set, and the eval set with --data)
    min_agreement: float | None = None  # positive-call agreement vs FP32 at the operating points

    def check(self, has_data: bool) -> None:
        for name, (low, high, what) in GATE_RANGES.items():
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and low <= value <= high):
                raise BenchConfigError(
                    f"--{name.replace('_', '-')} {value!r} is out of range; expected {what} "
                    f"from {low:g} to {high:g}"
                )
        if not has_data and (self.fail_under is not None or self.max_auc_drop is not None):
            raise BenchConfigError(
                "--fail-under and --max-auc-drop judge AUC and need a labelled set: pass --data DIR_OR_CSV"
            )

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)


@dataclass(frozen=True)
class BenchConfig:
    """One run of edge-bench (the CLI flags, validated)."""

    bundle: Path
    out: Path
    formats: tuple[str, ...] | None = None  # None: every model of the bundle
    threads: tuple[int, ...] = field(default_factory=default_threads)
    plan: TimingPlan = field(default_factory=TimingPlan)
    batch: int = 8
    data: Path | None = None
    limit: int | None = None
    reference_torch: Path | None = None
    e2e_images: int = 3
    e2e_repeats: int = 3
    rounds: int = 1
    idle_seconds: float = 1.0
    profile: bool = False
    device_name: str | None = None
    gates: Gates = field(default_factory=Gates)
    #: Measure a bundle that is unsigned or not signed by a trusted key (the report says so).
    allow_untrusted: bool = False
    #: Extra rows per format and thread count with other runtime settings (benchmarks.variants).
    ab: bool = False
    #: Measure the candidate settings, pick the fastest passing one, cache it (cxr_core.runtime.tuning).
    tune: bool = False
    #: Folder of the tuning cache (None: cxr_core.runtime.tuning.tuning_dir()).
    tune_dir: Path | None = None
    #: Peer runtimes measured side by side on the FP32 ONNX file (benchmarks.peers).
    peers: tuple[str, ...] = ()
    #: In- and out-of-distribution image folders for the input gate's refusal rates (both or neither).
    gate_in: Path | None = None
    gate_ood: Path | None = None
    gate_limit: int = 500
    #: Replace the results of an earlier run found in ``out`` (else such an ``out`` is refused).
    overwrite: bool = False

    def __post_init__(self) -> None:
        checks = {  # name: (ok, expected range): a sane maximum keeps a typo from exhausting the machine
            "batch": (1 <= self.batch <= MAX_BATCH, f"1..{MAX_BATCH}"),
            "e2e_images": (0 <= self.e2e_images <= 1000, "0..1000"),
            "e2e_repeats": (1 <= self.e2e_repeats <= 1000, "1..1000"),
            "rounds": (1 <= self.rounds <= 100, "1..100"),
            "idle_seconds": (0 <= self.idle_seconds <= 3600, "0..3600 seconds"),
            "limit": (self.limit is None or self.limit >= 1, "at least 1"),
            "gate_limit": (self.gate_limit >= 1, "at least 1"),
        }
        if (self.gate_in is None) != (self.gate_ood is None):
            raise BenchConfigError(
                f"--gate-in {self.gate_in} and --gate-ood {self.gate_ood}: give both folders (in- and "
                "out-of-distribution images) to measure the input gate's refusal rates, or neither"
            )
        for name, (ok, expected) in checks.items():
            if not ok:
                raise BenchConfigError(
                    f"--{name.replace('_', '-')} {getattr(self, name)!r} is out of range; expected {expected}"
                )
        top = max_threads()
        if not self.threads or any(not 1 <= t <= top for t in self.threads):
            raise BenchConfigError(
                f"threads {list(self.threads)!r}; expected integers from 1 to {top} "
                "(twice the CPUs here, at most 64)"
            )
        self.gates.check(self.data is not None)
        if self.tune_dir is not None and not self.tune:
            raise BenchConfigError("--tune-cache DIR names where --tune writes its choice; add --tune")
        from benchmarks.peers import check_peers

        check_peers(self.peers)

    def to_dict(self) -> dict[str, Any]:
        """The settings block of results.json."""
        return {
            "bundle": str(self.bundle),
            "formats": list(self.formats) if self.formats else None,
            "threads": list(self.threads),
            "runs": self.plan.runs,
            "warmup": self.plan.warmup,
            "max_seconds": self.plan.max_seconds,
            "batch": self.batch,
            "data": str(self.data) if self.data else None,
            "limit": self.limit,
            "reference_torch": str(self.reference_torch) if self.reference_torch else None,
            "e2e_images": self.e2e_images,
            "e2e_repeats": self.e2e_repeats,
            "rounds": self.rounds,
            "idle_seconds": self.idle_seconds,
            "profile": self.profile,
            "ab": self.ab,
            "tune": self.tune,
            "peers": list(self.peers),
            "gates": self.gates.to_dict(),
            "gate_in": str(self.gate_in) if self.gate_in else None,
            "gate_ood": str(self.gate_ood) if self.gate_ood else None,
            "gate_limit": self.gate_limit,
        }
