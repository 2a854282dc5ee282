"""Does a phantom model hold up on phone photos of its test films? With and without photographic augmentation.

Issue 13, figure 5: mean AUC of a phantom model on the digital test films vs on the *same* films
photographed (:mod:`training.data.photo_render`, usable photos only) and rectified with their
ground-truth corners, for a model trained without (``hflip``) and with (``hflip-photo``) the
photographic augmentation of :mod:`training.augment_photo`. Everything else is the same: data,
seed, encoder, epochs.

Steps, all under ``OUT``:

1. ``digital/``: a phantom set (``cxr-synth``'s ChestX-ray14 layout);
2. ``photographed/``: the same layout, CSV and lists, where every *test* image is the rectified
   photo of its film (8-bit PNG of the same name) and the other images link to the digital files;
   ``corners_off/``: the same photos rectified with corners off by up to ``--corner-error`` of
   the film's diagonal (issue 13 asks corner detection for <= 2%);
3. ``runs/<augment>/``: one ``cxr-train`` run per augmentation on ``digital/``;
4. each run's ``best.pt`` scored on the test split of the three folders with ``evaluate_checkpoint``
   (the evaluation path of ``cxr-train evaluate``), then ``study.json`` and a table on stdout.

Rectification uses ``cxr_core.capture.rectify`` (the capture pipeline's own warp, white balance
and stretch) when this checkout has it, else a Pillow perspective warp with grey-world white
balance and the same 0.5-99.5 percentile stretch (``rectifier`` in study.json says which).

Small on purpose (two CPU cores shared): e.g. ``python -m training.photo_robustness_study
/tmp/photo-study --images 600 --size 128 --input-size 64 --epochs 6``. A model trained on
phantoms says nothing about clinical performance; the figure shows what photographing a film
costs a model and what the augmentation buys back.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from training.data.loading import load_dataset
from training.data.photo_render import render_photo
from training.data.photo_scene import KINDS
from training.data.synthetic import DATA_ENTRY_CSV, TEST_LIST, TRAIN_VAL_LIST, generate_chestxray14
from training.data.synthetic_photos import parse_photo_size

logger = logging.getLogger(__name__)

AUGMENTS = ("hflip", "hflip-photo")
STUDY_STREAM = 7
STRETCH = (0.5, 99.5)


# -- rectification --------------------------------------------------------------------------------
def _homography(src: NDArray[np.float64], dst: NDArray[np.float64]) -> NDArray[np.float64]:
    rows = []
    for (x, y), (u, v) in zip(src, dst, strict=True):
        rows += [[x, y, 1, 0, 0, 0, -u * x, -u * y, -u], [0, 0, 0, x, y, 1, -v * x, -v * y, -v]]
    h = np.linalg.svd(np.asarray(rows, dtype=np.float64))[2][-1].reshape(3, 3)
    return h / h[2, 2]


def pillow_rectify(
    rgb: NDArray[np.uint8], corners: NDArray[np.float64], long_side: int
) -> NDArray[np.float32]:
    """The film inside ``corners`` warped to its aspect, white balanced (grey world), grey, stretched."""
    top, bottom = np.linalg.norm(corners[1] - corners[0]), np.linalg.norm(corners[2] - corners[3])
    left, right = np.linalg.norm(corners[3] - corners[0]), np.linalg.norm(corners[2] - corners[1])
    aspect = (top + bottom) / max(left + right, 1e-6)
    width, height = (
        (long_side, round(long_side / aspect)) if aspect >= 1 else (round(long_side * aspect), long_side)
    )
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float64)
    coeffs = _homography(target, corners).ravel()[:8]  # output pixel -> photo (continuous coordinates)
    film = Image.fromarray(rgb).transform(
        (width, height), Image.Transform.PERSPECTIVE, tuple(coeffs), Image.Resampling.BICUBIC
    )
    pixels = np.asarray(film, np.float32)
    bright = pixels.max(axis=2)
    use = (bright > 0.08 * 255) & (bright < 0.95 * 255)
    means = pixels[use].mean(axis=0) if use.sum() > 100 else pixels.reshape(-1, 3).mean(axis=0)
    balanced = pixels * (means.mean() / np.maximum(means, 1e-3))
    grey = balanced @ np.array([0.299, 0.587, 0.114], np.float32)
    low, high = np.percentile(grey[::2, ::2], STRETCH)
    return np.clip((grey - low) / max(high - low, 1e-3), 0.0, 1.0).astype(np.float32)


def choose_rectifier(name: str) -> tuple[str, Any]:
    """``(name, function(rgb, corners, long_side) -> grey float32)``: the capture pipeline's, or Pillow's."""
    if name in ("auto", "capture"):
        try:
            from cxr_core.capture import rectify
        except ImportError:
            if name == "capture":
                raise
            logger.info("cxr_core.capture is not in this checkout; rectifying with the Pillow warp")
        else:
            return "cxr_core.capture.rectify", lambda rgb, corners, side: rectify(
                rgb, corners, long_side=side
            )
    return "pillow (grey world, percentile stretch)", pillow_rectify


# -- data -----------------------------------------------------------------------------------------
def photographed_twin(
    digital: Path,
    out: Path,
    test_names: list[str],
    *,
    seed: int,
    photo_size: tuple[int, int],
    rectifier: Any,
    corner_error: float = 0.0,
    examples: Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Write ``out``: ``digital``'s layout with every test image replaced by its rectified photo.

    ``corner_error`` > 0 rectifies with each ground-truth corner moved in a random direction by
    50-100% of that share of the film's diagonal (a corner detector's error), else exactly.
    """
    if out.exists():
        shutil.rmtree(out)
    for name in (DATA_ENTRY_CSV, TRAIN_VAL_LIST, TEST_LIST):
        (out).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(digital / name, out / name)
    tests = set(test_names)
    kinds: dict[str, int] = {k: 0 for k in KINDS}
    seconds = 0.0
    films = sorted(digital.glob("images_*/images/*.png"))
    bar = _bar(len(tests), "photos", progress)
    for film_path in films:
        target = out / film_path.relative_to(digital)
        target.parent.mkdir(parents=True, exist_ok=True)
        if film_path.name not in tests:
            os.symlink(film_path.resolve(), target)
            continue
        index = test_names.index(film_path.name)
        kind = KINDS[index % len(KINDS)]
        kinds[kind] += 1
        with Image.open(film_path) as image:
            film = np.asarray(image.convert("L"))
        rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(STUDY_STREAM, index)))
        photo = render_photo(film, rng, kind=kind, size=photo_size)
        start = time.perf_counter()
        corners = photo.corners
        if corner_error > 0:
            diagonal = float(np.linalg.norm(corners[2] - corners[0]))
            angle = rng.uniform(0, 2 * np.pi, 4)
            length = rng.uniform(0.5, 1.0, 4) * corner_error * diagonal
            corners = corners + np.c_[np.cos(angle), np.sin(angle)] * length[:, None]
        grey = rectifier(photo.rgb, corners, max(film.shape))
        seconds += time.perf_counter() - start
        Image.fromarray((np.clip(grey, 0, 1) * 255 + 0.5).astype(np.uint8)).save(target)
        if examples is not None and index < 3:
            examples.mkdir(parents=True, exist_ok=True)
            Image.fromarray(photo.rgb).save(examples / f"{film_path.stem}_{kind}_photo.jpg", quality=85)
            shutil.copyfile(target, examples / f"{film_path.stem}_rectified.png")
            shutil.copyfile(film_path, examples / f"{film_path.stem}_digital.png")
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    return {"n_photos": len(tests), "kinds": kinds, "rectify_ms_mean": 1000 * seconds / max(1, len(tests))}


def _bar(total: int, what: str, progress: bool) -> Any:
    if not progress:
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=total, desc=what, unit="img")


# -- training and evaluation ----------------------------------------------------------------------
def train(digital: Path, out: Path, augment: str, args: argparse.Namespace) -> Path:
    """One cxr-train run on ``digital``; returns its best checkpoint."""
    from training.config import TrainConfig
    from training.trainer import run_training

    config = TrainConfig.from_dict(
        {
            "dataset": "synthetic",
            "data_root": str(digital),
            "out_dir": str(out),
            "encoder": args.encoder,
            "architecture": "chexnet",
            "input_size": args.input_size,
            "resize": "square",
            "resize_to": args.input_size,
            "augment": augment,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "lr": args.lr,
            "scheduler": "none",
            "num_workers": 0,
            "threads": args.threads,
            "device": "cpu",
            "seed": args.seed,
            "progress": args.progress,
        },
        "photo robustness study",
    )
    run_training(config)
    return out / "best.pt"


def evaluate(checkpoint: Path, root: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    from training.evaluation import evaluate_checkpoint

    result = evaluate_checkpoint(
        checkpoint,
        "test",
        out,
        data_root=str(root),
        device="cpu",
        num_workers=0,
        threads=args.threads,
        progress=False,
    )
    report = result.output.report
    return {
        "mean_auc": report.mean_auc,
        "n": report.n_samples,
        "per_class_auc": report.per_class_auc,
        "scores": result.output.probs,
    }


def compare(
    checkpoint: Path, digital: Path, photographed: list[Path], out: Path, args: argparse.Namespace
) -> dict[str, Any]:
    """``checkpoint`` on the digital test films and on each photographed twin: AUCs, drops, changes."""
    digital_eval = evaluate(checkpoint, digital, out / "digital", args)
    scores = digital_eval.pop("scores")
    result: dict[str, Any] = {"digital": digital_eval}
    for root in photographed:
        photo_eval = evaluate(checkpoint, root, out / root.name, args)
        delta = np.abs(scores - photo_eval.pop("scores"))  # the same films in the same order
        photo_eval.update(
            drop=digital_eval["mean_auc"] - photo_eval["mean_auc"],
            mean_abs_delta_p=float(delta.mean()),
            max_abs_delta_p=float(delta.max()),
        )
        result[root.name] = photo_eval
    return result


def run_study(args: argparse.Namespace) -> dict[str, Any]:
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    digital = out / "digital"
    generate_chestxray14(
        digital, n_images=args.images, image_size=args.size, seed=args.seed, workers=1, progress=args.progress
    )
    test = [r.path.name for r in load_dataset("synthetic", digital).test]
    rectifier_name, rectifier = choose_rectifier(args.rectify)
    conditions = {"photographed": 0.0, "corners_off": args.corner_error}
    photos: dict[str, Any] = {}
    for condition, error in conditions.items():
        photos[condition] = photographed_twin(
            digital,
            out / condition,
            test,
            seed=args.seed,
            photo_size=parse_photo_size(args.photo_size),
            rectifier=rectifier,
            corner_error=error,
            examples=out / "examples" if error == 0 else None,
            progress=args.progress,
        )
    results: dict[str, Any] = {}
    for augment in AUGMENTS:
        checkpoint = train(digital, out / "runs" / augment, augment, args)
        results[augment] = compare(
            checkpoint, digital, [out / c for c in conditions], out / "eval" / augment, args
        )
    study = {
        "settings": {k: v for k, v in vars(args).items() if k != "progress"},
        "rectifier": rectifier_name,
        "photos": photos,
        "results": results,
        "seconds": time.perf_counter() - start,
        "note": "phantom data: shows what photographing a film costs a model, nothing clinical",
    }
    (out / "study.json").write_text(json.dumps(study, indent=2) + "\n", encoding="utf-8")
    return study


def format_table(study: dict[str, Any]) -> str:
    photos = study["photos"]["photographed"]
    lines = [
        f"test films: {photos['n_photos']} (photos: {photos['kinds']}), rectifier: {study['rectifier']}, "
        f"corners_off: each corner {study['settings']['corner_error']:.0%} of the diagonal off at most",
        "| training augmentation | rectified with | mean AUC, digital | mean AUC, photographed | drop "
        "| mean / max abs. change of a probability |",
        "|---|---|---|---|---|---|",
    ]
    for augment, r in study["results"].items():
        for condition in ("photographed", "corners_off"):
            c = r[condition]
            lines.append(
                f"| {augment} | {'true corners' if condition == 'photographed' else 'corners off'} | "
                f"{r['digital']['mean_auc']:.3f} | {c['mean_auc']:.3f} | {c['drop']:+.3f} | "
                f"{c['mean_abs_delta_p']:.3f} / {c['max_abs_delta_p']:.3f} |"
            )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training.photo_robustness_study",
        description="Train two small phantom models (without / with the photographic augmentation) and "
        "compare their mean AUC on the digital test films and on the same films photographed and "
        "rectified with the ground-truth corners.",
    )
    parser.add_argument("out_dir", help="work folder (data, runs, study.json)")
    parser.add_argument("--images", type=int, default=600, help="phantoms (default: %(default)s)")
    parser.add_argument("--size", type=int, default=128, help="film side in pixels (default: %(default)s)")
    parser.add_argument("--input-size", type=int, default=64, help="model input (default: %(default)s)")
    parser.add_argument("--encoder", default="tiny-densenet", help="encoder (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=6, help="epochs per run (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate (default: %(default)s)")
    parser.add_argument("--photo-size", default="800x600", help="photo WxH (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data and runs (default: %(default)s)")
    parser.add_argument(
        "--corner-error",
        type=float,
        default=0.02,
        help="second condition: corners off by up to this share of the diagonal (default: %(default)s)",
    )
    parser.add_argument(
        "--rectify", choices=("auto", "capture", "pillow"), default="auto", help="rectifier (default: auto)"
    )
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    study = run_study(args)
    print(format_table(study))
    print(f"study.json: {Path(args.out_dir) / 'study.json'} ({study['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
