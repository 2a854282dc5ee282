"""How well cxr_core.capture finds, checks and straightens films in rendered phone photos, measured.

    python -m benchmarks.photo_study [--per-scene N] [--seed S] [--out photo_study.json]
                                     [--bundle BUNDLE] [--fit-limits] [--timing-runs K]

Renders ``N`` photos per scene (light box, monitor, window) and per case (good, and each deliberately
unusable defect of :mod:`training.data.photo_render`) of fresh phantom films and reports:

* **corner error** of the detected film on good photos, as the largest corner's distance over the
  film's diagonal: the share within 2% (issue 13's target: >= 95%), the median and the worst;
* **quality checks**: the share of good photos accepted (target >= 95%) and of unusable photos refused
  (target >= 95%), per scene and defect, and the share refused *for their own defect* (the message);
* **time** of capture + rectify on a 12-megapixel (4000 x 3000) photo, median of ``K`` runs (and the
  process's CPU time, less sensitive to other work on the machine), from the decoded array and from
  the JPEG file (decode included); printed, never asserted (the machine may be shared: say so when
  quoting it);
* with ``--bundle``, the learned gate's acceptance of the good photos, rectified and scored through
  :meth:`cxr_core.predictor.Predictor.predict_photo` from real JPEG files.

``--fit-limits`` prints the :class:`cxr_core.capture_quality.PhotoLimits` set from the *good* photos
of this run only (the in-distribution case); fit on one seed and measure on another. It measures and
prints; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from cxr_core.capture import PhotoLimits, PhotoRefusedError, capture_film
from cxr_core.capture_quality import DEFAULT_LIMITS
from cxr_core.cli_common import add_version

logger = logging.getLogger(__name__)

#: A detected corner within this share of the film's diagonal counts as found (issue 13).
CORNER_TOLERANCE = 0.02
#: The refusal code each defect should get (the specific message).
EXPECTED_CODE = {
    "glare": "glare",
    "tilt": "tilt",
    "far": "far",
    "blur": "blur",
    "cut_off": "cut_off",
    "two_films": "two_films",
    "no_film": "no_film",
}


def _corner_error(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.linalg.norm(found - truth, axis=1).max() / np.linalg.norm(truth[2] - truth[0]))


def _film(rng: np.random.Generator) -> np.ndarray:
    from training.data.phantom import render_phantom

    view = "AP" if rng.random() < 0.3 else "PA"
    return render_phantom(seed=int(rng.integers(2**31)), size=512, view=view).image


def _one(rendered: Any, limits: PhotoLimits) -> dict[str, Any]:
    """Capture one rendered photo: the whole photo's blur, detection, figures, verdict."""
    from cxr_core.capture_quality import judge, photo_blur

    row: dict[str, Any] = {"defect": rendered.defect, "usable": bool(rendered.usable)}
    start = time.perf_counter()
    blur = photo_blur(Image.fromarray(rendered.rgb))  # capture_film judges it first (check_photo_blur)
    try:
        captured = capture_film(rendered.rgb, check=False)
    except PhotoRefusedError as exc:
        code = "blur" if blur > limits.max_photo_blur else exc.code
        row.update(detected=False, refused=True, code=code, corner_error=None, quality=None)
        row["ms"] = (time.perf_counter() - start) * 1000.0
        return row
    row["ms"] = (time.perf_counter() - start) * 1000.0
    truth = np.asarray(rendered.corners, dtype=np.float64)
    error = _corner_error(captured.corners, truth) if np.isfinite(truth).all() else None
    quality = {**captured.quality.to_dict(), "photo_blur": blur}
    row.update(detected=True, corner_error=error, quality=quality)
    if blur > limits.max_photo_blur:
        row.update(refused=True, code="blur")
        return row
    try:
        judge(captured.quality, limits, "photo")
        row.update(refused=False, code=None)
    except PhotoRefusedError as exc:
        row.update(refused=True, code=exc.code)
    return row


def run_study(
    per_scene: int,
    seed: int,
    size: tuple[int, int] = (1600, 1200),
    limits: PhotoLimits = DEFAULT_LIMITS,
    progress: bool = True,
    good_only: bool = False,
) -> dict[str, Any]:
    """Render and capture ``per_scene`` photos per scene and case; the rows and their summary."""
    from training.data.photo_render import DEFECTS, KINDS, render_photo

    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    cases = [(kind, defect) for kind in KINDS for defect in (None, *(() if good_only else DEFECTS))]
    total = len(cases) * per_scene
    for kind, defect in cases:
        for _ in range(per_scene):
            rendered = render_photo(_film(rng), rng, kind=kind, defect=defect, size=size)
            row = _one(rendered, limits)
            row["kind"] = kind
            rows.append(row)
            if progress:
                print(f"\rphoto_study: {len(rows)}/{total} photos", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    return {
        "per_scene": per_scene,
        "seed": seed,
        "size": list(size),
        "rows": rows,
        "summary": summarise(rows),
    }


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Corner error and quality-check shares, overall, per scene and per defect."""
    good = [r for r in rows if r["usable"]]
    bad = [r for r in rows if not r["usable"]]
    errors = [r["corner_error"] if r["detected"] else math.inf for r in good]
    within = [e <= CORNER_TOLERANCE for e in errors]
    summary: dict[str, Any] = {
        "good_photos": len(good),
        "unusable_photos": len(bad),
        "corner_within_2pct": _share(within),
        "corner_error_median": float(np.median(errors)) if errors else None,
        "corner_error_p95": float(np.percentile(errors, 95)) if errors else None,
        "good_accepted": _share([not r["refused"] for r in good]),
        "unusable_refused": _share([r["refused"] for r in bad]),
        "unusable_refused_for_own_defect": _share([r["code"] == EXPECTED_CODE[r["defect"]] for r in bad]),
        "good_refusal_codes": _counts(r["code"] for r in good if r["refused"]),
    }
    per_scene: dict[str, Any] = {}
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_kind[row["kind"]].append(row)
    for kind, kind_rows in by_kind.items():
        kind_good = [r for r in kind_rows if r["usable"]]
        entry: dict[str, Any] = {
            "corner_within_2pct": _share(
                [r["detected"] and r["corner_error"] <= CORNER_TOLERANCE for r in kind_good]
            ),
            "good_accepted": _share([not r["refused"] for r in kind_good]),
        }
        by_defect: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in kind_rows:
            if not r["usable"]:
                by_defect[r["defect"]].append(r)
        for defect, defect_rows in by_defect.items():
            entry[defect] = {
                "refused": _share([r["refused"] for r in defect_rows]),
                "own_reason": _share([r["code"] == EXPECTED_CODE[defect] for r in defect_rows]),
                "codes": _counts(r["code"] for r in defect_rows),
            }
        per_scene[kind] = entry
    summary["per_scene"] = per_scene
    return summary


def _share(flags: list[bool]) -> float | None:
    return float(np.mean(flags)) if flags else None


def _counts(codes: Any) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for code in codes:
        out[str(code)] += 1
    return dict(sorted(out.items()))


def fit_limits(rows: list[dict[str, Any]]) -> PhotoLimits:
    """Limits from the good photos of ``rows`` only, those whose film was found (corner error within
    2%): the worst good value loosened by a margin (docs/photos.md, "Quality limits")."""
    figures = [
        r["quality"]
        for r in rows
        if r["usable"] and r["quality"] is not None and (r["corner_error"] or 1.0) <= CORNER_TOLERANCE
    ]
    if not figures:
        return DEFAULT_LIMITS

    def worst(key: str, high: bool = True) -> float:
        values = [f[key] for f in figures]
        return max(values) if high else min(values)

    return PhotoLimits(
        max_glare=round(max(0.01, worst("glare") + 0.01), 3),
        max_blur=round(worst("blur") + 0.05, 3),
        max_moire=round(worst("moire") * 1.5, 1),
        max_tilt_deg=round(worst("tilt_deg") + 10.0, 1),
        min_fill=round(worst("fill", high=False) * 0.6, 3),
        min_edge_margin=DEFAULT_LIMITS.min_edge_margin,
        min_confidence=round(worst("confidence", high=False) - 0.1, 3),
        max_photo_blur=round(worst("photo_blur") + 0.05, 3),
    )


def time_capture(runs: int, seed: int) -> dict[str, float]:
    """Median ms of capture + rectify of a 12-megapixel rendered photo: from the array, from the JPEG."""
    from training.data.photo_render import render_photo

    rng = np.random.default_rng(seed)
    rendered = render_photo(_film(rng), rng, kind="lightbox", size=(4000, 3000))
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "photo12mp.jpg"
        path.write_bytes(rendered.jpeg)
        capture_film(rendered.rgb, check=False)  # warm-up
        array_ms, file_ms, cpu_ms = [], [], []
        for _ in range(runs):
            start, cpu = time.perf_counter(), time.process_time()
            capture_film(rendered.rgb, check=False)
            array_ms.append((time.perf_counter() - start) * 1000.0)
            cpu_ms.append((time.process_time() - cpu) * 1000.0)
            start = time.perf_counter()
            captured = capture_film(path, check=False)
            file_ms.append((time.perf_counter() - start) * 1000.0)
    return {
        "photo_size": "4000x3000",
        "runs": runs,
        "capture_rectify_ms_median": float(np.median(array_ms)),
        "capture_rectify_cpu_ms_median": float(np.median(cpu_ms)),
        "capture_rectify_ms_min": float(np.min(array_ms)),
        "capture_rectify_from_jpeg_ms_median": float(np.median(file_ms)),
        "stage_ms_last": {k: round(v, 1) for k, v in captured.timings_ms.items()},
    }


def gate_study(
    bundle: Path, per_scene: int, seed: int, size: tuple[int, int], allow_untrusted: bool = False
) -> dict[str, Any]:
    """The learned gate's acceptance of good rendered photos, scored from real JPEG files through
    ``Predictor.predict_photo``, and of the same films as digital PNG files."""
    from PIL import Image

    from cxr_core.gate_signals import GateRefusedError
    from cxr_core.input_gate import ImageRefusedError
    from cxr_core.predictor import Predictor
    from training.data.photo_render import KINDS, render_photo

    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    loaded = Predictor.load(bundle, allow_untrusted=allow_untrusted)
    with loaded as predictor, tempfile.TemporaryDirectory() as folder:
        for kind in KINDS:
            accepted = refused_photo = refused_gate = digital = 0
            for index in range(per_scene):
                film = _film(rng)
                rendered = render_photo(film, rng, kind=kind, size=size)
                path = Path(folder) / f"{kind}_{index}.jpg"
                path.write_bytes(rendered.jpeg)
                png = Path(folder) / f"{kind}_{index}.png"
                Image.fromarray(film).save(png)
                try:
                    predictor.predict_file(png)
                    digital += 1
                except ImageRefusedError:
                    pass
                try:
                    predictor.predict_photo(path)
                    accepted += 1
                except PhotoRefusedError:
                    refused_photo += 1
                except GateRefusedError:
                    refused_gate += 1
            out[kind] = {
                "photos": per_scene,
                "gate_accepted": accepted / per_scene,
                "refused_by_photo_checks": refused_photo / per_scene,
                "refused_by_learned_gate": refused_gate / per_scene,
                "digital_films_accepted": digital / per_scene,
            }
    return out


def _pct(value: float | None) -> str:
    return "   -" if value is None else f"{100 * value:5.1f}%"


def table(study: dict[str, Any]) -> str:
    """The printed table."""
    s = study["summary"]
    lines = [
        f"photos: {s['good_photos']} good, {s['unusable_photos']} unusable "
        f"({study['per_scene']} per scene and case, seed {study['seed']}, "
        f"{study['size'][0]}x{study['size'][1]})",
        f"corner error <= 2% of the diagonal: {_pct(s['corner_within_2pct'])} of good photos "
        f"(median {100 * s['corner_error_median']:.2f}%, 95th percentile {100 * s['corner_error_p95']:.2f}%)",
        f"good photos accepted: {_pct(s['good_accepted'])}   (refused as {s['good_refusal_codes']})",
        f"unusable photos refused: {_pct(s['unusable_refused'])}   "
        f"(for their own defect: {_pct(s['unusable_refused_for_own_defect'])})",
        "",
    ]
    defects = sorted({d for entry in s["per_scene"].values() for d in entry if isinstance(entry[d], dict)})
    lines.append(f"{'scene':<10} {'corners':>7} {'good ok':>7} " + " ".join(f"{d:>10}" for d in defects))
    for kind, entry in s["per_scene"].items():
        cells = " ".join(f"{_pct(entry[d]['refused']) if d in entry else '-':>10}" for d in defects)
        lines.append(
            f"{kind:<10} {_pct(entry['corner_within_2pct']):>7} {_pct(entry['good_accepted']):>7} {cells}"
        )
    lines.append(
        "(defect columns: share refused; the JSON has the share refused for the defect's own reason)"
    )
    timing = study.get("timing")
    if timing:
        lines.append(
            f"capture + rectify, {timing['photo_size']} photo: median "
            f"{timing['capture_rectify_ms_median']:.0f} ms (min {timing['capture_rectify_ms_min']:.0f}, "
            f"process CPU {timing['capture_rectify_cpu_ms_median']:.0f}) from the array, "
            f"{timing['capture_rectify_from_jpeg_ms_median']:.0f} ms from the JPEG file "
            f"({timing['runs']} runs; stages {timing['stage_ms_last']})"
        )
    gate = study.get("learned_gate")
    if gate:
        for kind, entry in gate.items():
            lines.append(
                f"learned gate, good {kind} photos: {_pct(entry['gate_accepted'])} accepted "
                f"({_pct(entry['refused_by_learned_gate'])} refused by the gate, "
                f"{_pct(entry['refused_by_photo_checks'])} by the photo checks; the same films as digital "
                f"files: {_pct(entry['digital_films_accepted'])} accepted)"
            )
    return "\n".join(lines)


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not WIDTHxHEIGHT, e.g. 1600x1200") from None
    if not (64 <= width <= 8000 and 64 <= height <= 8000):
        raise argparse.ArgumentTypeError(f"{text!r}: expected each side in 64..8000")
    return width, height


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.photo_study",
        description="Measure film detection, the photo quality checks and capture time on rendered phone "
        "photos of phantom films (issue 13). Prints a table and writes JSON; asserts nothing.",
    )
    add_version(parser)
    parser.add_argument("--per-scene", type=int, default=20, help="photos per scene and case (20)")
    parser.add_argument("--seed", type=int, default=0, help="random seed of the films and photos (0)")
    parser.add_argument(
        "--size", type=_size, default=(1600, 1200), help="photo size WIDTHxHEIGHT (1600x1200)"
    )
    parser.add_argument("--out", type=Path, default=None, help="write the study as JSON here")
    parser.add_argument("--timing-runs", type=int, default=5, help="runs of the 12 MP timing, 0 to skip (5)")
    parser.add_argument("--bundle", type=Path, default=None, help="also measure this bundle's learned gate")
    parser.add_argument(
        "--allow-untrusted",
        action="store_true",
        help="load --bundle even if it is not signed by a trusted key",
    )
    parser.add_argument(
        "--fit-limits", action="store_true", help="print the quality limits set from this run's good photos"
    )
    parser.add_argument("--good-only", action="store_true", help="render good photos only (for --fit-limits)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    study = run_study(args.per_scene, args.seed, args.size, good_only=args.good_only)
    if args.timing_runs > 0:
        study["timing"] = time_capture(args.timing_runs, args.seed + 1)
    if args.bundle is not None:
        study["learned_gate"] = gate_study(
            args.bundle, args.per_scene, args.seed + 2, args.size, args.allow_untrusted
        )
    print(table(study))
    if args.fit_limits:
        print(f"limits fitted on the good photos: {fit_limits(study['rows'])}")
    if args.out is not None:
        args.out.write_text(json.dumps(study, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
