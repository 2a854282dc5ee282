"""``cxr-export``: training checkpoint -> verified model bundle; ``cxr-export verify BUNDLE``.

    cxr-export CHECKPOINT --out BUNDLE_DIR [--formats onnx,onnx-int8] [--calibration-images N]
               [--calibration-dir DIR] [--golden-images N] [--max-delta-p X] [--no-parity-gate]
    cxr-export verify BUNDLE [--skip-golden]

The verify path imports no torch: it runs on a device-side install (cxr_core + onnxruntime).
A thin layer over :func:`quantize.pipeline.export_bundle` and :func:`quantize.verify.verify_bundle`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from cxr_core.errors import CxrEdgeError


def _export_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxr-export",
        description="Export a cxr-train checkpoint into a model bundle (FP32/INT8 ONNX, parity gate). "
        "Use 'cxr-export verify BUNDLE' to check a bundle.",
    )
    parser.add_argument("checkpoint", type=Path, help="checkpoint .pt written by cxr-train")
    parser.add_argument(
        "--out", type=Path, required=True, help="bundle folder to write (replaced atomically)"
    )
    parser.add_argument(
        "--formats", default="onnx,onnx-int8", help="comma-separated formats (default: %(default)s)"
    )
    parser.add_argument("--calibration-images", type=int, default=64, help="calibration images (default: 64)")
    parser.add_argument(
        "--calibration-dir",
        type=Path,
        default=None,
        help="folder of images for calibration (default: the checkpoint's validation split)",
    )
    parser.add_argument("--golden-images", type=int, default=4, help="images in the golden set (default: 4)")
    parser.add_argument("--calibration-method", choices=["minmax", "percentile"], default="minmax")
    parser.add_argument("--no-batchnorm-rewrite", action="store_true", help="keep float BatchNorms in INT8")
    gate = parser.add_argument_group("INT8 parity gate (defaults justified in quantize/parity.py)")
    gate.add_argument("--max-delta-p", type=float, default=0.10, help="max |p_int8 - p_fp32| (default: 0.10)")
    gate.add_argument("--max-mean-delta-p", type=float, default=0.02, help="mean |dp| (default: 0.02)")
    gate.add_argument("--min-agreement", type=float, default=0.95, help="call agreement at operating points")
    gate.add_argument("--max-feature-error", type=float, default=0.25, help="feature-map relative error")
    gate.add_argument("--no-parity-gate", action="store_true", help="publish even when a format drifts")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    parser.add_argument("--json", action="store_true", help="print the export report as JSON")
    return parser


def _verify_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxr-export verify",
        description="Verify a bundle: hashes, format version, golden outputs (no torch).",
    )
    parser.add_argument("bundle", type=Path, help="bundle folder")
    parser.add_argument("--skip-golden", action="store_true", help="check hashes only")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def _print_rows(rows: list[dict[str, Any]]) -> None:
    print(f"{'format':<12} {'status':<7} {'max|dp|':>9} {'mean|dp|':>9} {'agree':>7} {'fm rel':>8}  note")
    columns = (
        ("max_abs_dp", ".2e"),
        ("mean_abs_dp", ".2e"),
        ("call_agreement", ".3f"),
        ("feature_map_rel_error", ".2e"),
    )
    for row in rows:
        parity = row.get("parity") or {}
        cells = [format(parity[key], spec) if key in parity else "-" for key, spec in columns]
        note = row.get("error") or "; ".join(row.get("failures") or [])
        print(
            f"{row['name']:<12} {row['status']:<7} {cells[0]:>9} {cells[1]:>9} {cells[2]:>7} {cells[3]:>8}"
            f"  {note}"
        )


def run_export(args: argparse.Namespace) -> int:
    from quantize.onnx_int8 import QuantConfig
    from quantize.parity import ParityGateError, ParityThresholds
    from quantize.pipeline import ExportRequest, export_bundle

    request = ExportRequest(
        checkpoint=args.checkpoint,
        out=args.out,
        formats=tuple(n.strip() for n in args.formats.split(",") if n.strip()),
        calibration_images=args.calibration_images,
        calibration_dir=args.calibration_dir,
        golden_images=args.golden_images,
        quant=QuantConfig(
            calibration=args.calibration_method, rewrite_batchnorm=not args.no_batchnorm_rewrite
        ),
        int8_thresholds=ParityThresholds(
            args.max_delta_p, args.max_mean_delta_p, args.min_agreement, args.max_feature_error
        ),
        enforce_gate=not args.no_parity_gate,
        progress=args.progress,
    )
    try:
        result = export_bundle(request)
    except ParityGateError as exc:
        _print_rows(list(exc.report.values()))
        print(f"cxr-export: {exc}", file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps({"bundle": str(result.path), "formats": result.rows}, indent=2))
    else:
        _print_rows(result.rows)
        print(f"bundle written to {result.path}")
    return 0 if all(row["status"] == "ok" for row in result.rows) else 1


def run_verify(args: argparse.Namespace) -> int:
    from quantize.verify import verify_bundle

    report = verify_bundle(args.bundle, run_golden=not args.skip_golden)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['bundle']}: {len(report['files'])} file(s) match their sha256")
    for row in report["golden"]:
        if row["status"] == "ok":
            print(
                f"  {row['model']}: golden ok (max |dp| {row['max_abs_dp']:.2e}, "
                f"feature map rel {row['feature_map_rel_error']:.2e})"
            )
        else:
            print(f"  {row['model']}: golden skipped ({row['reason']})")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``cxr-export``; returns the exit status (0 ok, 1 a format failed, 2 error, 3 gate)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    verify = bool(argv) and argv[0] == "verify"
    args = _verify_parser().parse_args(argv[1:]) if verify else _export_parser().parse_args(argv)
    try:
        return run_verify(args) if verify else run_export(args)
    except (CxrEdgeError, ValueError, OSError) as exc:
        print(f"cxr-export: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
