"""``cxr-synth``: write a synthetic chest X-ray phantom data set (ChestX-ray14 or CheXpert layout).

Examples::

    cxr-synth data/phantoms                          # 2,000 PNGs, 512 px, ChestX-ray14 layout
    cxr-synth data/chexpert --layout chexpert --images 500 --size 320
    cxr-synth data/phantoms --prevalence realistic --seed 3 --workers 2
    cxr-synth --contact-sheet docs/images/phantoms.png   # one labelled example per finding
    cxr-synth --photos data/photos --images 200          # phone photos of films + the digital films
"""

from __future__ import annotations

import argparse
import logging
import sys

from cxr_core.cli_common import (
    EXIT_OK,
    EXIT_USAGE,
    add_progress_flag,
    add_version,
    error_exit,
    exit_codes_epilog,
    optional_dependencies,
)
from cxr_core.errors import CxrEdgeError
from training.data.synthetic import (
    LAYOUTS,
    SyntheticSummary,
    generate_chestxray14,
    generate_chexpert,
    write_contact_sheet,
)
from training.data.synthetic_labels import PREVALENCE_PRESETS
from training.data.synthetic_photos import (
    DEFAULT_PHOTO_SIZE,
    DEFAULT_UNUSABLE,
    PhotoSummary,
    generate_photos,
    parse_photo_size,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxr-synth",
        description="Write a synthetic chest X-ray data set of drawn phantoms (no patient data) in the "
        "ChestX-ray14 or CheXpert on-disk layout. The same seed gives byte-identical files.",
        epilog=exit_codes_epilog(
            {
                EXIT_OK: "the data set (or contact sheet) was written",
                EXIT_USAGE: "usage error, a refused option value or output folder, or a missing "
                "optional dependency",
            }
        ),
    )
    add_version(parser)
    parser.add_argument("out_dir", nargs="?", help="output directory (new, empty, or a previous phantom set)")
    parser.add_argument(
        "--layout", choices=LAYOUTS, default="chestxray14", help="on-disk layout (default: %(default)s)"
    )
    parser.add_argument(
        "--images", type=int, default=None, help="number of images (default: 2000; 200 with --photos)"
    )
    parser.add_argument(
        "--size",
        type=int,
        default=None,
        help="image side in pixels (default: 512 for chestxray14, 320 for chexpert)",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="random seed (default: 0; 7 for --contact-sheet)"
    )
    parser.add_argument(
        "--prevalence",
        choices=sorted(PREVALENCE_PRESETS),
        default="balanced",
        help="finding prevalence preset: balanced (every finding >= 8%%) or realistic "
        "(as in ChestX-ray14) (default: %(default)s)",
    )
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU count)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="write into a non-empty directory that is not a previous phantom set",
    )
    add_progress_flag(parser, default=True, help="a progress bar on stderr")
    parser.add_argument(
        "--contact-sheet",
        metavar="PNG",
        help="instead of a data set, write a labelled sheet with one phantom per finding",
    )
    photos = parser.add_argument_group("phone photos of films (issue 13)")
    photos.add_argument(
        "--photos",
        action="store_true",
        help="write phone photos (JPEG) of phantom films on a light box, a monitor or a window, in the "
        "ChestX-ray14 layout, with photo_corners.csv (ground-truth corners, scene, defect) and the same "
        "films as digital PNGs in OUT_DIR/digital (default --images 200)",
    )
    photos.add_argument(
        "--photo-size",
        metavar="WxH",
        default=None,
        help=f"photo size in pixels (default: {DEFAULT_PHOTO_SIZE[0]}x{DEFAULT_PHOTO_SIZE[1]}; "
        "4000x3000 is a 12-megapixel phone photo)",
    )
    photos.add_argument(
        "--unusable",
        type=float,
        default=None,
        metavar="SHARE",
        help=f"share of deliberately unusable photos (glare over the lungs, extreme tilt, too far, strong "
        f"blur, film cut off, two films, no film) (default: {DEFAULT_UNUSABLE})",
    )
    return parser


def _report_photos(summary: PhotoSummary) -> None:
    print(
        f"Wrote {summary.n_photos} photos ({summary.photo_size[0]}x{summary.photo_size[1]}, "
        f"{summary.n_unusable} deliberately unusable) of phantom films to {summary.root} "
        f"in {summary.seconds:.1f} s"
    )
    for path in summary.files:
        print(f"  {path}")
    print(f"  digital films: {summary.digital.root}")
    print("  scenes: " + ", ".join(f"{k} {n}" for k, n in summary.kinds.items()))
    print("  defects: " + ", ".join(f"{k} {n}" for k, n in summary.defects.items()))


def _report(summary: SyntheticSummary) -> None:
    print(
        f"Wrote {summary.n_images} phantom images ({summary.n_patients} patients, {summary.image_size} px, "
        f"{summary.layout} layout, prevalence {summary.prevalence}, seed {summary.seed}) "
        f"to {summary.root} in {summary.seconds:.1f} s"
    )
    for path in summary.files:
        print(f"  {path}")
    print("  splits: " + ", ".join(f"{name} {count}" for name, count in summary.split_counts.items()))
    width = max(len(name) for name in summary.label_counts)
    header = f"  {'label':<{width}}  positive" + ("  uncertain" if summary.uncertain_counts else "")
    print(header)
    for name, count in summary.label_counts.items():
        share = 100.0 * count / summary.n_images
        line = f"  {name:<{width}}  {count:6d} ({share:4.1f}%)"
        if summary.uncertain_counts:
            line += f"  {summary.uncertain_counts.get(name, 0):6d}"
        print(line)


def _photos(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.layout != "chestxray14":
        parser.error("--photos writes the chestxray14 layout; drop --layout chexpert")
    summary = generate_photos(
        args.out_dir,
        n_images=200 if args.images is None else args.images,
        image_size=512 if args.size is None else args.size,
        photo_size=DEFAULT_PHOTO_SIZE if args.photo_size is None else parse_photo_size(args.photo_size),
        unusable=DEFAULT_UNUSABLE if args.unusable is None else args.unusable,
        seed=0 if args.seed is None else args.seed,
        prevalence=args.prevalence,
        workers=args.workers,
        progress=args.progress,
        overwrite=args.overwrite,
    )
    _report_photos(summary)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not args.out_dir and not args.contact_sheet:
        parser.error("OUT_DIR is required unless --contact-sheet is given")
    try:
        with optional_dependencies("cxr-synth"):
            if args.contact_sheet:
                seed = 7 if args.seed is None else args.seed
                print(f"Wrote {write_contact_sheet(args.contact_sheet, seed=seed)}")
                return EXIT_OK
            if args.photos:
                return _photos(args, parser)
            if args.photo_size is not None or args.unusable is not None:
                parser.error("--photo-size and --unusable need --photos")
            generate = generate_chestxray14 if args.layout == "chestxray14" else generate_chexpert
            size = {} if args.size is None else {"image_size": args.size}
            summary = generate(
                args.out_dir,
                n_images=2000 if args.images is None else args.images,
                seed=0 if args.seed is None else args.seed,
                prevalence=args.prevalence,
                workers=args.workers,
                progress=args.progress,
                overwrite=args.overwrite,
                **size,
            )
    except CxrEdgeError as exc:
        return error_exit("cxr-synth", exc)
    _report(summary)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
