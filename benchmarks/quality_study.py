"""How the image-quality checks of a bundle behave: false refusals, trip rates and cost, measured.

    python -m benchmarks.quality_study BUNDLE --in-distribution FOLDER [--limit N] [--out study.json]

For the in-distribution images (e.g. the test split of the bundle's phantom set, never seen at
export) it counts how many each check refuses (they should all pass); for every synthetic failure
of :mod:`benchmarks.quality_cases` built from those images (inverted, rotated 90/180/270, blank,
over- and underexposed, blurred, pasted into a screenshot, letterboxed) how many its own check
refuses, with which reason, and which other checks trip; and the time one image costs at its own
size and at 1024 px. It measures and prints; it asserts nothing. The thresholds are the bundle's,
set at export on its own validation images; nothing here tunes them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmarks.quality_cases import CASES, LIMITS, MUST_PASS
from cxr_core.bundle import load_bundle
from cxr_core.cli_common import add_version
from cxr_core.image_quality import ImageQualityError, QualityChecks, measure
from cxr_core.imaging import decode_image


def _refused(checks: QualityChecks, pixels: np.ndarray) -> dict[str, str]:
    """check -> refusal message, for the checks that refuse ``pixels``."""
    rows = checks.decisions(measure(pixels, checks.template))
    return {r.signal.removeprefix("quality_"): r.message() for r in rows if not r.accepted}


def _median_ms(checks: QualityChecks, pixels: np.ndarray, repeats: int = 20) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        checks.decisions(measure(pixels, checks.template))
        times.append((time.perf_counter() - start) * 1000.0)
    return float(np.median(times))


def run_study(
    bundle_dir: Path, in_folder: Path, limit: int = 500, allow_untrusted: bool = False
) -> dict[str, Any]:
    bundle = load_bundle(bundle_dir, allow_untrusted=allow_untrusted)
    checks = QualityChecks.from_bundle(bundle)
    if checks is None:
        raise ImageQualityError(
            f"{bundle_dir}: the bundle has no image-quality checks; expected a bundle exported with them"
        )
    paths = sorted(p for p in in_folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".dcm"))[:limit]
    images = [decode_image(p).pixels for p in paths]
    in_refusals = [_refused(checks, x) for x in images]
    per_check = Counter(check for r in in_refusals for check in r)
    cases: dict[str, Any] = {}
    for check, builders in CASES.items():
        for name, build in builders.items():
            results = [_refused(checks, build(x)) for x in images]
            own = [r[check] for r in results if check in r]
            cases[name] = {
                "check": check,
                "images": len(results),
                "refused_by_its_check": len(own),
                "refused_by_any_check": sum(bool(r) for r in results),
                "other_checks": dict(Counter(c for r in results for c in r if c != check)),
                "example": own[0] if own else None,
            }
    for group, builders in (("must_pass", MUST_PASS), ("limits", LIMITS)):
        for name, build in builders.items():
            results = [_refused(checks, build(x)) for x in images]
            cases[name] = {
                "check": group,
                "images": len(results),
                "refused_by_its_check": None,
                "refused_by_any_check": sum(bool(r) for r in results),
                "other_checks": dict(Counter(c for r in results for c in r)),
                "example": next((m for r in results for m in r.values()), None),
            }
    stats = [measure(x, checks.template) for x in images]
    side = images[0].shape
    big = np.asarray(Image.fromarray(images[0]).resize((1024, 1024), Image.Resampling.BILINEAR))
    return {
        "bundle": str(bundle_dir),
        "thresholds": checks.thresholds,
        "in_distribution": {
            "folder": str(in_folder),
            "images": len(images),
            "refused_by_any_check": sum(bool(r) for r in in_refusals),
            "refused_per_check": {c: per_check.get(c, 0) for c in checks.thresholds},
            "score_range": {
                c: [round(min(s.value(c) for s in stats), 4), round(max(s.value(c) for s in stats), 4)]
                for c in checks.thresholds
            },
        },
        "cases": cases,
        "time_ms": {
            f"{side[1]}x{side[0]}": _median_ms(checks, images[0]),
            "1024x1024": _median_ms(checks, big),
        },
    }


def table(study: dict[str, Any]) -> str:
    ind = study["in_distribution"]
    lines = [
        f"thresholds: {study['thresholds']}",
        f"in-distribution: {ind['refused_by_any_check']} of {ind['images']} refused "
        f"(per check: {ind['refused_per_check']})",
        f"in-distribution score ranges: {ind['score_range']}",
    ]
    for name, c in study["cases"].items():
        own = (
            ""
            if c["refused_by_its_check"] is None
            else f"its check {c['refused_by_its_check']}/{c['images']}, "
        )
        lines.append(
            f"  {name:<30} {c['check']:<12} {own}any {c['refused_by_any_check']}/{c['images']}, "
            f"{'checks' if c['refused_by_its_check'] is None else 'other checks'} {c['other_checks']}"
        )
    lines.append(
        "time per image (median): " + ", ".join(f"{k} {v:.2f} ms" for k, v in study["time_ms"].items())
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.quality_study", description="Measure a bundle's image-quality checks."
    )
    add_version(parser)
    parser.add_argument("bundle", type=Path)
    parser.add_argument(
        "--in-distribution", type=Path, required=True, help="folder of in-distribution images"
    )
    parser.add_argument("--limit", type=int, default=500, help="in-distribution images used (default: 500)")
    parser.add_argument("--out", type=Path, default=None, help="write the study as JSON here")
    parser.add_argument(
        "--allow-untrusted",
        action="store_true",
        help="load a bundle signed by a key this machine does not trust",
    )
    args = parser.parse_args(argv)
    study = run_study(args.bundle, args.in_distribution, args.limit, args.allow_untrusted)
    print(table(study))
    if args.out is not None:
        args.out.write_text(json.dumps(study, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
