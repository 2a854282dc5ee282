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
import math
import sys
from pathlib import Path
from typing import Any

from cxr_core.bundle.signing import PRIVATE_KEY_NAME, key_dir
from cxr_core.cli_common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    add_progress_flag,
    add_version,
    error_exit,
    exit_codes_epilog,
    optional_dependencies,
)
from cxr_core.errors import CxrEdgeError
from cxr_core.metrics import AUC_DROP_LABEL, CLASS_AUC_DROP_LABEL

#: The parity gate stopped the bundle from being published (no bundle written).
EXIT_GATE = 3


def _limit(text: str) -> float | None:
    """A threshold flag: a number, or 'none' to report the figure without gating it."""
    if text.strip().lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; expected e.g. 0.01, or 'none'") from None


def _seed(text: str) -> int:
    """An argparse ``type`` for a random seed: an integer from 0 to 2**32 - 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer; expected a seed") from None
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"{value} is outside 0..2**32 - 1; expected a seed")
    return value


def _export_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxr-export",
        description="Export a cxr-train checkpoint into a model bundle (FP32/INT8 ONNX, FP32/FP16/INT8 "
        "TFLite) with a parity gate. "
        "Use 'cxr-export verify BUNDLE' to check a bundle.",
        epilog=exit_codes_epilog(
            {
                EXIT_OK: "every format was built and published",
                EXIT_FAILED: "some format failed to build; the others were published",
                EXIT_USAGE: "usage error, a refused checkpoint / option / bundle, or a missing optional "
                "dependency (the export extra)",
                EXIT_GATE: "the parity gate stopped publication (a format drifted), or the learned input "
                "gate refuses over 2% of the validation images; nothing written",
            }
        ),
    )
    add_version(parser)
    parser.add_argument("checkpoint", type=Path, help="checkpoint .pt written by cxr-train")
    parser.add_argument(
        "--out", type=Path, required=True, help="bundle folder to write (replaced atomically)"
    )
    parser.add_argument(
        "--formats",
        default=None,
        help="comma-separated formats, e.g. onnx,onnx-int8 (default: every format in the registry)",
    )
    parser.add_argument("--calibration-images", type=int, default=64, help="calibration images (default: 64)")
    parser.add_argument(
        "--calibration-dir",
        type=Path,
        default=None,
        help="folder of images for calibration (default: the checkpoint's validation split)",
    )
    parser.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help="dataset folder to read the validation split from, instead of the data_root recorded in "
        "the checkpoint (a relative recorded one is looked up beside the checkpoint, then here)",
    )
    parser.add_argument(
        "--evaluation-images",
        type=int,
        default=512,
        help="held-out labelled images for parity and the AUC gate: the validation split minus the "
        "calibration images (default: up to %(default)s; 0 measures on the calibration images)",
    )
    parser.add_argument("--golden-images", type=int, default=4, help="images in the golden set (default: 4)")
    parser.add_argument("--calibration-method", choices=["minmax", "percentile"], default="minmax")
    parser.add_argument("--no-batchnorm-rewrite", action="store_true", help="keep float BatchNorms in INT8")
    parser.add_argument(
        "--keep-float-layers",
        type=int,
        default=0,
        help="leave the nodes around the N most sensitive INT8 ONNX activations (layer-wise SQNR) in float",
    )
    parser.add_argument(
        "--full-range-weights",
        action="store_true",
        help="8-bit instead of 7-bit INT8 ONNX weights: ~3x less drift, but only for CPUs with VNNI or "
        "ARM dot-product instructions (older x86 may saturate); default: reduce_range (safe everywhere)",
    )
    parser.add_argument(
        "--concat-scale-sharing",
        action="store_true",
        help="give each Concat's INT8 ONNX inputs their output's scale and run the Concats on the "
        "quantized bytes, chained per dense block, so they copy instead of requantizing (faster on "
        "DenseNet; costs resolution, which the parity gate measures; off by default: it failed the AUC "
        "gate of the tiny smoke model)",
    )
    gate = parser.add_argument_group("INT8 parity gate (defaults justified in cxr_core/parity.py)")
    gate.add_argument("--max-auc-drop", type=_limit, default=0.01, help="mean AUC drop vs PyTorch (0.01)")
    gate.add_argument(
        "--max-class-auc-drop", type=_limit, default=0.02, help="largest per-finding AUC drop (0.02)"
    )
    gate.add_argument("--min-agreement", type=_limit, default=0.97, help="call agreement at operating points")
    gate.add_argument("--max-mean-delta-p", type=_limit, default=0.02, help="mean |dp| (default: 0.02)")
    gate.add_argument("--max-delta-p", type=_limit, default=None, help="max |dp| (default: reported only)")
    gate.add_argument("--max-feature-error", type=_limit, default=0.25, help="feature-map relative error")
    gate.add_argument(
        "--min-cam-correlation", type=_limit, default=None, help="CAM correlation (default: reported only)"
    )
    gate.add_argument("--no-parity-gate", action="store_true", help="publish even when a format drifts")
    parser.add_argument(
        "--allow-high-refusal-rate",
        action="store_true",
        help="publish even when the learned input gate refuses more than 2%% of the validation images "
        "on some format (the measured rates are recorded in the manifest either way)",
    )
    parser.add_argument(
        "--autoencoder-seed",
        type=_seed,
        default=0,
        metavar="N",
        help="first seed of the input gate's autoencoder fit (default: 0; the next seeds are tried when "
        "a fit stalls at drawing the training images' mean image)",
    )
    parser.add_argument("--no-timing", action="store_true", help="skip timing formats for the recommendation")
    parser.add_argument(
        "--signing-key",
        type=Path,
        default=None,
        metavar="KEY.pem",
        help="Ed25519 key that signs manifest.json (default: ~/.config/cxr-edge/keys/signing-key.pem or "
        "$CXR_EDGE_KEY_DIR, created on first use); see cxr-keys",
    )
    add_progress_flag(parser, default=False, help="progress bars on stderr")
    parser.add_argument("--json", action="store_true", help="print the export report as JSON")
    return parser


def _verify_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxr-export verify",
        description="Verify a bundle: hashes, format version, golden outputs (no torch).",
        epilog=exit_codes_epilog(
            {
                EXIT_OK: "the bundle verified",
                EXIT_USAGE: "usage error, a bundle that fails verification, or a missing runtime "
                "(the runtime extra)",
            }
        ),
    )
    add_version(parser)
    add_progress_flag(parser, default=False, help="accepted like every command's; verify draws no bars")
    parser.add_argument("bundle", type=Path, help="bundle folder")
    parser.add_argument(
        "--skip-golden",
        action="store_true",
        help="do not re-run the golden set through the models (hashes and array files are still checked)",
    )
    parser.add_argument(
        "--allow-untrusted",
        action="store_true",
        help="verify a bundle that is unsigned or not signed by a trusted key (its status is printed)",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


_COLUMNS = (
    ("mean AUC", "mean_auc", ".4f"),
    (AUC_DROP_LABEL, "auc_drop", "+.4f"),
    (CLASS_AUC_DROP_LABEL, "max_class_auc_drop", "+.4f"),
    ("max|dp|", "max_abs_dp", ".2e"),
    ("mean|dp|", "mean_abs_dp", ".2e"),
    ("agree", "call_agreement", ".4f"),
    ("fm rel", "feature_map_rel_error", ".2e"),
    ("CAM r", "cam_correlation", ".4f"),
)


def _print_rows(rows: list[dict[str, Any]]) -> None:
    widths = [max(9, len(title)) for title, _, _ in _COLUMNS]
    header = " ".join(f"{title:>{w}}" for (title, _, _), w in zip(_COLUMNS, widths, strict=True))
    print(f"{'format':<12} {'status':<7} {header} {'ms':>7}  note")
    for row in rows:
        parity = row.get("parity") or {}
        cells = []
        for _, key, spec in _COLUMNS:
            value = parity.get(key)
            number = isinstance(value, int | float) and not math.isnan(value)
            cells.append(format(value, spec) if number else "-")
        latency = (row.get("latency") or {}).get("median_ms")
        ms = f"{latency:.1f}" if latency is not None else "-"
        note = row.get("error") or "; ".join(row.get("failures") or [])
        line = " ".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True))
        print(f"{row['name']:<12} {row['status']:<7} {line} {ms:>7}  {note}")
    print(f"{AUC_DROP_LABEL}: reference (PyTorch FP32) mean AUC minus the format's; positive = worse")


def run_export(args: argparse.Namespace) -> int:
    from cxr_core.parity import ParityGateError, ParityThresholds
    from quantize.gate_check import GateRefusalRateError, describe
    from quantize.onnx_int8 import QuantConfig
    from quantize.pipeline import ExportRequest, export_bundle

    request = ExportRequest(
        checkpoint=args.checkpoint,
        out=args.out,
        **(
            {"formats": tuple(n.strip() for n in args.formats.split(",") if n.strip())}
            if args.formats
            else {}
        ),
        calibration_images=args.calibration_images,
        calibration_dir=args.calibration_dir,
        data_root=args.data_root,
        evaluation_images=args.evaluation_images,
        golden_images=args.golden_images,
        quant=QuantConfig(
            calibration=args.calibration_method,
            rewrite_batchnorm=not args.no_batchnorm_rewrite,
            reduce_range=not args.full_range_weights,
            keep_float_layers=args.keep_float_layers,
            share_concat_scales=args.concat_scale_sharing,
        ),
        int8_thresholds=ParityThresholds(
            max_abs_dp=args.max_delta_p,
            mean_abs_dp=args.max_mean_delta_p,
            min_call_agreement=args.min_agreement,
            max_feature_rel_error=args.max_feature_error,
            max_auc_drop=args.max_auc_drop,
            max_class_auc_drop=args.max_class_auc_drop,
            min_cam_correlation=args.min_cam_correlation,
        ),
        enforce_gate=not args.no_parity_gate,
        enforce_refusal_rate=not args.allow_high_refusal_rate,
        autoencoder_seed=args.autoencoder_seed,
        time_formats=not args.no_timing,
        progress=args.progress,
        signing_key=args.signing_key,
    )
    try:
        result = export_bundle(request)
    except ParityGateError as exc:
        _print_rows(list(exc.report.values()))
        print(f"cxr-export: {exc}", file=sys.stderr)
        return EXIT_GATE
    except GateRefusalRateError as exc:
        for line in describe(exc.validation):
            print(line)
        print(f"cxr-export: {exc}", file=sys.stderr)
        return EXIT_GATE
    if args.json:
        print(
            json.dumps(
                {
                    "bundle": str(result.path),
                    "signed_by": result.key_id,
                    "formats": result.rows,
                    "gate_validation": None
                    if result.manifest.gate_validation is None
                    else result.manifest.gate_validation.to_dict(),
                },
                indent=2,
            )
        )
    else:
        _print_rows(result.rows)
        images = (result.manifest.parity or {})["images"]
        where = images.get("role") or "held-out labelled images"
        print(f"parity measured on {images.get('count')} {where} from the {images.get('source')}")
        if result.manifest.gate_validation is not None:
            for line in describe(result.manifest.gate_validation):
                print(line)
        recommended = result.manifest.recommended
        for runtime, name in recommended.items():
            print(f"recommended for {runtime}: {name}")
        print(f"bundle written to {result.path}")
        print(
            f"manifest signed by key {result.key_id} ({args.signing_key or key_dir() / PRIVATE_KEY_NAME}); "
            "a device loads it once that key is trusted there: cxr-keys trust KEY.pub"
        )
    return 0 if all(row["status"] == "ok" for row in result.rows) else 1


def run_verify(args: argparse.Namespace) -> int:
    from quantize.verify import verify_bundle

    report = verify_bundle(args.bundle, run_golden=not args.skip_golden, allow_untrusted=args.allow_untrusted)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"{report['bundle']}: {report['trust_line']}")
    print(f"{report['bundle']}: {len(report['files'])} file(s) match their sha256")
    print(f"{report['bundle']}: {len(report['arrays'])} array file(s) read: {', '.join(report['arrays'])}")
    for row in report["golden"]:
        if row["status"] == "pass":
            print(
                f"  {row['model']}: golden ok (max |dp| {row['max_abs_dp']:.2e}, "
                f"feature map rel {row['feature_map_rel_error']:.2e})"
            )
        else:
            print(f"  {row['model']}: golden skipped ({row['message']})")
    for row in report.get("autoencoder", []):
        state = "golden ok" if row["status"] == "pass" else "golden skipped"
        print(f"  autoencoder {row['autoencoder']}: {state} ({row['message']})")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``cxr-export``; returns the exit status (0 ok, 1 a format failed, 2 error, 3 gate)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    verify = bool(argv) and argv[0] == "verify"
    args = _verify_parser().parse_args(argv[1:]) if verify else _export_parser().parse_args(argv)
    try:
        with optional_dependencies(
            "cxr-export verify" if verify else "cxr-export", None if verify else "export"
        ):
            return run_verify(args) if verify else run_export(args)
    except (CxrEdgeError, ValueError, OSError) as exc:  # ValueError: quantize.formats' unknown format
        return error_exit("cxr-export", str(exc))


if __name__ == "__main__":
    sys.exit(main())
