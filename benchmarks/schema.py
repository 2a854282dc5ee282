"""The results.json schema (version 1) as data, and a validator used by ``compare`` and the tests.

Each block lists its required keys and the JSON types allowed for each (``None`` = null allowed);
``*_OPTIONAL`` blocks list keys added later (``--ab``, ``--tune``, ``--peer``), checked when
present, so results written before them stay valid. Rows whose status is ``ok`` must also carry
the measured blocks. Bump ``SCHEMA_VERSION`` in
:mod:`benchmarks.results` when a key's meaning changes; ``compare`` refuses other versions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

NUM = (int, float)
NONE = type(None)

TOP: dict[str, tuple[type, ...]] = {
    "schema_version": (int,),
    "tool": (str,),
    "cxr_edge_version": (str, NONE),
    "created_at": (str,),
    "duration_s": NUM,
    "device_name": (str,),
    "machine": (dict,),
    "bundle": (dict,),
    "settings": (dict,),
    "evaluation": (dict, NONE),
    "rows": (list,),
    "formats": (list,),
    "ratios": (list,),
    "gate_cost": (list,),
    "gate_rates": (dict, NONE),
    "gates": (dict,),
    "plots": (list,),
}
#: Added with --tune / --ab / --peer: the tuning outcome (null when --tune was not given).
#: ``synthetic_training_data``: the bundle was trained on synthetic data; ``notices``: the marks
#: every figure of the bundle carries (``["Synthetic training data: not for patients"]``), as in
#: cxr-predict's predictions.json. Written by every run since; optional so older results validate.
TOP_OPTIONAL: dict[str, tuple[type, ...]] = {
    "tune": (dict, NONE),
    "synthetic_training_data": (bool,),
    "notices": (list,),
}
MACHINE = {
    "hostname": (str, NONE),
    "os": (str,),
    "system": (str,),
    "python": (str,),
    "cpu": (dict,),
    "memory_total_mb": (*NUM, NONE),
    "load_average": (list, NONE),
    "thermal": (list,),
    "frequency": (dict,),
    "packages": (dict,),
}
CPU = {
    "model": (str, NONE),
    "arch": (str,),
    "logical_cores": (int, NONE),
    "physical_cores": (int, NONE),
    "flags": (list,),
    "int8_dot_product": (bool,),
}
BUNDLE = {
    "path": (str,),
    "name": (str,),
    "architecture": (str,),
    "labels": (list,),
    "input_size": (int,),
    "operating_points": (list, NONE),
}
ROW = {
    "name": (str,),
    "kind": (str,),
    "threads": (int,),
    "status": (str,),
    "error": (str, NONE),
    "runtime": (str, NONE),
    "int8": (bool,),
    "fp16": (bool,),
    "file": (str, NONE),
    "size_bytes": (int, NONE),
    "rounds": (int,),
    "import_ms": (*NUM, NONE),
    "load_ms": (*NUM, NONE),
    "latency_ms": (dict, NONE),
    "throughput": (dict, NONE),
    "memory": (dict, NONE),
    "golden": (dict, NONE),
    "e2e": (dict, NONE),
    "profile": (dict, NONE),
}
#: Added with --ab / --tune / --peer. ``variant``: "default", an A/B settings label such as
#: "spin,opt-all" or "no-xnnpack", or the peer row's name; ``settings``: the RuntimeSettings of a
#: non-default row (null = defaults); ``peer``: what the peer ran (precision, version), null for
#: formats; ``vs_default``: p50 / the default row's p50 (same format and threads), A/B rows only.
ROW_OPTIONAL: dict[str, tuple[type, ...]] = {
    "variant": (str,),
    "settings": (dict, NONE),
    "peer": (dict, NONE),
    "vs_default": (*NUM, NONE),
}
TUNE = {
    "status": (str,),
    "machine": (str,),
    "choice": (dict, NONE),
    "cache_file": (str, NONE),
    "candidates": (list,),
}
#: ``error``: why the choice was not cached (status "not cached"); the run's results are kept.
TUNE_OPTIONAL: dict[str, tuple[type, ...]] = {"error": (str,)}
ROW_OK = {"load_ms": NUM, "latency_ms": (dict,), "memory": (dict,), "throughput": (dict,)}
LATENCY = {
    "count": (int,),
    "p50": NUM,
    "p90": NUM,
    "p99": NUM,
    "mean": NUM,
    "std": NUM,
    "min": NUM,
    "max": NUM,
    "q1": NUM,
    "q3": NUM,
    "outliers": (dict,),
    "truncated": (bool,),
    "samples": (list,),
}
OUTLIERS = {
    "count": (int,),
    "slow": (int,),
    "fast": (int,),
    "share": NUM,
    "low_fence": NUM,
    "high_fence": NUM,
}
MEMORY = {"source": (str,), "baseline_rss_mb": (*NUM, NONE), "peak_rss_mb": (*NUM, NONE)}
GOLDEN = {
    "images": (int,),
    "max_abs_dp": NUM,
    "mean_abs_dp": NUM,
    "feature_map_rel_error": NUM,
    "call_agreement": NUM,
    "tolerance": (dict,),
    "passed": (bool,),
}
FORMAT = {
    "name": (str,),
    "kind": (str,),
    "runtime": (str, NONE),
    "int8": (bool,),
    "fp16": (bool,),
    "size_bytes": (int, NONE),
    "status": (str,),
    "error": (str, NONE),
    "reference_format": (str, NONE),
    "golden": (dict, NONE),
    "eval": (dict, NONE),
}
EVAL = {
    "images": (int,),
    "auc": (dict,),
    "mean_auc": (*NUM, NONE),
    "positive_rate": (*NUM, NONE),
    "reference_format": (str, NONE),
}
#: The wall time the learned input gate adds next to the model's own, per variant (benchmarks.gate_bench).
GATE_COST = {
    "format": (str,),
    "threads": (int,),
    "int8": (bool,),
    "learned_gate_ms": NUM,
    "inference_ms": NUM,
    "inference_without_gate_ms": (*NUM, NONE),
    "added_ms": NUM,
    "ratio": (*NUM, NONE),
    "target_row": (bool,),
    "within_target": (bool, NONE),
}
#: --gate-in / --gate-ood: the folders, and one GATE_RATE_FORMAT per format under "formats".
GATE_RATES = {"in_folder": (str,), "ood_folder": (str,), "threads": (int,), "formats": (dict,)}
GATE_RATE_FORMAT = {
    "signals": (list,),
    "in_images": (int,),
    "false_refusals": (int,),
    "false_refusal_rate": (*NUM, NONE),
    "ood_images": (int,),
    "true_refusals": (int,),
    "true_refusal_rate": (*NUM, NONE),
    "in_refused_by_signal": (dict,),
    "ood_refused_by_signal": (dict,),
    "in_refused_by_rules": (int,),
    "ood_refused_by_rules": (int,),
    "unreadable": (int,),
    "auroc": (dict,),
    "categories": (dict,),
}
GATES = {
    "thresholds": (dict,),
    "failures": (list,),
    "errored_formats": (list,),
    "passed": (bool,),
    "exit_code": (int,),
}
STATUSES = ("ok", "error", "unavailable")


def _check(
    block: Any,
    spec: Mapping[str, tuple[type, ...]],
    where: str,
    problems: list[str],
    optional: Mapping[str, tuple[type, ...]] | None = None,
) -> None:
    if not isinstance(block, dict):
        problems.append(f"{where}: expected an object, got {type(block).__name__}")
        return
    optional = optional or {}
    for key, types in {**spec, **optional}.items():
        if key not in block:
            if key not in optional:
                problems.append(f"{where}: missing key {key!r}")
        elif isinstance(block[key], bool) and bool not in types:
            problems.append(f"{where}.{key}: got a boolean, expected {[t.__name__ for t in types]}")
        elif not isinstance(block[key], types):
            problems.append(
                f"{where}.{key}: got {type(block[key]).__name__}, expected {[t.__name__ for t in types]}"
            )


def _check_row(row: Any, where: str, problems: list[str]) -> None:
    _check(row, ROW, where, problems, ROW_OPTIONAL)
    if not isinstance(row, dict):
        return
    if row.get("status") not in STATUSES:
        problems.append(f"{where}.status: {row.get('status')!r}, expected one of {list(STATUSES)}")
    if row.get("status") != "ok":
        if not row.get("error"):
            problems.append(f"{where}: status {row.get('status')!r} without an error message")
        return
    _check(row, ROW_OK, where, problems)
    if isinstance(row.get("latency_ms"), dict):
        _check(row["latency_ms"], LATENCY, f"{where}.latency_ms", problems)
        _check(row["latency_ms"].get("outliers"), OUTLIERS, f"{where}.latency_ms.outliers", problems)
    if isinstance(row.get("memory"), dict):
        _check(row["memory"], MEMORY, f"{where}.memory", problems)
    if row.get("golden") is not None:
        _check(row["golden"], GOLDEN, f"{where}.golden", problems)


def validate_results(data: Any) -> list[str]:
    """Every way ``data`` departs from the schema (an empty list when it conforms)."""
    problems: list[str] = []
    _check(data, TOP, "results", problems, TOP_OPTIONAL)
    if problems and not isinstance(data, dict):
        return problems
    if isinstance(data.get("tune"), dict):
        _check(data["tune"], TUNE, "tune", problems, TUNE_OPTIONAL)
    if isinstance(data.get("machine"), dict):
        _check(data["machine"], MACHINE, "machine", problems)
        _check(data["machine"].get("cpu"), CPU, "machine.cpu", problems)
    if isinstance(data.get("bundle"), dict):
        _check(data["bundle"], BUNDLE, "bundle", problems)
    for i, row in enumerate(data.get("rows") or []):
        _check_row(row, f"rows[{i}]", problems)
    for i, summary in enumerate(data.get("formats") or []):
        _check(summary, FORMAT, f"formats[{i}]", problems)
        if isinstance(summary, dict) and summary.get("eval") is not None:
            _check(summary["eval"], EVAL, f"formats[{i}].eval", problems)
    for i, cost in enumerate(data.get("gate_cost") or []):
        _check(cost, GATE_COST, f"gate_cost[{i}]", problems)
    if isinstance(data.get("gate_rates"), dict):
        _check(data["gate_rates"], GATE_RATES, "gate_rates", problems)
        for name, rates in (data["gate_rates"].get("formats") or {}).items():
            _check(rates, GATE_RATE_FORMAT, f"gate_rates.formats.{name}", problems)
    if isinstance(data.get("gates"), dict):
        _check(data["gates"], GATES, "gates", problems)
    return problems


# ----------------------------------------------------------------------------- JSON Schema

_JSON_TYPES = {int: "integer", float: "number", str: "string", bool: "boolean", dict: "object", list: "array"}
#: (block, key) -> the block that describes the nested object (or each item of a nested list).
_NESTED: dict[tuple[str, str], str] = {
    ("TOP", "machine"): "MACHINE",
    ("MACHINE", "cpu"): "CPU",
    ("TOP", "bundle"): "BUNDLE",
    ("TOP", "rows"): "ROW",
    ("ROW", "latency_ms"): "LATENCY",
    ("LATENCY", "outliers"): "OUTLIERS",
    ("ROW", "memory"): "MEMORY",
    ("ROW", "golden"): "GOLDEN",
    ("TOP", "formats"): "FORMAT",
    ("FORMAT", "golden"): "GOLDEN",
    ("FORMAT", "eval"): "EVAL",
    ("TOP", "gate_cost"): "GATE_COST",
    ("TOP", "gate_rates"): "GATE_RATES",
    ("TOP", "gates"): "GATES",
    ("TOP", "tune"): "TUNE",
}
_BLOCKS = {
    "TOP": TOP,
    "MACHINE": MACHINE,
    "CPU": CPU,
    "BUNDLE": BUNDLE,
    "ROW": ROW,
    "LATENCY": LATENCY,
    "OUTLIERS": OUTLIERS,
    "MEMORY": MEMORY,
    "GOLDEN": GOLDEN,
    "FORMAT": FORMAT,
    "EVAL": EVAL,
    "GATE_COST": GATE_COST,
    "GATE_RATES": GATE_RATES,
    "GATE_RATE_FORMAT": GATE_RATE_FORMAT,
    "GATES": GATES,
    "TUNE": TUNE,
}
#: Keys a block may carry that are not required (see TOP_OPTIONAL, ROW_OPTIONAL).
_OPTIONAL = {"TOP": TOP_OPTIONAL, "ROW": ROW_OPTIONAL, "TUNE": TUNE_OPTIONAL}


def _types(types: tuple[type, ...]) -> list[str]:
    names = ["null" if t is NONE else _JSON_TYPES[t] for t in types]
    if "number" in names and "integer" in names:
        names.remove("integer")
    return list(dict.fromkeys(names))


def _block_schema(block: str) -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for key, types in {**_BLOCKS[block], **_OPTIONAL.get(block, {})}.items():
        nested = _NESTED.get((block, key))
        names = _types(types)
        if nested is None:
            properties[key] = {"type": names if len(names) > 1 else names[0]}
        elif "array" in names:
            properties[key] = {"type": "array", "items": {"$ref": f"#/$defs/{nested.lower()}"}}
        else:
            choices: list[dict[str, Any]] = [{"$ref": f"#/$defs/{nested.lower()}"}]
            if "null" in names:
                choices.append({"type": "null"})
            properties[key] = choices[0] if len(choices) == 1 else {"anyOf": choices}
    return {"type": "object", "properties": properties, "required": list(_BLOCKS[block])}


def results_json_schema() -> dict[str, Any]:
    """The JSON Schema of results.json, generated from the tables above (the validator's own)."""
    defs = {name.lower(): _block_schema(name) for name in _BLOCKS if name != "TOP"}
    row = defs["row"]
    row["properties"]["status"] = {"enum": list(STATUSES)}
    row["allOf"] = [
        {
            "if": {"properties": {"status": {"const": "ok"}}},
            "then": {
                "properties": {
                    key: {"type": _types(types)[0] if len(_types(types)) == 1 else _types(types)}
                    for key, types in ROW_OK.items()
                }
            },
            "else": {"properties": {"error": {"type": "string", "minLength": 1}}},
        }
    ]
    defs["gate_rates"]["properties"]["formats"] = {
        "type": "object",
        "additionalProperties": {"$ref": "#/$defs/gate_rate_format"},
    }
    top = _block_schema("TOP")
    top["properties"]["schema_version"] = {"const": 1}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://cxr-edge.invalid/schemas/results.schema.json",
        "title": "edge-bench results (results.json)",
        **top,
        "$defs": defs,
    }


SCHEMAS = {"results.schema.json": results_json_schema}


if __name__ == "__main__":
    import sys

    from cxr_core.json_schema import main

    sys.exit(main(schemas=SCHEMAS))
