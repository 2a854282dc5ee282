"""cxr-export and edge-bench print an AUC loss with the same sign, under the same column label."""

from __future__ import annotations

import copy

import pytest

from benchmarks.report import markdown_report, terminal_report
from cxr_core.metrics import AUC_DROP_LABEL, CLASS_AUC_DROP_LABEL, auc_drop
from quantize.cli import _print_rows
from tests.benchmarks.conftest import Run


def test_auc_drop_is_reference_minus_format() -> None:
    assert auc_drop(0.90, 0.88) == pytest.approx(0.02)
    assert auc_drop(0.88, 0.90) == pytest.approx(-0.02)
    assert "ref - format" in AUC_DROP_LABEL


def _cell(table: str, label: str, row_name: str) -> str:
    """The cell under ``label`` in the row of ``row_name`` of a whitespace-aligned table."""
    lines = table.splitlines()
    header = next(line for line in lines if label in line)
    row = next(line for line in lines if line.startswith(row_name + " "))
    end = header.index(label) + len(label)  # the cells are right-aligned under their titles
    return row[:end].split()[-1]


def test_export_table_prints_a_loss_as_a_positive_drop(capsys: pytest.CaptureFixture[str]) -> None:
    rows = [
        {
            "name": "onnx-int8",
            "status": "ok",
            "parity": {"mean_auc": 0.88, "auc_drop": 0.02, "max_class_auc_drop": 0.05},
        },
    ]
    _print_rows(rows)
    out = capsys.readouterr().out
    assert _cell(out, AUC_DROP_LABEL, "onnx-int8") == "+0.0200"
    assert _cell(out, CLASS_AUC_DROP_LABEL, "onnx-int8") == "+0.0500"
    assert "positive = worse" in out


def test_bench_table_prints_the_same_loss_the_same_way(loose_run: Run) -> None:
    results = copy.deepcopy(loose_run.results)
    evaluated = [s for s in results["formats"] if s.get("eval") and s["eval"].get("reference_format")]
    assert evaluated, "the loose run evaluates at least one format against an FP32 reference"
    target = evaluated[0]
    target["eval"]["mean_auc"] = 0.88
    target["eval"]["mean_auc_delta"] = -0.02  # results.json keeps format - reference
    target["eval"]["max_class_auc_drop"] = 0.05
    text = terminal_report(results)
    parity = text.split("== Parity ==")[1]
    assert AUC_DROP_LABEL in parity and CLASS_AUC_DROP_LABEL in parity
    cells = next(line for line in parity.splitlines() if line.startswith(target["name"] + " ")).split()
    assert "0.0200" in cells and "0.0500" in cells
    assert "-0.0200" not in cells
    assert "dAUC" not in text and "dAUC" not in markdown_report(results)
