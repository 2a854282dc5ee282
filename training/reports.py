"""Run reports: metrics per epoch (JSON + CSV), ROC and PR curve plots, a Markdown AUC table.

All files are written atomically. Plots use matplotlib's Agg backend (no display needed).
JSON files hold ``null`` where a metric is undefined (NaN), so any JSON reader accepts them.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from cxr_core.labels import display_name
from cxr_core.optional import require
from training.fileio import atomic_target, atomic_write_text
from training.metrics import MetricsReport, curve_points, operating_point_stats


def json_safe(value: Any) -> Any:
    """Replace NaN/inf by ``None`` and numpy scalars/arrays by Python values, recursively."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path: str | Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n")


def _fmt(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


# ----- per-epoch history ---------------------------------------------------------------------------
def history_rows(history: Sequence[Mapping[str, Any]], labels: Sequence[str]) -> list[dict[str, Any]]:
    """One flat row per epoch: epoch, losses, lr, time, summary metrics, then AUC and AP per finding."""
    rows = []
    for entry in history:
        val = MetricsReport.from_dict(entry["val"])
        row: dict[str, Any] = {
            "epoch": entry["epoch"],
            "train_loss": entry.get("train_loss"),
            "val_loss": entry.get("val_loss"),
            "lr": entry.get("lr"),
            "seconds": entry.get("seconds"),
            "images_per_s": entry.get("images_per_s"),
            "mean_auc": val.mean_auc,
            "macro_auc": val.macro_auc,
            "micro_auc": val.micro_auc,
            "mean_ap": val.mean_ap,
        }
        row.update({f"auc_{label}": val.per_class_auc.get(label) for label in labels})
        row.update({f"ap_{label}": val.per_class_ap.get(label) for label in labels})
        rows.append(row)
    return rows


def write_csv(path: str | Path, rows: Sequence[Mapping[str, Any]]) -> Path:
    buffer = io.StringIO()
    if rows:
        writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if json_safe(v) is None else v) for k, v in row.items()})
    return atomic_write_text(path, buffer.getvalue())


def write_history(
    out_dir: str | Path,
    history: Sequence[Mapping[str, Any]],
    labels: Sequence[str],
    extra: Mapping[str, Any] | None = None,
) -> tuple[Path, Path]:
    """``metrics.json`` (the full history plus ``extra``) and ``metrics.csv`` (one row per epoch)."""
    out = Path(out_dir)
    data = {"labels": list(labels), **(extra or {}), "epochs": list(history)}
    return write_json(out / "metrics.json", data), write_csv(
        out / "metrics.csv", history_rows(history, labels)
    )


# ----- curves ----------------------------------------------------------------------------------------
def _pyplot() -> Any:
    matplotlib = require("matplotlib", extra="train", purpose="Plotting ROC/PR curves")
    matplotlib.use("Agg", force=True)
    return require("matplotlib.pyplot", extra="train", purpose="Plotting ROC/PR curves")


def _save_figure(figure: Any, path: Path) -> Path:
    with atomic_target(path) as tmp:
        figure.savefig(tmp, dpi=110, format=path.suffix.lstrip(".") or "png")
    return path


def plot_curves(
    kind: str,
    y_true: ArrayLike,
    y_score: ArrayLike,
    labels: Sequence[str],
    report: MetricsReport,
    path: str | Path,
    mask: ArrayLike | None = None,
    title: str = "",
) -> Path:
    """One figure with the ROC (``kind="roc"``) or PR (``"pr"``) curve of every finding.

    The legend gives each finding's AUC (ROC) or average precision (PR); findings without both
    label values are listed as n/a and not drawn.
    """
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(8.5, 7.0))
    colours = plt.get_cmap("tab10")
    for j, label in enumerate(labels):
        points = curve_points(y_true, y_score, mask, j, kind)
        value = report.classes[j].auc if kind == "roc" else report.classes[j].ap
        name = f"{display_name(label)} ({_fmt(value, 3)})"
        style = ("-", "--", ":")[(j // 10) % 3]
        if points is None:
            axes.plot([], [], color=colours(j % 10), linestyle=style, label=name)
            continue
        x, y = points
        axes.plot(
            x,
            y,
            color=colours(j % 10),
            linestyle=style,
            linewidth=1.2,
            label=name,
            drawstyle="steps-post" if kind == "pr" else "default",
        )
    if kind == "roc":
        axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=0.8)
        axes.set_xlabel("False positive rate (1 - specificity)")
        axes.set_ylabel("True positive rate (sensitivity)")
        headline = f"mean AUC {_fmt(report.mean_auc)}"
    else:
        axes.set_xlabel("Recall (sensitivity)")
        axes.set_ylabel("Precision (positive predictive value)")
        headline = f"mean AP {_fmt(report.mean_ap)}"
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.01)
    axes.set_title(f"{title} - {headline}" if title else headline)
    axes.legend(loc="lower right" if kind == "roc" else "lower left", fontsize=7, ncol=2)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    try:
        return _save_figure(figure, Path(path))
    finally:
        plt.close(figure)


# ----- Markdown ------------------------------------------------------------------------------------
def auc_table(columns: Mapping[str, MetricsReport], labels: Sequence[str]) -> str:
    """A Markdown table like the DGC paper's Table II: rows = findings, one AUC column per run, mean last."""
    names = list(columns)
    lines = ["| Finding | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for label in labels:
        cells = [_fmt(columns[n].per_class_auc.get(label, math.nan)) for n in names]
        lines.append(f"| {display_name(label)} | " + " | ".join(cells) + " |")
    lines.append("| **Mean** | " + " | ".join(f"**{_fmt(columns[n].mean_auc)}**" for n in names) + " |")
    return "\n".join(lines) + "\n"


def detail_table(report: MetricsReport, operating: Mapping[str, Sequence[float]] | None = None) -> str:
    """Per-finding AUC, AP, counts and (optionally) operating point, sensitivity, specificity."""
    head = "| Finding | AUC | AP | positives | negatives |"
    rule = "|---|---:|---:|---:|---:|"
    if operating:
        head += " operating point | sensitivity | specificity |"
        rule += "---:|---:|---:|"
    lines = [head, rule]
    for j, c in enumerate(report.classes):
        row = f"| {display_name(c.label)} | {_fmt(c.auc)} | {_fmt(c.ap)} | {c.positives} | {c.negatives} |"
        if operating:
            row += (
                f" {_fmt(operating['threshold'][j], 3)} | {_fmt(operating['sensitivity'][j], 3)} |"
                f" {_fmt(operating['specificity'][j], 3)} |"
            )
        lines.append(row)
    return "\n".join(lines) + "\n"


def write_summary(
    path: str | Path,
    title: str,
    report: MetricsReport,
    column: str,
    facts: Mapping[str, Any] | None = None,
    operating: Mapping[str, Sequence[float]] | None = None,
) -> Path:
    """``summary.md``: facts about the run, the AUC table (one column), then the detail table."""
    parts = [f"# {title}\n"]
    if facts:
        parts.append("\n".join(f"- **{k}**: {v}" for k, v in facts.items()) + "\n")
    parts.append(
        f"Mean AUC {_fmt(report.mean_auc)} (macro; micro {_fmt(report.micro_auc)}), mean AP "
        f"{_fmt(report.mean_ap)}, {report.n_samples} images.\n"
    )
    if report.undefined:
        parts.append(
            "AUC undefined (one label value only in this split), left out of the mean: "
            + ", ".join(display_name(u) for u in report.undefined)
            + ".\n"
        )
    parts.append(auc_table({column: report}, report.labels))
    parts.append("## Per finding\n")
    parts.append(detail_table(report, operating))
    return atomic_write_text(path, "\n".join(parts))


def write_evaluation_reports(
    out_dir: str | Path,
    y_true: ArrayLike,
    y_score: ArrayLike,
    mask: ArrayLike | None,
    report: MetricsReport,
    title: str,
    column: str,
    facts: Mapping[str, Any] | None = None,
    operating: Mapping[str, Sequence[float]] | None = None,
) -> dict[str, Path]:
    """``roc.png``, ``pr.png`` and ``summary.md`` for one set of predictions."""
    out = Path(out_dir)
    labels = report.labels
    return {
        "roc": plot_curves("roc", y_true, y_score, labels, report, out / "roc.png", mask, title),
        "pr": plot_curves("pr", y_true, y_score, labels, report, out / "pr.png", mask, title),
        "summary": write_summary(out / "summary.md", title, report, column, facts, operating),
    }


def write_run_reports(
    out_dir: str | Path,
    history: Sequence[Mapping[str, Any]],
    best_epoch: int,
    tag: str,
    facts: Mapping[str, Any],
) -> dict[str, Path]:
    """The ROC/PR plots and ``summary.md`` of a run's best epoch (from ``val_predictions.npz``)."""
    out = Path(out_dir)
    predictions = out / "val_predictions.npz"
    if not predictions.is_file():
        return {}
    with np.load(predictions) as data:
        truth, probs, mask = data["truth"], data["probs"], data["mask"]
    entry = next(e for e in history if e["epoch"] == best_epoch)
    report = MetricsReport.from_dict(entry["val"])
    operating = operating_point_stats(truth, probs, entry["operating_points"], mask)
    title = f"{tag} on {facts.get('dataset', '')} val (best epoch)"
    files = write_evaluation_reports(out, truth, probs, mask, report, title, f"{tag} (val)", facts, operating)
    names = {
        "config": "config.yaml",
        "metrics_json": "metrics.json",
        "metrics_csv": "metrics.csv",
        "best": "best.pt",
        "last": "last.pt",
        "log": "train.log",
        "val_predictions": predictions.name,
    }
    files.update({key: out / name for key, name in names.items()})
    return files
