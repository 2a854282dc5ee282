"""``cxr-demo``: the whole cxr-edge chain on synthetic phantoms, on a CPU, with no downloads.

1. generate a phantom set in the ChestX-ray14 layout into ``OUT/data`` (kept if already there);
2. train a small CheXNet (or DGC) on it into ``OUT/run`` and evaluate it on the test split;
3. export the best checkpoint into the model bundle ``OUT/bundle`` through the parity gate
   (``cxr-export``: FP32/INT8 ONNX and FP32/FP16/INT8 TFLite);
4. predict a few test-split images with the recommended format (``cxr-predict``), writing
   ``OUT/predictions.json`` and heat-map overlays into ``OUT/heatmaps``;
5. benchmark every format of the bundle on this machine (``edge-bench``) into ``OUT/bench``;
6. print the path of every artefact.

Each step runs the same command-line entry point a user would run, so the demo exercises exactly
what the README documents. Phantoms are not radiographs: the figures say the pipeline works,
nothing about clinical skill; predictions are decision support, not a diagnosis.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from cxr_core.cli_common import EXIT_OK, error_exit, optional_dependencies
from cxr_core.errors import CxrEdgeError, MissingDependencyError
from cxr_core.optional import require

#: Test-split images run through cxr-predict (one heat map each).
PREDICT_IMAGES = 4


class DemoError(CxrEdgeError, RuntimeError):
    """A step of the demo chain failed; the message names the step and its exit status."""


def build_parser() -> argparse.ArgumentParser:
    from training.demo import build_parser as training_parser

    parser = training_parser()
    parser.prog = "cxr-demo"
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument(
        "--formats", default=None, help="export formats (default: every format cxr-export builds)"
    )
    parser.add_argument("--bench-threads", default="1,2", help="edge-bench thread counts (default: 1,2)")
    parser.add_argument("--bench-runs", type=int, default=30, help="timed runs per format (default: 30)")
    parser.add_argument(
        "--bench-images",
        type=int,
        default=100,
        help="labelled test images for edge-bench parity (default: 100)",
    )
    parser.add_argument("--skip-bench", action="store_true", help="stop after cxr-predict")
    parser.add_argument(
        "--no-parity-gate",
        action="store_true",
        help="publish the bundle even if a format drifts (smoke runs of barely trained tiny models)",
    )
    return parser


def _step(name: str, rc: int, ok: tuple[int, ...] = (0,)) -> None:
    if rc not in ok:
        raise DemoError(f"step {name!r} failed with exit status {rc}; see its messages above")


def _test_images(data: Path, count: int) -> list[Path]:
    names = [n.strip() for n in (data / "test_list.txt").read_text().splitlines() if n.strip()]
    by_name = {p.name: p for p in data.rglob("*.png")}
    picked = [by_name[n] for n in names if n in by_name][:count]
    if not picked:
        raise DemoError(f"no test-split images found under {data}; expected the phantom set's test_list.txt")
    return picked


def run_chain(args: argparse.Namespace) -> dict[str, Path]:
    """Run every step; return the artefacts by name."""
    from benchmarks.cli import main as bench_main
    from cxr_core.predict_cli import main as predict_main
    from quantize.cli import main as export_main
    from training.demo import run_demo

    out = Path(args.out).expanduser()
    started = time.perf_counter()
    # The chain trusts its own signing key through a trusted-key folder inside OUT, so the device
    # steps load the bundle it just signed without touching the user's ~/.config/cxr-edge/trusted-keys.
    with _demo_trust(out / "trusted-keys"):
        return _run_steps(args, out, started, run_demo, export_main, predict_main, bench_main)


@contextlib.contextmanager
def _demo_trust(folder: Path) -> Iterator[None]:
    from cxr_core.bundle.signing import TRUSTED_KEYS_ENV

    saved = os.environ.get(TRUSTED_KEYS_ENV)
    os.environ[TRUSTED_KEYS_ENV] = str(folder)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(TRUSTED_KEYS_ENV, None)
        else:
            os.environ[TRUSTED_KEYS_ENV] = saved


def _run_steps(
    args: argparse.Namespace,
    out: Path,
    started: float,
    run_demo: Callable[[argparse.Namespace], dict[str, Path]],
    export_main: Callable[[list[str]], int],
    predict_main: Callable[[list[str]], int],
    bench_main: Callable[[list[str]], int],
) -> dict[str, Path]:
    from cxr_core.bundle.signing import trust_own_key

    files = run_demo(args)
    checkpoint = out / "run" / "best.pt"
    bundle = out / "bundle"
    print(f"\n== export {checkpoint} -> {bundle} (parity gate on)", flush=True)
    export_args = [str(checkpoint), "--out", str(bundle)]
    export_args += ["--formats", args.formats] if args.formats else []
    export_args += ["--progress"] if args.progress else []
    export_args += ["--no-parity-gate"] if args.no_parity_gate else []
    _step("cxr-export", export_main(export_args), ok=(0, 1))  # 1: a format failed, the others published
    trusted = trust_own_key(out / "trusted-keys")
    print(f"the demo trusts its own signing key {trusted.stem} ({trusted}), for this chain only", flush=True)
    images = _test_images(Path(files["data"]), PREDICT_IMAGES)
    predictions, heatmaps = out / "predictions.json", out / "heatmaps"
    print(f"\n== cxr-predict on {len(images)} test image(s)", flush=True)
    predict_args = [*map(str, images), "--bundle", str(bundle), "--json", str(predictions)]
    _step("cxr-predict", predict_main([*predict_args, "--heatmap-dir", str(heatmaps)]))
    artefacts = {**files, "bundle": bundle, "predictions": predictions, "heatmaps": heatmaps}
    artefacts["trusted_key"] = trusted
    if not args.skip_bench:
        bench = out / "bench"
        print(f"\n== edge-bench {bundle}", flush=True)
        bench_args = [str(bundle), "--threads", args.bench_threads, "--runs", str(args.bench_runs)]
        bench_args += ["--data", str(files["data"]), "--limit", str(args.bench_images), "--out", str(bench)]
        bench_args += ["--overwrite"]  # the demo owns OUT/bench: a second run replaces the first's figures
        _step("edge-bench", bench_main(bench_args))
        artefacts.update(bench_results=bench / "results.json", bench_report=bench / "results.md")
    print(f"\nthe chain took {(time.perf_counter() - started) / 60:.1f} min")
    return artefacts


#: What every step of the chain imports, checked before minutes of training are spent:
#: (module, extra that provides it, the step that needs it). TFLite (onnx2tf, tensorflow) is not
#: here: without it those formats become failed rows and the chain goes on with ONNX.
NEEDS = (
    ("torch", "export", "cxr-demo's training step"),
    ("onnx", "export", "cxr-demo's export step (cxr-export)"),
    ("onnxruntime", "export", "cxr-demo's export, predict and benchmark steps"),
)


def check_dependencies() -> None:
    """Raise :class:`MissingDependencyError` naming the extra when a step's package is missing."""
    for module, extra, purpose in NEEDS:
        require(module, extra, purpose)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_dependencies()
    except MissingDependencyError as exc:
        return error_exit("cxr-demo", exc)
    from training.cli import prefer_passive_omp_wait, print_files

    prefer_passive_omp_wait()
    try:
        with optional_dependencies("cxr-demo", extra="export"):
            files = run_chain(args)
    except CxrEdgeError as exc:
        return error_exit("cxr-demo", exc)
    print_files("artefacts:", files, width=20)
    print("Decision support only, not a diagnosis; phantom figures say nothing about clinical skill.")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
