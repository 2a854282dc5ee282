"""``cxr-predict``: score chest radiographs with a model bundle, on the device, without torch.

    cxr-predict IMAGE_OR_FOLDER... --bundle BUNDLE [--jsonl OUT.jsonl | -] [--json OUT.json | -]
                [--heatmap-dir DIR] [--finding NAME] [--model NAME] [--runtime RUNTIME] [--threads N]
                [--photo]

``--photo``: the images are phone photos of films; each is captured (:mod:`cxr_core.capture`: film
found, photo checked, perspective rectified, white balanced) and then scored like any file; its JSON
record's ``input`` holds the corners and quality figures, and an unusable photo is a failure record
with the reason, the ``fix`` and the ``photo_quality`` figures.

Prints a table per image (findings ranked by calibrated probability, the operating point and the
call) and a "decision support, not a diagnosis" line. Folders are expanded (recursively) to their
PNG, JPEG and DICOM files; a sub-folder that cannot be listed is reported, not skipped silently.

**A batch survives any file.** Every failure of one input (unreadable, no permission, damaged data,
refused by the input gate, unusable model output, a heat map that cannot be written, even an
unexpected exception) becomes that file's failure record with the reason; the others are scored.

**Output that survives a crash.** ``--jsonl OUT`` streams one JSON line per image as it finishes
(flushed and fsynced: a crash or power cut keeps every finished image; see
:mod:`cxr_core.predict_stream`). ``--json OUT`` writes the whole document atomically at the end
(all or nothing: an interrupted run leaves the previous file untouched). Both may be given.
Heat maps are written as each image finishes. Memory does not grow with the number of images:
only each image's small result record is kept (for ``--json``), never its pixels or feature map.
Stale ``.NAME.xxxxxxxx.tmp`` files left by an interrupted atomic write (older than a minute) are
removed on start from the folders this run writes to.

Exit status: 0 every image scored; 1 some input was refused or unreadable (or none was found) and
the others were scored; 2 usage error, an unusable bundle / runtime, an output that cannot be
opened, or a missing optional dependency; 4 internal error (an unexpected exception: for one file
it is that file's failure record and the run goes on; the exit status says a bug was met).
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
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cxr_core import __version__
from cxr_core.atomic import atomic_write, clean_stale_temps
from cxr_core.capture_common import PhotoRefusedError
from cxr_core.cli_common import (
    EXIT_FAILED,
    EXIT_INTERNAL,
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
from cxr_core.errors import CxrEdgeError, ImageDecodeError
from cxr_core.gate_signals import GateRefusedError
from cxr_core.imaging import IMAGE_SUFFIXES, sniff_format
from cxr_core.input_gate import ImageRefusedError
from cxr_core.predict_stream import JsonlWriter
from cxr_core.predictor import DISCLAIMER, SCORE_DEFINITION, Prediction, Predictor
from cxr_core.text import printable

logger = logging.getLogger(__name__)

EXIT_SOME_FAILED = EXIT_FAILED
#: The ``error`` of a failure record for an unexpected exception (a bug) while processing one file.
INTERNAL_ERROR = "InternalError"


@dataclass
class Failure:
    """A file that was not scored, and why."""

    file: str
    error: str
    reasons: tuple[str, ...]
    #: Every learned-gate signal's verdict when the learned gate refused the file (JSON-ready rows).
    gate_signals: tuple[dict[str, Any], ...] = ()
    #: What to do about it (a refused photo's fix), and a refused photo's quality figures.
    fix: str | None = None
    photo_quality: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "error": self.error,
            "reasons": list(self.reasons),
            "gate_signals": list(self.gate_signals),
            "fix": self.fix,
            "photo_quality": self.photo_quality,
        }


@dataclass
class BatchResult:
    """What a batch did. ``records`` are the small per-image result dicts (no pixels), kept only when
    asked for (``keep_records``) so that memory does not grow with the number of images."""

    scored: int = 0
    records: list[dict[str, Any]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    output_errors: int = 0  # scored images whose heat map could not be written

    @property
    def internal_errors(self) -> int:
        return sum(1 for f in self.failures if f.error == INTERNAL_ERROR)


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
        "without torch. Decision support, not a diagnosis. A file that cannot be read, is damaged or is "
        "refused by the input gate is reported with the reason and the others are scored. "
        "--jsonl survives a crash (one line per finished image, fsynced); --json is written "
        "atomically at the end (all or nothing).",
        epilog=exit_codes_epilog(
            {
                EXIT_OK: "every image was scored",
                EXIT_SOME_FAILED: "some input could not be read, was damaged or was refused by the input "
                "gate (the others were scored), a heat map could not be written, or no image was found",
                EXIT_USAGE: "usage error, an unusable bundle or runtime, an output that cannot be opened, "
                "or a missing optional dependency (the runtime extra; dicom for DICOM files)",
                EXIT_INTERNAL: "internal error: an unexpected exception (a bug); for one file it is that "
                "file's failure record (error InternalError) and the others are still scored",
            }
        ),
    )
    add_version(parser)
    parser.add_argument("images", nargs="+", type=Path, metavar="IMAGE", help="image files or folders")
    parser.add_argument("--bundle", type=Path, required=True, help="model bundle folder (cxr-export)")
    parser.add_argument(
        "--jsonl",
        dest="jsonl_out",
        default=None,
        metavar="OUT.jsonl",
        help="stream the results as JSON Lines, one line per image as it finishes, flushed and fsynced: "
        "survives a crash or power cut ('-' streams to stdout instead of tables)",
    )
    parser.add_argument(
        "--json",
        dest="json_out",
        default=None,
        metavar="OUT.json",
        help="write the results as one JSON document, atomically at the end: all or nothing, an "
        "interrupted run keeps the previous file ('-' prints JSON instead of tables)",
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
        type=bounded_int("a number of inference threads", max_threads),
        default=None,
        help=f"inference threads, 1..{max_threads()} here (default: physical cores, at most 4)",
    )
    parser.add_argument("--alpha", type=_alpha, default=0.45, help="heat-map opacity at its hottest (0.45)")
    parser.add_argument(
        "--allow-untrusted",
        action="store_true",
        help="score with a bundle that is unsigned or not signed by a trusted key; every result says so",
    )
    parser.add_argument(
        "--score-anyway",
        action="store_true",
        help="score images the learned input gate refuses (not the rules on the file); each such result "
        "carries the overridden reasons in its warnings and in 'gate_override'",
    )
    parser.add_argument(
        "--photo",
        action="store_true",
        help="the images are phone photos of films (on a light box, a window or a screen): find the film, "
        "check the photo (glare, blur, tilt, distance) and straighten it before scoring; an unusable "
        "photo is skipped with the reason and what to do (docs/photos.md)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what is done (INFO)")
    add_progress_flag(parser, default=False, help="a 'k/N images' line on stderr as each image finishes")
    return parser


# ----------------------------------------------------------------------------- inputs


def expand_inputs(paths: Sequence[Path], exclude: Sequence[Path] = ()) -> tuple[list[Path], list[Failure]]:
    """Files as given; folders expanded recursively (sorted) to image files, skipping ``exclude`` folders.

    A folder (or sub-folder) that cannot be listed is a failure record, never skipped silently.
    """
    files: list[Path] = []
    failures: list[Failure] = []
    skip = [p.resolve() for p in exclude]
    for path in paths:
        try:
            is_dir = path.is_dir()
        except OSError:
            is_dir = False
        if not is_dir:
            files.append(path)  # a missing or unreadable file is reported when it is decoded
            continue
        found: list[Path] = []
        listing_errors: list[Failure] = []
        seen = {os.path.realpath(path)}  # symlinked folders are followed, each real folder once (no loops)
        for folder, dirs, names in os.walk(
            path, onerror=lambda exc, errs=listing_errors: errs.append(_unlisted(exc)), followlinks=True
        ):
            dirs[:] = [d for d in dirs if not d.startswith(".") and _first_visit(Path(folder) / d, seen)]
            found.extend(Path(folder) / n for n in names if _is_image_file(Path(folder) / n, path, skip))
        found.sort()
        failures.extend(listing_errors)
        if not found and not listing_errors:
            reason = (
                f"folder has no PNG, JPEG or DICOM files (looked for {', '.join(IMAGE_SUFFIXES)} "
                "and, under any other name, DICOM files with the DICM marker)"
            )
            failures.append(Failure(str(path), "NoImagesFound", (reason,)))
        files.extend(found)
    return files, failures


def _first_visit(folder: Path, seen: set[str]) -> bool:
    real = os.path.realpath(folder)
    if real in seen:
        return False
    seen.add(real)
    return True


def _unlisted(exc: OSError) -> Failure:
    reason = f"folder cannot be listed ({exc.strerror or exc}); its images were not scored"
    return Failure(str(exc.filename), "FolderUnreadable", (reason,))


def _is_image_file(path: Path, root: Path, skip: Sequence[Path]) -> bool:
    relative = path.relative_to(root)
    try:
        if any(part.startswith(".") for part in relative.parts) or not path.is_file():
            return False
        resolved = path.resolve()
    except OSError:
        return True  # listed but not accessible: decoding reports why
    if any(resolved.is_relative_to(s) for s in skip):
        return False
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return True
    # Any other name is read for DICOM's "DICM" marker (132 bytes): archives name files by their UID
    # (1.2.840.113619.2.55.3.604688119.868.2, whose "suffix" is ".2") or with no suffix at all.
    try:
        with path.open("rb") as handle:
            return sniff_format(handle.read(132), path.name) == "dicom"
    except (OSError, ImageDecodeError):
        return False


# ----------------------------------------------------------------------------- outputs


def output_problem(args: argparse.Namespace) -> str | None:
    """Why ``--json`` / ``--jsonl`` cannot be written where asked, checked before any image is scored.

    A shell glob such as ``--json *.png`` makes the first image the output path; writing there
    would replace a radiograph with JSON. Nothing is overwritten that is an image, a folder, another
    output of this run or an input.
    """
    given = (("--json", args.json_out), ("--jsonl", args.jsonl_out))
    outputs = {flag: Path(value) for flag, value in given if value not in (None, "-")}
    inputs = {os.path.realpath(p) for p in args.images}
    for flag, path in outputs.items():
        shown = printable(str(path))
        if path.is_dir():
            return f"{flag} {shown} is a folder; expected the path of a file to write"
        if os.path.realpath(path) in inputs:
            return f"{flag} {shown} is also an input image; expected a separate output file"
        if path.suffix.lower() in IMAGE_SUFFIXES or _holds_an_image(path):
            return (
                f"{flag} {shown} is an image file name or holds an image; expected a .json or .jsonl "
                "output path (did a shell pattern such as *.png put an image there?)"
            )
        folder = _existing_parent(path)
        if not os.access(folder, os.W_OK | os.X_OK):
            return f"{flag} {shown}: folder {printable(str(folder))} is not writable"
    if len(outputs) == 2 and os.path.realpath(outputs["--json"]) == os.path.realpath(outputs["--jsonl"]):
        return f"--json and --jsonl both name {printable(str(outputs['--json']))}; expected two files"
    return None


def _holds_an_image(path: Path) -> bool:
    try:
        if not path.is_file():  # nothing there yet (or a FIFO, which must not be opened here)
            return False
        with path.open("rb") as handle:
            return sniff_format(handle.read(132), path.name) in ("png", "jpeg", "dicom")
    except (OSError, ImageDecodeError):
        return False


def _existing_parent(path: Path) -> Path:
    folder = path.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def write_json(path: Path, document: dict[str, Any]) -> None:
    data = (json.dumps(document, indent=2) + "\n").encode("utf-8")
    atomic_write(path, lambda handle: handle.write(data))


def write_png(path: Path, rgb: np.ndarray) -> None:
    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    atomic_write(path, lambda handle: image.save(handle, format="PNG"))


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
    return heatmap_figure(pred.overlay(label, alpha, size=overlay_size(pred.image.pixels.shape)), text)


def overlay_size(shape: tuple[int, ...], longest: int | None = None) -> tuple[int, int]:
    """(height, width) at which a heat-map figure's overlay is drawn: the image's own size, or
    ``longest`` (default twice the figure's display side) on its longer side for a larger image
    (the figure then shrinks it to its display size).

    A full-resolution overlay of a 48-megapixel phone photo took 1.25 GB (float heat map, score
    weighting, RGB blend) for a figure 1,024 px tall.
    """
    from cxr_core.heatmap_figure import DISPLAY_SIDE

    height, width = int(shape[0]), int(shape[1])
    scale = (longest or 2 * DISPLAY_SIDE) / max(height, width)
    if scale >= 1.0:
        return height, width
    return max(1, round(height * scale)), max(1, round(width * scale))


def format_table(pred: Prediction, heatmap: tuple[str, str] | None) -> str:
    """The human-readable block for one image (file names escaped)."""
    prov = pred.image.provenance
    details = [f"{prov.width}x{prov.height} {prov.format.upper()}"]
    details += [printable(v) for v in (prov.modality, prov.view_position) if v]
    total = sum(v for k, v in pred.timings_ms.items() if k != "cam")
    lines = [f"  *** {notice.upper()} ***" for notice in pred.notices]
    revision = "" if pred.revision is None else f", operating points of {pred.revision.describe()}"
    lines += [
        f"{printable(pred.source)}  ({', '.join(details)}; {pred.model_name} on {pred.runtime}"
        f"{printable(revision)}, {total:.0f} ms)",
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
    if pred.photo is not None:
        q = pred.photo.quality
        lines.append(
            f"  photo {pred.photo.photo_size[0]}x{pred.photo.photo_size[1]}: film corners "
            f"{'found' if pred.photo.detected else 'given'}; tilt {q['tilt_deg']:.0f} deg, fills "
            f"{q['fill']:.0%}, glare over the lungs {q['glare']:.1%}, blur {q['blur']:.2f}"
        )
    lines += [f"  warning: {printable(w)}" for w in pred.warnings]
    if heatmap is not None:
        lines.append(f"  heat map ({heatmap[0]}): {printable(heatmap[1])}")
    return "\n".join(lines)


def run_header(predictor: Predictor) -> dict[str, Any]:
    """The run's fields shared by ``--json`` and the ``run`` line of ``--jsonl``.

    Built from :class:`cxr_core.outputs.PredictionsDocument` (the one home of the document's
    fields, and of its JSON Schema) without the per-image parts.
    """
    from cxr_core.outputs import PredictionsDocument, bundle_trust, revision_record

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
        bundle_trust=bundle_trust(predictor.bundle.trust),
        bundle_revision=revision_record(predictor.revision),
    ).to_dict()
    for per_image in ("results", "failures", "summary"):
        document.pop(per_image)
    return document


def build_document(predictor: Predictor, result: BatchResult) -> dict[str, Any]:
    """The JSON document (:class:`cxr_core.outputs.PredictionsDocument`): the run, the scored, the failed."""
    return {
        **run_header(predictor),
        "results": list(result.records),
        "failures": [f.to_dict() for f in result.failures],
        "summary": {"scored": result.scored, "failed": len(result.failures)},
    }


# ----------------------------------------------------------------------------- run


def _failure(path: Path, exc: BaseException) -> Failure:
    if isinstance(exc, PhotoRefusedError):
        quality = exc.measures or None
        return Failure(str(path), type(exc).__name__, exc.reasons, (), exc.fix, quality)
    if isinstance(exc, GateRefusedError):
        signals = tuple(d.to_dict() for d in exc.decisions)
        return Failure(str(path), type(exc).__name__, exc.reasons, signals)
    if isinstance(exc, ImageRefusedError):
        return Failure(str(path), type(exc).__name__, exc.reasons)
    if isinstance(exc, ImageDecodeError):
        return Failure(str(path), type(exc).__name__, (exc.reason,))
    if isinstance(exc, CxrEdgeError):
        return Failure(str(path), type(exc).__name__, (str(exc),))
    if isinstance(exc, MemoryError):
        return Failure(str(path), "OutOfMemory", ("not enough memory to process this image",))
    if isinstance(exc, OSError):
        reason = f"input/output error ({exc.strerror or exc}); expected a readable file"
        return Failure(str(path), "ImageFileError", (reason,))
    reason = f"unexpected {type(exc).__name__}: {exc} (a bug in cxr-edge; please report it with this file)"
    return Failure(str(path), INTERNAL_ERROR, (reason,))


def _score_one(
    predictor: Predictor,
    path: Path,
    heatmap_dir: Path | None,
    finding: str | None,
    alpha: float,
    used: set[str],
    score_anyway: bool = False,
    photo: bool = False,
) -> tuple[dict[str, Any], Prediction, bool]:
    """Score one file; return its result record, the prediction and whether its heat map was written."""
    from cxr_core.outputs import HeatmapRef, PredictionRecord

    if photo:
        pred: Prediction = predictor.predict_photo(path, override_gate=score_anyway)
    else:
        pred = predictor.predict_file(path, override_gate=score_anyway)
    heatmap, ok = None, True
    if heatmap_dir is not None:
        label = finding or pred.ranked()[0].label
        out = heatmap_dir / heatmap_name(pred.source, label, used)
        try:
            write_png(out, heatmap_png(pred, label, alpha))
            heatmap = HeatmapRef(finding=label, file=str(out))
        except OSError as exc:
            ok = False
            warning = f"heat map not written to {out} ({exc.strerror or exc})"
            pred = _with_warning(pred, warning)
    return PredictionRecord.from_prediction(pred, heatmap).to_dict(), pred, ok


def _with_warning(pred: Prediction, warning: str) -> Prediction:
    import dataclasses

    return dataclasses.replace(pred, warnings=(*pred.warnings, warning))


def run_batch(
    predictor: Predictor,
    files: Sequence[Path],
    heatmap_dir: Path | None = None,
    finding: str | None = None,
    alpha: float = 0.45,
    on_result: Callable[[dict[str, Any], Prediction], None] | None = None,
    on_failure: Callable[[Failure], None] | None = None,
    *,
    keep_records: bool = True,
    score_anyway: bool = False,
    photo: bool = False,
) -> BatchResult:
    """Score ``files`` one by one; any failure of one file becomes its :class:`Failure` and the rest go on.

    ``on_result`` (the result record and the prediction) / ``on_failure`` are called as each file
    finishes (the CLI prints and streams from them). Only the small records are kept
    (``keep_records``), never an image. ``score_anyway`` scores images the learned gate refuses,
    each marked (:meth:`cxr_core.predictor.Predictor.predict_file`). ``photo`` reads every file as a
    phone photo of a film (:meth:`cxr_core.predictor.Predictor.predict_photo`).
    """
    result = BatchResult()
    used: set[str] = set()
    for path in files:
        try:
            record, pred, heatmap_ok = _score_one(
                predictor, path, heatmap_dir, finding, alpha, used, score_anyway, photo
            )
        except Exception as exc:  # noqa: BLE001 - one file must never end the batch (KeyboardInterrupt does)
            failure = _failure(path, exc)
            if failure.error == INTERNAL_ERROR:
                logger.error("unexpected error on %s:\n%s", printable(path), traceback.format_exc())
            result.failures.append(failure)
            if on_failure is not None:
                on_failure(failure)
            continue
        result.scored += 1
        result.output_errors += 0 if heatmap_ok else 1
        if keep_records:
            result.records.append(record)
        if on_result is not None:
            on_result(record, pred)
        del pred  # nothing of the image is kept past its callback
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
    reasons = "; ".join(printable(r) for r in failure.reasons)
    if failure.fix and failure.fix not in reasons:
        reasons += f"; {printable(failure.fix)}"
    print(f"cxr-predict: skipped {printable(failure.file)}: {reasons}", file=sys.stderr, flush=True)


def _output_folders(args: argparse.Namespace) -> list[Path]:
    folders = [Path(out).parent for out in (args.json_out, args.jsonl_out) if out not in (None, "-")]
    if args.heatmap_dir is not None:
        folders.append(args.heatmap_dir)
    return folders


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 for --help
        return int(exc.code or 0)
    if args.json_out == "-" and args.jsonl_out == "-":
        return error_exit("cxr-predict", "--json - and --jsonl - both print to stdout; expected at most one")
    problem = output_problem(args)
    if problem is not None:
        return error_exit("cxr-predict", problem)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("cxr-predict: interrupted", file=sys.stderr)
        return 130
    except Exception:  # noqa: BLE001 - a bug outside one file's processing: say so, exit 4
        traceback.print_exc()
        print("cxr-predict: internal error (a bug); see the traceback above", file=sys.stderr)
        return EXIT_INTERNAL


def _run(args: argparse.Namespace) -> int:
    for folder in _output_folders(args):
        clean_stale_temps(folder)
    quiet = "-" in (args.json_out, args.jsonl_out)
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
        stream: JsonlWriter | None = None
        if args.jsonl_out is not None:
            try:
                stream = JsonlWriter(args.jsonl_out)
            except OSError as exc:
                return error_exit("cxr-predict", f"cannot open {printable(args.jsonl_out)} ({exc})")
            stream.write("run", run_header(predictor))
        try:
            return _score_all(args, predictor, stream, quiet)
        finally:
            if stream is not None:
                stream.close()


def _score_all(
    args: argparse.Namespace, predictor: Predictor, stream: JsonlWriter | None, quiet: bool
) -> int:
    exclude = [args.heatmap_dir] if args.heatmap_dir is not None else []
    files, failures = expand_inputs(args.images, exclude)
    for failure in failures:
        _report(failure)
        if stream is not None:
            stream.write("failure", failure.to_dict())
    done = 0

    def progress() -> None:
        nonlocal done
        done += 1
        if args.progress:
            print(f"cxr-predict: {done}/{len(files)} images", file=sys.stderr, flush=True)

    def show(record: dict[str, Any], pred: Prediction) -> None:
        if stream is not None:
            stream.write("result", record)
        if not quiet:
            heatmap = record.get("heatmap")
            shown = (heatmap["finding"], heatmap["file"]) if heatmap else None
            print(format_table(pred, shown) + "\n", flush=True)
        progress()

    def skipped(failure: Failure) -> None:
        if stream is not None:
            stream.write("failure", failure.to_dict())
        _report(failure)
        progress()

    try:
        result = run_batch(
            predictor,
            files,
            args.heatmap_dir,
            args.finding,
            args.alpha,
            show,
            skipped,
            keep_records=args.json_out is not None,
            score_anyway=args.score_anyway,
            photo=args.photo,
        )
    except KeyboardInterrupt:
        if stream is not None:
            stream.write("summary", {"scored": None, "failed": None, "complete": False})
        raise
    result.failures[:0] = failures
    if stream is not None:
        stream.write("summary", {"scored": result.scored, "failed": len(result.failures), "complete": True})
    if args.json_out == "-":
        print(json.dumps(build_document(predictor, result), indent=2))
    elif not quiet:
        for notice in predictor.notices:
            print(f"*** {notice.upper()} ***")
        print(DISCLAIMER)
        print(f"{result.scored} image(s) scored, {len(result.failures)} skipped.")
    if args.json_out not in (None, "-"):
        try:
            write_json(Path(args.json_out), build_document(predictor, result))
        except OSError as exc:
            print(f"cxr-predict: error: cannot write {printable(args.json_out)} ({exc})", file=sys.stderr)
            return EXIT_USAGE
    if result.internal_errors:
        return EXIT_INTERNAL
    ok = result.scored and not result.failures and not result.output_errors
    return EXIT_OK if ok else EXIT_SOME_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
