"""``cxr-calibrate``: set a bundle's operating points on a site's own labelled images (torch-free).

    cxr-calibrate BUNDLE --data LOCAL --site "Clinic A" [--csv FILE] [--out DIR] [--min-positives N]

Writes a new bundle revision beside the bundle (``<bundle>-rev<N>``, or ``--out``, a folder that
must not exist yet: an existing one is refused, never replaced) and prints, per
finding, the old and new operating point, the local positives and negatives behind it, and the
sensitivity and specificity at the new point with 95% intervals. See :mod:`cxr_core.recalibrate`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from cxr_core.cli_common import (
    EXIT_OK,
    EXIT_USAGE,
    add_progress_flag,
    add_version,
    bounded_int,
    error_exit,
    exit_codes_epilog,
    max_threads,
    optional_dependencies,
)
from cxr_core.clinical_stats import DEFAULT_RESAMPLES
from cxr_core.errors import CxrEdgeError
from cxr_core.recalibrate import DEFAULT_MIN_POSITIVES, RecalibrationResult, recalibrate_bundle

PROG = "cxr-calibrate"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Recompute a bundle's operating points (and so its operating-point scores) on a site's "
        "own labelled images, with the figures and their 95%% intervals, into a new bundle revision. "
        "The original bundle is not changed.",
        epilog=exit_codes_epilog(
            {
                EXIT_OK: "the revision was written",
                EXIT_USAGE: "usage error, an unusable bundle or data folder, no image could be scored, or a "
                "missing optional dependency",
            }
        ),
    )
    add_version(parser)
    parser.add_argument("bundle", type=Path, help="the model bundle folder to recalibrate")
    parser.add_argument(
        "--data",
        type=Path,
        required=True,
        help="folder of labelled images: labels.csv (path + a 0/1 column per finding) or ChestX-ray14 layout",
    )
    parser.add_argument("--csv", type=Path, default=None, help="the labels CSV, when not DATA/labels.csv")
    parser.add_argument("--site", required=True, help="site label recorded in the revision, e.g. 'Clinic A'")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="revision folder, which must not exist yet (default: BUNDLE-rev<N>); nothing is ever replaced",
    )
    parser.add_argument(
        "--min-positives",
        type=int,
        default=DEFAULT_MIN_POSITIVES,
        help="local positives and negatives a finding needs before its threshold is replaced "
        f"(default: {DEFAULT_MIN_POSITIVES})",
    )
    parser.add_argument(
        "--model", default=None, help="model of the bundle to score with (default: recommended)"
    )
    parser.add_argument("--runtime", default=None, help="runtime to use (default: the best installed)")
    parser.add_argument(
        "--threads",
        type=bounded_int("a number of inference threads", max_threads),
        default=None,
        help=f"inference threads, 1..{max_threads()} here (default: physical cores, at most 4)",
    )
    parser.add_argument(
        "--resamples",
        type=int,
        default=DEFAULT_RESAMPLES,
        help=f"bootstrap resamples for the AUC intervals (default: {DEFAULT_RESAMPLES})",
    )
    add_progress_flag(parser, default=False, help="an 'image k/N' line per scored image on stderr")
    return parser


def _interval(value: tuple[float, float] | None) -> str:
    return "-" if value is None else f"{value[0]:.2f}-{value[1]:.2f}"


def report(result: RecalibrationResult) -> str:
    """The terminal summary of a revision."""
    validation = result.manifest.clinical.validation
    by_label = {f.label: f for f in validation.findings}
    lines = [
        f"revision {result.revision} written to {result.path}",
        f"operating points set with {result.manifest.revision.scored_with()}",
        *([f"signature: {result.trust}"] if result.trust else []),
        f"{result.scored} image(s) scored, {len(result.refused)} refused or unreadable (left out)",
        f"  {'finding':<20} {'pos':>4} {'neg':>4} {'old op':>7} {'new op':>7}  "
        f"{'sensitivity (95% CI)':<22} {'specificity (95% CI)':<22} action",
    ]
    for change in result.changes:
        figures = by_label[change.label]
        sens = (
            "-"
            if figures.sensitivity is None
            else f"{figures.sensitivity:.2f} ({_interval(figures.sensitivity_ci)})"
        )
        spec = (
            "-"
            if figures.specificity is None
            else f"{figures.specificity:.2f} ({_interval(figures.specificity_ci)})"
        )
        lines.append(
            f"  {change.label:<20} {change.positives:>4} {change.negatives:>4} "
            f"{change.old_operating_point:7.3f} {change.new_operating_point:7.3f}  {sens:<22} {spec:<22} "
            f"{'updated' if change.updated else change.reason}"
        )
    ci = validation.mean_auc_ci
    lines.append(f"mean AUC {validation.mean_auc} (95% CI {_interval(ci)}) on these images")
    lines.append(validation.note or "")
    for path, reason in result.refused[:10]:
        lines.append(f"  refused: {path}: {reason}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    def progress(done: int, total: int) -> None:
        if args.progress:
            print(f"{PROG}: image {done}/{total}", file=sys.stderr, flush=True)

    try:
        with optional_dependencies(PROG, extra="runtime"):
            result = recalibrate_bundle(
                args.bundle,
                args.data,
                args.site,
                out=args.out,
                csv_file=args.csv,
                min_positives=args.min_positives,
                model=args.model,
                runtime=args.runtime,
                threads=args.threads,
                resamples=args.resamples,
                on_image=progress,
            )
    except CxrEdgeError as exc:
        return error_exit(PROG, exc)
    except OSError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(report(result))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
