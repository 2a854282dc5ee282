"""``cxr-predict``: score chest radiographs with a model bundle, on the device, without torch.

    cxr-predict IMAGE_OR_FOLDER... --bundle BUNDLE [--json OUT.json | --json -] [--heatmap-dir DIR]
                [--finding NAME] [--model NAME] [--runtime RUNTIME] [--threads N] [--alpha A]

Prints a table per image (findings ranked by calibrated probability, the operating point and the
call) and a "decision support, not a diagnosis" line; ``--json`` writes the same as JSON (atomically;
``-`` prints it instead of the tables). ``--heatmap-dir`` writes one PNG per image: the heat map of
the top finding (or ``--finding``) coloured onto the radiograph. Folders are expanded (recursively)
to their PNG, JPEG and DICOM files. A file that cannot be read or that the input gate refuses is
reported with the reason and skipped; the others are still scored.

Exit status: 0 every image scored, 1 some image failed or was refused (or none was found),
2 usage error, an unusable bundle / runtime or a missing optional dependency (``--help``).
A thin layer over :class:`cxr_core.predictor.Predictor`.
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cxr_core import __version__
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
from cxr_core.errors import CxrEdgeError, ImageDecodeError
from cxr_core.imaging import DICOM_SUFFIXES, sniff_format
from cxr_core.input_gate import ImageRefusedError
from cxr_core.predictor import DISCLAIMER, SCORE_DEFINITION, Prediction, Predictor

logger = logging.getLogger(__name__)

#: Suffixes picked up when a folder is expanded (files without a suffix are taken if they are DICOM).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".jpe", ".jfif", *DICOM_SUFFIXES)
EXIT_SOME_FAILED = EXIT_FAILED


@dataclass
class Failure:
    """A file that was not scored, and why."""

    file: str
    error: str
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "error": self.error, "reasons": list(self.reasons)}


@dataclass
class BatchResult:
    predictions: list[Prediction] = field(default_factory=list)
    heatmaps: dict[str, tuple[str, str]] = field(default_factory=dict)  # source -> (finding, png path)
    failures: list[Failure] = field(default_factory=list)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer; expected e.g. 2") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} threads; expected at least 1")
    return value


def _alpha(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; expected a value in [0, 1]") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{value} is outside [0, 1]")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxr-predict",
        description="Score chest radiographs (PNG, JPEG, DICOM) with a cxr-edge model bundle, offline and "
        "without torch. Decision support, not a diagnosis.",
        epilog=exit_codes_epilog(
            {
                EXIT_OK: "every image was scored",
                EXIT_SOME_FAILED: "some image could not be read or was refused by the input gate (the others "
                "were scored), or no image was found",
                EXIT_USAGE: "usage error, an unusable bundle or runtime, an output that cannot be written, "
                "or a missing optional dependency (the runtime extra; dicom for DICOM files)",
            }
        ),
    )
    add_version(parser)
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files or folders")
    parser.add_argument("--bundle", type=Path, required=True, help="model bundle folder (cxr-export)")
    parser.add_argument(
        "--json",
        dest="json_out",
        default=None,
        metavar="OUT.json",
        help="write the results as JSON to this file ('-' prints JSON instead of tables)",
    )
    parser.add_argument(
        "--heatmap-dir", type=Path, default=None, help="write one heat-map PNG per image into this folder"
    )
    parser.add_argument(
        "--finding",
        default=None,
        help="finding whose heat map is written (default: each image's top finding)",
    )
    parser.add_argument(
        "--model", default=None, help="model in the bundle, e.g. onnx-int8 (default: automatic)"
    )
    parser.add_argument("--runtime", default=None, help="onnxruntime or litert (default: automatic)")
    parser.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        help="inference threads (default: physical cores, at most 4)",
    )
    parser.add_argument("--alpha", type=_alpha, default=0.45, help="heat-map opacity at its hottest (0.45)")
    parser.add_argument(
        "--allow-untrusted",
        action="store_true",
        help="score with a bundle that is unsigned or not signed by a trusted key; every result says so",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what is done (INFO)")
    add_progress_flag(parser, default=False, help="a 'k/N images' line on stderr as each image finishes")
    return parser


# ----------------------------------------------------------------------------- inputs


def expand_inputs(paths: Sequence[Path], exclude: Sequence[Path] = ()) -> tuple[list[Path], list[Failure]]:
    """Files as given; folders expanded recursively (sorted) to image files, skipping ``exclude`` folders."""
    files: list[Path] = []
    failures: list[Failure] = []
    skip = [p.resolve() for p in exclude]
    for path in paths:
        if not path.is_dir():
            files.append(path)  # a missing or unreadable file is reported when it is decoded
            continue
        found = [p for p in sorted(path.rglob("*")) if _is_image_file(p, path, skip)]
        if not found:
            reason = (
                f"folder has no PNG, JPEG or DICOM files (looked for {', '.join(IMAGE_SUFFIXES)} "
                "and DICOM files without a suffix)"
            )
            failures.append(Failure(str(path), "NoImagesFound", (reason,)))
        files.extend(found)
    return files, failures


def _is_image_file(path: Path, root: Path, skip: Sequence[Path]) -> bool:
    relative = path.relative_to(root)
    if any(part.startswith(".") for part in relative.parts) or not path.is_file():
        return False
    resolved = path.resolve()
    if any(resolved.is_relative_to(s) for s in skip):
        return False
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        return True
    if suffix:
        return False
    try:
        with path.open("rb") as handle:
            return sniff_format(handle.read(132), path.name) == "dicom"
    except (OSError, ImageDecodeError):
        return False


# ----------------------------------------------------------------------------- outputs


def _atomic_write(path: Path, write: Any, suffix: str) -> None:
    """Write through ``write(handle)`` into a temp file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: Path, document: dict[str, Any]) -> None:
    data = (json.dumps(document, indent=2) + "\n").encode("utf-8")
    _atomic_write(path, lambda handle: handle.write(data), ".tmp")


def write_png(path: Path, rgb: np.ndarray) -> None:
    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    _atomic_write(path, lambda handle: image.save(handle, format="PNG"), ".tmp")


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_") or "image"


def heatmap_name(source: str, finding: str, used: set[str]) -> str:
    """``<stem>.<finding>.png``, made unique within one run (two folders may hold the same name)."""
    stem = _safe(Path(source).stem)
    name, n = f"{stem}.{_safe(finding)}.png", 2
    while name in used:
        name, n = f"{stem}-{n}.{_safe(finding)}.png", n + 1
    used.add(name)
    return name


def heatmap_png(pred: Prediction, label: str, alpha: float) -> np.ndarray:
    """The annotated heat-map figure of ``label`` (:mod:`cxr_core.heatmap_figure`) at display size."""
    from cxr_core.heatmap_figure import FigureText, heatmap_figure

    finding = pred.finding(label)
    text = FigureText(
        finding=label,
        score=finding.score,
        above_operating_point=finding.above_operating_point,
        threshold_note=finding.threshold_note,
        disclaimer=DISCLAIMER,
        notices=pred.notices,
        source=Path(pred.source).name,
    )
    return heatmap_figure(pred.overlay(label, alpha), text)


def format_table(pred: Prediction, heatmap: tuple[str, str] | None) -> str:
    """The human-readable block for one image."""
    prov = pred.image.provenance
    details = [f"{prov.width}x{prov.height} {prov.format.upper()}"]
    details += [v for v in (prov.modality, prov.view_position) if v]
    total = sum(v for k, v in pred.timings_ms.items() if k != "cam")
    lines = [f"  *** {notice.upper()} ***" for notice in pred.notices]
    lines += [
        f"{pred.source}  ({', '.join(details)}; {pred.model_name} on {pred.runtime}, {total:.0f} ms)",
        f"  {'finding':<28} {'score':>5} {'output':>7} {'op. point':>9}  call",
    ]
    for f in pred.ranked():
        call = "ABOVE operating point" if f.above_operating_point else "-"
        if f.threshold_note:
            call += f"  [{f.threshold_note}]"
        numbers = f"{f.score:5.1f} {f.model_output:7.3f} {f.operating_point:9.3f}"
        lines.append(f"  {f.label:<28} {numbers}  {call}")
    lines.append(
        "  score: 0-100, 50 = the finding's operating point; not a probability (output: the model's)"
    )
    lines += [f"  warning: {w}" for w in pred.warnings]
    if heatmap is not None:
        lines.append(f"  heat map ({heatmap[0]}): {heatmap[1]}")
    return "\n".join(lines)


def build_document(predictor: Predictor, result: BatchResult) -> dict[str, Any]:
    """The JSON document (:class:`cxr_core.outputs.PredictionsDocument`): the run, the scored, the failed."""
    from cxr_core.outputs import (
        FailureRecord,
        HeatmapRef,
        PredictionRecord,
        PredictionsDocument,
        Summary,
        bundle_trust,
    )

    records = []
    for pred in result.predictions:
        finding, png = result.heatmaps.get(pred.source, (None, None))
        heatmap = HeatmapRef(finding=str(finding), file=str(png)) if png else None
        records.append(PredictionRecord.from_prediction(pred, heatmap))
    document = PredictionsDocument(
        tool="cxr-predict",
        version=__version__,
        disclaimer=DISCLAIMER,
        score_definition=SCORE_DEFINITION,
        synthetic_training_data=predictor.bundle.synthetic,
        notices=list(predictor.notices),
        bundle=str(predictor.bundle.root),
        architecture=predictor.bundle.architecture,
        model=predictor.model_name,
        runtime=predictor.runtime,
        threads=getattr(predictor.backend, "threads", None),
        load_ms=round(predictor.load_ms, 3),
        labels=list(predictor.labels),
        clinical=predictor.bundle.clinical.to_dict(),
        results=records,
        failures=[FailureRecord(f.file, f.error, list(f.reasons)) for f in result.failures],
        summary=Summary(scored=len(result.predictions), failed=len(result.failures)),
        bundle_trust=bundle_trust(predictor.bundle.trust),
    )
    return document.to_dict()


# ----------------------------------------------------------------------------- run


def _failure(path: Path, exc: CxrEdgeError) -> Failure:
    if isinstance(exc, ImageRefusedError):
        return Failure(str(path), type(exc).__name__, exc.reasons)
    if isinstance(exc, ImageDecodeError):
        return Failure(str(path), type(exc).__name__, (exc.reason,))
    return Failure(str(path), type(exc).__name__, (str(exc),))


def run_batch(
    predictor: Predictor,
    files: Sequence[Path],
    heatmap_dir: Path | None = None,
    finding: str | None = None,
    alpha: float = 0.45,
    on_result: Callable[[Prediction, tuple[str, str] | None], None] | None = None,
    on_failure: Callable[[Failure], None] | None = None,
) -> BatchResult:
    """Score ``files`` one by one; a failing file becomes a :class:`Failure` and the rest go on.

    ``on_result`` / ``on_failure`` are called as each file finishes (the CLI prints from them).
    """
    result = BatchResult()
    used: set[str] = set()
    for path in files:
        try:
            pred = predictor.predict_file(path)
        except CxrEdgeError as exc:  # unreadable, refused by the gate, or unusable model output
            failure = _failure(path, exc)
            result.failures.append(failure)
            if on_failure is not None:
                on_failure(failure)
            continue
        result.predictions.append(pred)
        if heatmap_dir is not None:
            label = finding or pred.ranked()[0].label
            out = heatmap_dir / heatmap_name(pred.source, label, used)
            write_png(out, heatmap_png(pred, label, alpha))
            result.heatmaps[pred.source] = (label, str(out))
        if on_result is not None:
            on_result(pred, result.heatmaps.get(pred.source))
    return result


def _check_finding(finding: str | None, labels: Sequence[str]) -> str | None:
    if finding is None or finding in labels:
        return None
    hint = difflib.get_close_matches(finding, labels, n=1)
    did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
    return (
        f"--finding {finding!r} is not a label of this bundle{did_you_mean}; expected one of {list(labels)}"
    )


def _report(failure: Failure) -> None:
    print(f"cxr-predict: skipped {failure.file}: {'; '.join(failure.reasons)}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 for --help
        return int(exc.code or 0)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    json_to_stdout = args.json_out == "-"
    try:
        with optional_dependencies("cxr-predict"):
            predictor = Predictor.load(
                args.bundle,
                model=args.model,
                runtime=args.runtime,
                threads=args.threads,
                allow_untrusted=args.allow_untrusted,
            )
    except CxrEdgeError as exc:
        return error_exit("cxr-predict", exc)
    with predictor:
        problem = _check_finding(args.finding, predictor.labels)
        if problem is not None:
            return error_exit("cxr-predict", problem)
        exclude = [args.heatmap_dir] if args.heatmap_dir is not None else []
        files, failures = expand_inputs(args.images, exclude)
        for failure in failures:
            _report(failure)
        done = 0

        def progress() -> None:
            nonlocal done
            done += 1
            if args.progress:
                print(f"cxr-predict: {done}/{len(files)} images", file=sys.stderr, flush=True)

        def show(pred: Prediction, heatmap: tuple[str, str] | None) -> None:
            if not json_to_stdout:
                print(format_table(pred, heatmap) + "\n", flush=True)
            progress()

        def skipped(failure: Failure) -> None:
            _report(failure)
            progress()

        try:  # a DICOM file without pydicom is one skipped file (MissingDependencyError), not an exit
            result = run_batch(predictor, files, args.heatmap_dir, args.finding, args.alpha, show, skipped)
        except OSError as exc:
            print(f"cxr-predict: error: cannot write a heat map ({exc})", file=sys.stderr)
            return EXIT_USAGE
        result.failures[:0] = failures
        document = build_document(predictor, result)
    if json_to_stdout:
        print(json.dumps(document, indent=2))
    else:
        for notice in predictor.notices:
            print(f"*** {notice.upper()} ***")
        print(DISCLAIMER)
        print(f"{len(result.predictions)} image(s) scored, {len(result.failures)} skipped.")
        if args.json_out is not None:
            try:
                write_json(Path(args.json_out), document)
            except OSError as exc:
                print(f"cxr-predict: error: cannot write {args.json_out} ({exc})", file=sys.stderr)
                return EXIT_USAGE
    ok = result.predictions and not result.failures
    return EXIT_OK if ok else EXIT_SOME_FAILED
