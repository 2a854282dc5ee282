"""Plain-text and Markdown tables, and the number formatting both share (no third-party deps)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

MISSING = "-"


def num(value: Any, digits: int = 2) -> str:
    """A number with ``digits`` decimals; None/NaN as ``-``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return f"{float(value):.{digits}f}"


def ms(value: Any) -> str:
    """Milliseconds: 2 decimals below 10 ms, 1 above."""
    if value is None:
        return MISSING
    return f"{value:.2f}" if value < 10 else f"{value:.1f}"


def sci(value: Any) -> str:
    """A small error figure: 3 significant digits."""
    return MISSING if value is None else f"{float(value):.3g}"


def mb(value: Any) -> str:
    """Bytes (int) as MB with one decimal."""
    return MISSING if value is None else f"{value / 1e6:.1f}"


def pct(value: Any) -> str:
    """A fraction as a percentage."""
    return MISSING if value is None else f"{100.0 * float(value):.1f}%"


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell, first column left-aligned, others right-aligned."""
    widths = [
        max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h))
        for i, h in enumerate(headers)
    ]

    def line(cells: Sequence[str]) -> str:
        parts = [
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub Markdown table (pipes in cells escaped)."""

    def cell(value: Any) -> str:
        return str(value).replace("|", "\\|")

    head = "| " + " | ".join(cell(h) for h in headers) + " |"
    rule = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"
    body = ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join([head, rule, *body])
