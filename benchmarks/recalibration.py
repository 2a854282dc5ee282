"""Does on-site recalibration help? Operating points before and after ``cxr-calibrate`` on a shifted site.

    python -m benchmarks.recalibration BUNDLE --data SITE [--gamma 1.6] [--out DIR]

The site's labelled images (``labels.csv`` or ChestX-ray14 layout, as ``cxr-calibrate`` reads them)
are split in two by position: the even ones play the site's calibration set, the odd ones the
site's future patients. ``--gamma`` first re-renders every image with ``pixel ** gamma`` (another
exposure or processing: a contrast shift), so a phantom set drawn with another prevalence preset
(``cxr-synth --prevalence realistic``) and another contrast stands in for a new site.
The bundle is recalibrated on the first half; on the second half the study prints, per finding,
sensitivity and specificity at the original and at the recalibrated operating point, against the
target: the sensitivity and specificity the bundle itself reports at its operating point (from its
export validation). Torch-free; it measures and prints, it asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cxr_core.bundle import load_bundle
from cxr_core.cli_common import add_version
from cxr_core.local_labels import LocalLabels, read_local_labels
from cxr_core.recalibrate import recalibrate_bundle, score_images


def _write_site(
    local: LocalLabels, rows: list[int], labels: tuple[str, ...], folder: Path, gamma: float
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "labels.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", *labels])
        for i in rows:
            source = local.files[i]
            name = f"{i:05d}{source.suffix.lower()}"
            with Image.open(source) as image:
                grey = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
            shifted = np.clip(grey**gamma * 255.0 + 0.5, 0, 255).astype(np.uint8)
            Image.fromarray(shifted).save(folder / name)
            values = ["" if local.mask[i, j] == 0 else int(local.truth[i, j]) for j in range(len(labels))]
            writer.writerow([name, *values])
    return folder


def _rates(truth: np.ndarray, scores: np.ndarray, point: float) -> tuple[float | None, float | None]:
    called = scores >= point
    pos, neg = truth > 0.5, truth <= 0.5
    sens = float((called & pos).sum() / pos.sum()) if pos.any() else None
    spec = float((~called & neg).sum() / neg.sum()) if neg.any() else None
    return sens, spec


def run_study(bundle_dir: Path, data: Path, work: Path, gamma: float, min_positives: int) -> dict[str, Any]:
    bundle = load_bundle(bundle_dir)
    labels = bundle.labels
    local = read_local_labels(data, labels)
    site = _write_site(local, list(range(0, len(local.files), 2)), labels, work / "site", gamma)
    future = _write_site(local, list(range(1, len(local.files), 2)), labels, work / "future", gamma)
    result = recalibrate_bundle(
        bundle_dir, site, "study site", out=work / "revision", min_positives=min_positives
    )
    held_out = read_local_labels(future, labels)
    scored = score_images(bundle_dir, held_out)
    kept, scores = scored.kept, scored.outputs
    truth, mask = held_out.truth[kept], held_out.mask[kept]
    old_points = bundle.operating_points or (0.5,) * len(labels)
    new_points = result.manifest.operating_points
    rows = []
    for j, label in enumerate(labels):
        used = mask[:, j] > 0
        target = bundle.clinical.finding(label)
        before = _rates(truth[used, j], scores[used, j], old_points[j])
        after = _rates(truth[used, j], scores[used, j], new_points[j])
        rows.append(
            {
                "finding": label,
                "held_out_positives": int((truth[used, j] > 0.5).sum()),
                "old_point": round(float(old_points[j]), 4),
                "new_point": round(float(new_points[j]), 4),
                "updated": next(c.updated for c in result.changes if c.label == label),
                "sensitivity_before": before[0],
                "specificity_before": before[1],
                "sensitivity_after": after[0],
                "specificity_after": after[1],
                "target_sensitivity": None if target is None else target.sensitivity,
                "target_specificity": None if target is None else target.specificity,
            }
        )
    return {
        "bundle": str(bundle_dir),
        "data": str(data),
        "gamma": gamma,
        "site_images": result.scored,
        "held_out_images": len(kept),
        "rows": rows,
    }


def _cell(value: float | None) -> str:
    return "   -" if value is None else f"{value:4.2f}"


def table(study: dict[str, Any]) -> str:
    lines = [
        f"recalibration study: {study['bundle']} on {study['data']} (gamma {study['gamma']}), "
        f"{study['site_images']} site images, {study['held_out_images']} held-out images",
        f"{'finding':<20} {'pos':>4} {'old op':>7} {'new op':>7}  sens/spec before  sens/spec after  target",
    ]
    for row in study["rows"]:
        lines.append(
            f"{row['finding']:<20} {row['held_out_positives']:>4} "
            f"{row['old_point']:7.3f} {row['new_point']:7.3f}"
            f"  {_cell(row['sensitivity_before'])} / {_cell(row['specificity_before'])}"
            f"      {_cell(row['sensitivity_after'])} / {_cell(row['specificity_after'])}"
            f"     {_cell(row['target_sensitivity'])} / {_cell(row['target_specificity'])}"
            + ("" if row["updated"] else "  (kept)")
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.recalibration", description=__doc__.split("\n")[0]
    )
    add_version(parser)
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="the shifted site's labelled images")
    parser.add_argument(
        "--gamma", type=float, default=1.0, help="contrast shift applied first (default: none)"
    )
    parser.add_argument("--min-positives", type=int, default=10)
    parser.add_argument("--out", type=Path, default=None, help="write the study as JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cxr-recal-") as work:
        study = run_study(args.bundle, args.data, Path(work), args.gamma, args.min_positives)
    print(table(study))
    if args.out is not None:
        args.out.write_text(json.dumps(study, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
