"""``edge-bench``: latency, memory and accuracy parity per format of a model bundle, on this machine.

Thin CLI over :func:`benchmarks.results.run_benchmark` and :func:`benchmarks.compare.compare`.
Exit codes: 0 all gates passed; 1 a gate tripped (figures printed); 2 bad flags, bundle or data;
3 a format could not be measured (broken file, runtime crash) or nothing could be measured;
130 interrupted (Ctrl-C): nothing is left in ``--out`` that claims to be results.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
import sys
from pathlib import Path

from benchmarks.config import (
    GATE_RANGES,
    BenchConfig,
    BenchConfigError,
    Gates,
    default_threads,
    parse_threads,
)
from benchmarks.gates import EXIT_FORMAT_ERROR, EXIT_GATE_FAILED, EXIT_OK, EXIT_USAGE
from benchmarks.latency import TimingPlan
from cxr_core.cli_common import (
    add_progress_flag,
    add_version,
    bounded_float,
    error_exit,
    exit_codes_epilog,
    optional_dependencies,
)
from cxr_core.errors import CxrEdgeError
from cxr_core.optional import install_hint

logger = logging.getLogger("edge-bench")
EXIT_INTERRUPTED = 130  # 128 + SIGINT, like cxr-predict and the shell


def _gate_type(name: str):  # noqa: ANN202 - an argparse type
    low, high, what = GATE_RANGES[name]
    return bounded_float(what, low, high)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-bench",
        description="Measure each model format of a bundle on this machine: load time, batch-1 latency, "
        "throughput, peak memory, size, end-to-end split and accuracy parity. "
        "Use 'edge-bench compare A.json B.json ...' to merge results from several devices.",
        epilog=exit_codes_epilog(
            {
                EXIT_OK: "every gate passed",
                EXIT_GATE_FAILED: "a gate tripped (figures printed)",
                EXIT_USAGE: "bad flags, bundle or --data, or a missing optional dependency",
                EXIT_FORMAT_ERROR: "a format could not be measured (error row) or nothing was measured",
                EXIT_INTERRUPTED: "interrupted (Ctrl-C); no results written",
            }
        )
        + " See docs/benchmarks.md.",
    )
    add_version(parser)
    parser.add_argument("bundle", type=Path, help="model bundle folder written by cxr-export")
    parser.add_argument("--formats", help="comma-separated model names of the bundle (default: all)")
    parser.add_argument(
        "--allow-untrusted",
        action="store_true",
        help="measure a bundle that is unsigned or not signed by a trusted key (the report says so)",
    )
    parser.add_argument(
        "--threads",
        default=",".join(map(str, default_threads())),
        help="comma-separated thread counts (default: 1 and the physical cores, at most 4)",
    )
    parser.add_argument("--runs", type=int, default=50, help="timed batch-1 runs per variant (default: 50)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed warm-up runs first (default: 5)")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=30.0,
        help="stop a variant's timed loop after this long (default: 30)",
    )
    parser.add_argument("--batch", type=int, default=8, help="batch for throughput where the file allows (8)")
    parser.add_argument(
        "--data",
        type=Path,
        help="labelled evaluation set: a ChestX-ray14-style folder "
        "(cxr-synth output; its test_list.txt split), a labels CSV, or a folder with labels.csv",
    )
    parser.add_argument("--limit", type=int, help="use only the first N images of --data")
    parser.add_argument(
        "--out",
        type=Path,
        help="folder for results.json, results.md and plots "
        "(default: ./edge-bench-results/<bundle>-<UTC time>); a folder holding another run's "
        "results is refused unless --overwrite",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="--out may hold an earlier run's results: they are replaced, and that run's other files "
        "(plots, predictions.npz, profiler traces) removed, once this run has finished",
    )
    parser.add_argument(
        "--reference-torch",
        type=Path,
        metavar="CHECKPOINT",
        help=f"add a PyTorch eager FP32 reference row (needs torch: {install_hint('train')})",
    )
    parser.add_argument(
        "--e2e-images",
        type=int,
        default=3,
        help="image files for the end-to-end split (default: 3; 0 = skip)",
    )
    parser.add_argument("--e2e-repeats", type=int, default=3, help="predictions per e2e image (default: 3)")
    parser.add_argument(
        "--gate-in",
        type=Path,
        metavar="FOLDER",
        help="in-distribution images: the input gate's false refusal rate per format (with --gate-ood)",
    )
    parser.add_argument(
        "--gate-ood",
        type=Path,
        metavar="FOLDER",
        help="out-of-distribution images (sub-folders are categories): the true refusal rate, "
        "per-signal refusals and AUROC per format (with --gate-in)",
    )
    parser.add_argument(
        "--gate-limit", type=int, default=500, help="images read from each gate folder (default: 500)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="repeat the whole sweep, interleaved, and pool the samples (default: 1)",
    )
    parser.add_argument("--idle-seconds", type=float, default=1.0, help="pause between variants (default: 1)")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="per-operator profile of each format at the highest thread count",
    )
    parser.add_argument(
        "--ab",
        action="store_true",
        help="extra rows with other runtime settings: ONNX Runtime thread spinning on and lower graph "
        "optimisation levels, LiteRT without XNNPACK (docs/runtime.md, 'Runtime settings')",
    )
    parser.add_argument(
        "--tune",
        action="store_true",
        help="measure every format under the candidate runtime settings, pick the fastest that passes "
        "the golden parity check and cache the choice for this bundle on this machine "
        "(used by open_backend(bundle, tuned=True); docs/benchmarks.md, 'Tuning')",
    )
    parser.add_argument(
        "--tune-cache",
        type=Path,
        metavar="DIR",
        help="folder of the tuning cache (default: $CXR_EDGE_TUNING_DIR or ~/.cache/cxr-edge/tuning)",
    )
    parser.add_argument(
        "--peer",
        action="append",
        default=[],
        choices=["openvino"],
        help="add a peer runtime's rows on the bundle's FP32 ONNX file, with golden parity: openvino "
        "(FP32 and its default precision; optional, needs 'pip install openvino'). Repeatable",
    )
    parser.add_argument(
        "--device-name", help="name of this device in results and comparisons (default: hostname)"
    )
    add_progress_flag(
        parser,
        default=True,
        help="progress lines and INFO log lines on stderr",
        hidden_aliases={"--quiet": False},
    )
    gates = parser.add_argument_group("gates (non-zero exit when one trips)")
    gates.add_argument(
        "--fail-under",
        type=_gate_type("fail_under"),
        metavar="AUC",
        help="minimum mean AUC of every format, 0..1 (--data)",
    )
    gates.add_argument(
        "--max-auc-drop",
        type=_gate_type("max_auc_drop"),
        metavar="D",
        help="max FP32 - format mean AUC, 0..1 (--data)",
    )
    gates.add_argument(
        "--max-dp",
        type=_gate_type("max_dp"),
        metavar="X",
        help="max |dp| vs FP32, 0..1 (golden set and --data)",
    )
    gates.add_argument(
        "--min-agreement",
        type=_gate_type("min_agreement"),
        metavar="A",
        help="min positive-call agreement vs FP32 at the operating points, 0..1",
    )
    return parser


def build_compare_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-bench compare",
        description="Merge results.json files from several devices into one table.",
        epilog=exit_codes_epilog(
            {EXIT_OK: "the table was written", EXIT_USAGE: "bad flags or a results file that cannot be read"}
        ),
    )
    add_version(parser)
    add_progress_flag(parser, default=False, help="accepted like every command's; compare draws no bars")
    parser.add_argument("results", nargs="+", type=Path, help="results.json files written by edge-bench")
    parser.add_argument("--out", type=Path, help="folder for compare.md and compare.json")
    return parser


def config_from_args(args: argparse.Namespace) -> BenchConfig:
    out = args.out or Path("edge-bench-results") / (
        f"{args.bundle.resolve().name}-{_dt.datetime.now(_dt.UTC).strftime('%Y%m%d-%H%M%S')}"
    )
    try:
        plan = TimingPlan(runs=args.runs, warmup=args.warmup, max_seconds=args.max_seconds)
    except ValueError as exc:
        raise BenchConfigError(f"timing: {exc}") from exc
    return BenchConfig(
        bundle=args.bundle,
        out=out,
        formats=tuple(f.strip() for f in args.formats.split(",") if f.strip()) if args.formats else None,
        threads=parse_threads(args.threads),
        plan=plan,
        batch=args.batch,
        data=args.data,
        limit=args.limit,
        reference_torch=args.reference_torch,
        e2e_images=args.e2e_images,
        e2e_repeats=args.e2e_repeats,
        rounds=args.rounds,
        idle_seconds=args.idle_seconds,
        profile=args.profile,
        device_name=args.device_name,
        gates=Gates(args.fail_under, args.max_auc_drop, args.max_dp, args.min_agreement),
        allow_untrusted=args.allow_untrusted,
        ab=args.ab,
        tune=args.tune,
        tune_dir=args.tune_cache,
        peers=tuple(dict.fromkeys(args.peer)),
        gate_in=args.gate_in,
        gate_ood=args.gate_ood,
        gate_limit=args.gate_limit,
        overwrite=args.overwrite,
    )


def _compare_main(argv: list[str]) -> int:
    from benchmarks.compare import compare
    from benchmarks.outdir import check_writable_folder

    args = build_compare_parser().parse_args(argv)
    try:
        if args.out is not None:
            expected = "a folder (new, or existing and writable) for compare.md and compare.json"
            check_writable_folder(args.out, "--out", expected)
        table, _ = compare(args.results, args.out)
    except CxrEdgeError as exc:
        return error_exit("edge-bench compare", exc)
    print(table)
    if args.out:
        print(f"\nwrote {args.out / 'compare.md'} and {args.out / 'compare.json'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "compare":
        return _compare_main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.progress else logging.WARNING,
        format="%(asctime)s %(levelname)s %(message)s",
        datefmt="%H:%M:%S",
    )
    from benchmarks.outdir import release_out
    from benchmarks.outputs import write_outputs
    from benchmarks.progress import Reporter
    from benchmarks.report import terminal_report
    from benchmarks.results import run_benchmark

    try:
        with optional_dependencies("edge-bench"):
            config = config_from_args(args)
    except CxrEdgeError as exc:
        return error_exit("edge-bench", exc)
    existed = config.out.exists()
    written = False
    try:
        with optional_dependencies("edge-bench"):
            results = run_benchmark(config, Reporter(enabled=args.progress))
        paths = write_outputs(results, config.out)
        written = True
    except CxrEdgeError as exc:
        return error_exit("edge-bench", exc)
    except KeyboardInterrupt:
        print("edge-bench: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    finally:
        if not written:
            release_out(config.out, created=not existed)
    print(terminal_report(results))
    print("files:")
    for path in paths.values():
        print(f"  {path}")
    gates = results["gates"]
    for failure in gates["failures"]:
        print(f"GATE FAILED: {failure['message']}", file=sys.stderr)
    for name in gates["errored_formats"]:
        print(f"FORMAT FAILED: {name} could not be measured (see the table)", file=sys.stderr)
    if results.get("tune") and results["tune"].get("error"):
        print(f"WARNING: --tune: {results['tune']['error']}; nothing was cached", file=sys.stderr)
    print(f"exit code {gates['exit_code']}", file=sys.stderr)
    return int(gates["exit_code"])
