"""Compare the arm64 run with the host's, format by format, against each format's golden tolerance.

Pure functions on the documents both sides wrote (the probe's golden probabilities, ``cxr-predict
--json`` and ``cxr-export verify --json``), so the judgement is tested without qemu.

A format **passes** when the arm64 side ran it, ``cxr-export verify`` passed on arm64, every
probability is finite, every phantom was scored (or refused) alike on both sides, and the largest
|p_arm64 - p_x86| over the golden inputs and the phantoms is within the format's golden tolerance
(:func:`cxr_core.parity.golden_tolerance_for`: the tolerance a device's self-test applies against the
export's reference, so a device may differ from x86 by no more than it may differ from the reference).
It is **unavailable** when the arm64 root cannot run its runtime (reported, not failed unless every
format must run), and **fails** otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import PurePath
from typing import Any

import numpy as np

STATUSES = ("pass", "fail", "unavailable")


@dataclass(frozen=True)
class SidePredictions:
    """One side's ``cxr-predict`` document reduced to what is compared, keyed by file name."""

    probabilities: dict[str, list[float]] = field(default_factory=dict)
    decisions: dict[str, list[bool]] = field(default_factory=dict)
    refused: dict[str, str] = field(default_factory=dict)


def side_predictions(document: Mapping[str, Any]) -> SidePredictions:
    """The probabilities (``model_output``), decisions and refusals of a ``cxr-predict --json`` document."""
    side = SidePredictions()
    for record in document.get("results", []):
        name = PurePath(record["source"]).name
        side.probabilities[name] = [float(f["model_output"]) for f in record["findings"]]
        side.decisions[name] = [bool(f["above_operating_point"]) for f in record["findings"]]
    for failure in document.get("failures", []):
        side.refused[PurePath(failure["file"]).name] = f"{failure['error']}: {'; '.join(failure['reasons'])}"
    return side


def max_abs_difference(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> float:
    """max |a - b| over every value; infinity when a value is not finite or the shapes differ."""
    left, right = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if left.shape != right.shape:
        return math.inf
    if left.size == 0:
        return 0.0
    if not (np.isfinite(left).all() and np.isfinite(right).all()):
        return math.inf
    return float(np.max(np.abs(left - right)))


@dataclass(frozen=True)
class FormatComparison:
    """One format's arm64-vs-host result (one row of the table)."""

    model: str
    format: str
    precision: str
    tolerance: float
    status: str
    runtime: str | None = None
    golden_images: int = 0
    golden_max_abs_dp: float | None = None
    phantoms: int = 0
    phantom_max_abs_dp: float | None = None
    decision_flips: int = 0
    arm64_verify: str | None = None
    arm64_verify_max_abs_dp: float | None = None
    problems: tuple[str, ...] = ()

    @property
    def max_abs_dp(self) -> float | None:
        values = [v for v in (self.golden_max_abs_dp, self.phantom_max_abs_dp) if v is not None]
        return max(values) if values else None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["problems"] = list(self.problems)
        data["max_abs_dp"] = self.max_abs_dp
        for key, value in data.items():  # JSON has no infinity
            if isinstance(value, float) and not math.isfinite(value):
                data[key] = str(value)
        return data


def compare_format(
    *,
    model: str,
    format: str,
    precision: str,
    tolerance: float,
    host_golden: Mapping[str, Any],
    arm_golden: Mapping[str, Any] | None,
    host_predict: Mapping[str, Any] | None,
    arm_predict: Mapping[str, Any] | None,
    arm_verify: Mapping[str, Any] | None,
    unavailable: str | None = None,
) -> FormatComparison:
    """Judge one format. ``*_golden`` are the probe's rows for the model, ``*_predict`` the
    ``cxr-predict --json`` documents, ``arm_verify`` the model's row of ``cxr-export verify --json``
    on arm64; ``unavailable`` the reason the arm64 root cannot run the format's runtime."""
    base = {"model": model, "format": format, "precision": precision, "tolerance": tolerance}
    if unavailable is not None:
        return FormatComparison(**base, status="unavailable", problems=(unavailable,))
    problems: list[str] = []
    if host_golden.get("status") != "ok":
        return FormatComparison(
            **base, status="fail", problems=(f"the host could not run it: {host_golden.get('message')}",)
        )
    golden_dp = None
    images = 0
    runtime = None
    if arm_golden is None or arm_golden.get("status") != "ok":
        why = "no result" if arm_golden is None else arm_golden.get("message")
        problems.append(f"arm64 golden run failed: {why}")
    else:
        runtime = arm_golden.get("runtime")
        images = len(host_golden["probabilities"])
        golden_dp = max_abs_difference(arm_golden["probabilities"], host_golden["probabilities"])
    phantom_dp = None
    phantoms = flips = 0
    if host_predict is None or arm_predict is None:
        problems.append(f"cxr-predict gave no document on {'the host' if host_predict is None else 'arm64'}")
    else:
        host, arm = side_predictions(host_predict), side_predictions(arm_predict)
        for name in sorted(set(host.refused) ^ set(arm.refused)):
            where = "arm64" if name in arm.refused else "the host"
            problems.append(f"{name} refused only on {where}: {(arm.refused | host.refused)[name]}")
        common = sorted(set(host.probabilities) & set(arm.probabilities))
        phantoms = len(common)
        if common:
            phantom_dp = max_abs_difference(
                [arm.probabilities[n] for n in common], [host.probabilities[n] for n in common]
            )
            flips = sum(
                a != h for n in common for a, h in zip(arm.decisions[n], host.decisions[n], strict=True)
            )
    verify_status = verify_dp = None
    if arm_verify is None:
        problems.append("cxr-export verify gave no row for it on arm64")
    else:
        verify_status, verify_dp = arm_verify.get("status"), arm_verify.get("max_abs_dp")
        if verify_status not in ("pass", "not run"):
            problems.append(f"cxr-export verify on arm64: {verify_status} ({arm_verify.get('message')})")
    for label, value in (("golden", golden_dp), ("phantom", phantom_dp)):
        if value is not None and not value <= tolerance:
            shown = "not finite or of another shape" if not math.isfinite(value) else f"{value:.3g}"
            problems.append(f"{label} max |dp| arm64 vs x86 {shown} > tolerance {tolerance:g}")
    return FormatComparison(
        **base,
        status="fail" if problems else "pass",
        runtime=runtime,
        golden_images=images,
        golden_max_abs_dp=golden_dp,
        phantoms=phantoms,
        phantom_max_abs_dp=phantom_dp,
        decision_flips=flips,
        arm64_verify=verify_status,
        arm64_verify_max_abs_dp=verify_dp,
        problems=tuple(problems),
    )


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return "inf" if not math.isfinite(value) else f"{value:.2e}"


def table(rows: Sequence[FormatComparison]) -> str:
    """The result as a fixed-width table (one line per format, then each format's problems)."""
    header = (
        f"{'format':<12} {'precision':<9} {'arm64 runtime':<14} {'golden':>9} {'phantoms':>9} "
        f"{'max|dp|':>9} {'tolerance':>9} {'flips':>5} {'verify':>7}  status"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        lines.append(
            f"{row.model:<12} {row.precision:<9} {row.runtime or '-':<14} "
            f"{_number(row.golden_max_abs_dp):>9} "
            f"{_number(row.phantom_max_abs_dp):>9} {_number(row.max_abs_dp):>9} {row.tolerance:>9g} "
            f"{row.decision_flips:>5} {row.arm64_verify or '-':>7}  {row.status}"
        )
    for row in rows:
        lines += [f"  {row.model}: {problem}" for problem in row.problems]
    lines.append(
        "golden/phantoms: max |p_arm64 - p_x86| over the bundle's golden inputs / the phantom images"
    )
    return "\n".join(lines)


def overall_passed(rows: Sequence[FormatComparison], require_all: bool) -> bool:
    """Every format passed, or (unless ``require_all``) was unavailable; and at least one ran."""
    ran = [r for r in rows if r.status != "unavailable"]
    if not ran:
        return False
    allowed = ("pass",) if require_all else ("pass", "unavailable")
    return all(r.status in allowed for r in rows)
