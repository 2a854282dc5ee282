"""CI gates over a results dict, and the exit codes of edge-bench.

Always on: **golden** — every measured format must reproduce the bundle's golden FP32 outputs
within the tolerance its manifest entry records (a runtime that disagrees with the export is
broken on this device, whatever its speed). Opt-in (CLI flags):

* ``--fail-under AUC``: every format's mean AUC on ``--data`` must be at least AUC;
* ``--max-auc-drop D``: reference FP32 mean AUC minus the format's mean AUC must be at most D;
* ``--max-dp X``: max |dp| against FP32 must be at most X, on the golden set and on ``--data``;
* ``--min-agreement A``: positive-call agreement with FP32 at the operating points must be at
  least A, on the golden set and on ``--data``.

Only measured formats (status ok, not the PyTorch reference row) are judged; a format that could
not be measured is reported through :data:`EXIT_FORMAT_ERROR` instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from benchmarks.config import Gates

EXIT_OK = 0
#: A gate tripped; the failing figures are printed and stored under results["gates"]["failures"].
EXIT_GATE_FAILED = 1
#: Bad flags, an unreadable bundle or evaluation set.
EXIT_USAGE = 2
#: At least one format errored (broken file, runtime crash) and no gate tripped; or none could be measured.
EXIT_FORMAT_ERROR = 3


def _figures(summary: dict[str, Any], key: str) -> Iterator[tuple[str, float]]:
    """(where, value) of a parity figure on the golden set and on the evaluation set, where present."""
    for where in ("golden", "eval"):
        block = summary.get(where) or {}
        if block.get(key) is not None:
            yield where, float(block[key])


def _failure(
    gate: str, name: str, figure: str, value: float, threshold: float, relation: str
) -> dict[str, Any]:
    return {
        "gate": gate,
        "format": name,
        "figure": figure,
        "value": value,
        "threshold": threshold,
        "message": f"{name}: {figure} = {value:.6g}, expected {relation} {threshold:.6g} ({gate})",
    }


def _judge(summary: dict[str, Any], gates: Gates) -> list[dict[str, Any]]:
    name, failures = summary["name"], []
    golden = summary.get("golden") or {}
    if golden.get("passed") is False:
        tolerance = golden.get("tolerance") or {}
        failures.append(
            {
                "gate": "golden",
                "format": name,
                "figure": "golden max |dp| / feature-map error",
                "value": golden.get("max_abs_dp"),
                "threshold": tolerance.get("max_abs_dp"),
                "message": (
                    f"{name}: golden set max |dp| = {golden.get('max_abs_dp'):.6g} (tolerance "
                    f"{tolerance.get('max_abs_dp')}), feature-map error = "
                    f"{golden.get('feature_map_rel_error'):.6g} (tolerance "
                    f"{tolerance.get('feature_map_rel_error')}) (golden)"
                ),
            }
        )
    evaluation = summary.get("eval") or {}
    if gates.fail_under is not None and evaluation.get("mean_auc") is not None:
        if evaluation["mean_auc"] < gates.fail_under:
            failures.append(
                _failure("fail-under", name, "mean AUC", evaluation["mean_auc"], gates.fail_under, ">=")
            )
    if gates.max_auc_drop is not None and evaluation.get("mean_auc_delta") is not None:
        drop = -float(evaluation["mean_auc_delta"])
        if drop > gates.max_auc_drop:
            figure = f"mean AUC drop vs {evaluation.get('reference_format')}"
            failures.append(_failure("max-auc-drop", name, figure, drop, gates.max_auc_drop, "<="))
    if gates.max_dp is not None:
        for where, value in _figures(summary, "max_abs_dp"):
            if value > gates.max_dp:
                failures.append(_failure("max-dp", name, f"{where} max |dp|", value, gates.max_dp, "<="))
    if gates.min_agreement is not None:
        for where, value in _figures(summary, "call_agreement"):
            if value < gates.min_agreement:
                figure = f"{where} call agreement"
                failures.append(_failure("min-agreement", name, figure, value, gates.min_agreement, ">="))
    return failures


def evaluate_gates(results: dict[str, Any], gates: Gates) -> dict[str, Any]:
    """The ``gates`` block of results.json: thresholds, every failure, and the exit code it implies."""
    judged = [s for s in results["formats"] if s["kind"] == "format" and s["status"] == "ok"]
    failures = [failure for summary in judged for failure in _judge(summary, gates)]
    errored = [s["name"] for s in results["formats"] if s["kind"] == "format" and s["status"] == "error"]
    measured = bool(judged)
    if failures:
        code = EXIT_GATE_FAILED
    elif errored or not measured:
        code = EXIT_FORMAT_ERROR
    else:
        code = EXIT_OK
    return {
        "thresholds": {"golden": "per-format manifest tolerance", **gates.to_dict()},
        "failures": failures,
        "errored_formats": errored,
        "passed": not failures,
        "exit_code": code,
    }
