"""``edge-bench compare A.json B.json ...``: results from several devices merged into one table.

Rows are device x format x threads, sorted by format, threads, then device, so the same format on
a laptop, a Pi 4, a Pi 5 and a phone sit next to each other. Each file is checked against the
schema first; a file of another schema version or a broken one is refused with its name.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.fileio import write_json_atomic, write_text_atomic
from benchmarks.results import SCHEMA_VERSION
from benchmarks.schema import validate_results
from benchmarks.tables import MISSING, markdown_table, mb, ms, num, sci, text_table
from cxr_core.errors import CxrEdgeError

HEADERS = [
    "device",
    "cpu",
    "format",
    "runtime",
    "thr",
    "status",
    "p50",
    "p90",
    "p99",
    "load ms",
    "RSS MB",
    "size MB",
    "golden max|dp|",
    "mean AUC",
]


class CompareError(CxrEdgeError, ValueError):
    """A results file cannot be compared (unreadable, another schema version, or malformed)."""


def load_results(path: str | Path) -> dict[str, Any]:
    """Read and validate one results.json."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CompareError(
            f"{path}: cannot be read as JSON ({exc}); expected an edge-bench results.json"
        ) from exc
    if not isinstance(data, dict) or data.get("schema_version") != SCHEMA_VERSION:
        version = data.get("schema_version") if isinstance(data, dict) else None
        raise CompareError(
            f"{path}: schema_version {version!r}; this edge-bench reads version {SCHEMA_VERSION}"
        )
    problems = validate_results(data)
    if problems:
        raise CompareError(f"{path}: not a valid results.json: {'; '.join(problems[:5])}")
    return data


def _devices(paths: Sequence[Path], results: Sequence[dict[str, Any]]) -> list[str]:
    """Device names, made unique with the file's folder name where two files share one."""
    names = [r["device_name"] for r in results]
    counts = Counter(names)
    return [
        f"{n} ({p.parent.name or p.stem})" if counts[n] > 1 else n for n, p in zip(names, paths, strict=True)
    ]


def merged_rows(paths: Sequence[Path], results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One flat dict per device x format x threads."""
    rows = []
    for device, data in zip(_devices(paths, results), results, strict=True):
        summaries = {s["name"]: s for s in data["formats"]}
        for row in data["rows"]:
            lat, mem = row.get("latency_ms") or {}, row.get("memory") or {}
            summary = summaries.get(row["name"], {})
            rows.append(
                {
                    "device": device,
                    "cpu": data["machine"]["cpu"].get("model"),
                    "arch": data["machine"]["cpu"].get("arch"),
                    "bundle": data["bundle"]["name"],
                    "format": row["name"]
                    if row.get("variant", "default") in ("default", row["name"])
                    else f"{row['name']} [{row['variant']}]",
                    "runtime": row["runtime"],
                    "threads": row["threads"],
                    "status": row["status"],
                    "error": row["error"],
                    "p50": lat.get("p50"),
                    "p90": lat.get("p90"),
                    "p99": lat.get("p99"),
                    "load_ms": row.get("load_ms"),
                    "peak_rss_mb": mem.get("peak_rss_mb"),
                    "size_bytes": row["size_bytes"],
                    "golden_max_abs_dp": (summary.get("golden") or {}).get("max_abs_dp"),
                    "mean_auc": (summary.get("eval") or {}).get("mean_auc"),
                }
            )
    rows.sort(key=lambda r: (r["format"], r["threads"], r["device"]))
    return rows


def merged_notices(results: Sequence[dict[str, Any]]) -> list[str]:
    """Every notice of the merged files, once each in order (a synthetic-data mark in any one of them
    marks the whole comparison: its AUCs sit in the same table)."""
    return list(dict.fromkeys(notice for r in results for notice in r.get("notices") or []))


def _cells(row: dict[str, Any]) -> list[str]:
    return [
        row["device"],
        str(row["cpu"] or MISSING),
        row["format"],
        str(row["runtime"] or MISSING),
        str(row["threads"]),
        row["status"],
        ms(row["p50"]),
        ms(row["p90"]),
        ms(row["p99"]),
        ms(row["load_ms"]),
        num(row["peak_rss_mb"], 0),
        mb(row["size_bytes"]),
        sci(row["golden_max_abs_dp"]),
        num(row["mean_auc"], 4),
    ]


def compare(paths: Sequence[str | Path], out: str | Path | None = None) -> tuple[str, list[dict[str, Any]]]:
    """Merge the files; return the terminal table and the rows, writing compare.md/.json into ``out``."""
    if len(paths) < 1:
        raise CompareError("compare needs at least one results.json")
    files = [Path(p) for p in paths]
    results = [load_results(p) for p in files]
    rows = merged_rows(files, results)
    notices = merged_notices(results)
    marks = [f"*** {notice.upper()} ***" for notice in notices]
    table = "\n".join([*marks, text_table(HEADERS, [_cells(r) for r in rows]), *marks])
    if out is not None:
        out = Path(out)
        sources = [
            {
                "file": str(p),
                "device": d,
                "created_at": r["created_at"],
                "bundle": r["bundle"]["name"],
                "synthetic_training_data": r.get("synthetic_training_data"),
            }
            for p, d, r in zip(files, _devices(files, results), results, strict=True)
        ]
        document = {"schema_version": SCHEMA_VERSION, "notices": notices, "sources": sources, "rows": rows}
        write_json_atomic(out / "compare.json", document)
        lines = [
            "# edge-bench comparison",
            "",
            *([*(f"> **{notice.upper()}**" for notice in notices), ""] if notices else []),
            *(f"- {s['device']}: {s['file']} ({s['created_at']}, bundle {s['bundle']})" for s in sources),
            "",
            markdown_table(HEADERS, [_cells(r) for r in rows]),
            "",
        ]
        write_text_atomic(out / "compare.md", "\n".join(lines))
    return table, rows
