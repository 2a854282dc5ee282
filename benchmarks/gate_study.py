"""How well does the input gate know what it is looking at? False and true refusal rates, measured.

    python -m benchmarks.gate_study BUNDLE --in-distribution FOLDER [--work DIR] [--out study.json]

Builds an out-of-distribution corpus offline from images that installed packages ship (scikit-learn's
and matplotlib's sample photographs and an MR slice) and from what this module draws itself
(document pages, an app screenshot with a small chest film inside, noise, flat images) or derives
from the in-distribution images (inverted, rotated 90 and 180 degrees, a corner crop). Nothing is
downloaded; the corpus is only measured, never used to set a threshold (the bundle's thresholds
come from its own validation images at export).

Per model of the bundle it reports the false refusal rate on the in-distribution images (they
should pass), the true refusal rate per category (they should be refused) and which signal refused
them (the learned feature gate, or a rule of the input gate), the AUROC of the learned gate's
distance (in-distribution vs all out-of-distribution images), and the gate's cost next to the
classifier's inference time. It measures and prints; it asserts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cxr_core.bundle import load_bundle, load_feature_gate
from cxr_core.cli_common import add_version
from cxr_core.errors import ImageDecodeError
from cxr_core.imaging import decode_image
from cxr_core.input_gate import ImageRefusedError
from cxr_core.metrics import roc_auc
from cxr_core.predictor import Predictor
from cxr_core.preprocess import PreprocessSpec, preprocess
from cxr_core.runtime import open_backend

SIDE = 512


def _save(array: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _grey(image: Image.Image, side: int = SIDE) -> np.ndarray:
    return np.asarray(image.convert("L").resize((side, side), Image.Resampling.BILINEAR))


def _package_photos() -> list[tuple[str, Image.Image]]:
    photos = []
    try:
        from sklearn.datasets import load_sample_image

        photos += [(name, Image.fromarray(load_sample_image(name))) for name in ("china.jpg", "flower.jpg")]
    except ImportError:
        pass
    try:
        import matplotlib.cbook

        with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as handle:
            photos.append(("grace_hopper.jpg", Image.open(handle).convert("RGB")))
    except (ImportError, OSError, ValueError):
        pass
    return photos


def _mr_slice() -> np.ndarray | None:
    try:
        import matplotlib.cbook

        with matplotlib.cbook.get_sample_data("s1045.ima.gz") as handle:
            raw = handle.read()  # matplotlib opens .gz files through gzip already
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (ImportError, OSError, ValueError):
        return None
    image = np.frombuffer(raw, np.uint16).astype(np.float32).reshape(256, 256)
    image = image / max(1.0, float(image.max())) * 255.0
    return np.asarray(Image.fromarray(image.astype(np.uint8)).resize((SIDE, SIDE)))


def _document(seed: int) -> np.ndarray:
    page = Image.new("L", (SIDE, int(SIDE * 1.3)), 245)
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=14)
    rng = np.random.default_rng(seed)
    words = "patient report findings clinic history radiograph chest normal review follow".split()
    for line in range(40):
        text = " ".join(rng.choice(words, 8))
        draw.text((30, 20 + line * 20), text, fill=20, font=font)
    return np.asarray(page)


def _screenshot(chest: np.ndarray) -> np.ndarray:
    screen = Image.new("L", (800, 600), 235)
    draw = ImageDraw.Draw(screen)
    draw.rectangle((0, 0, 800, 40), fill=60)
    draw.rectangle((20, 60, 260, 580), fill=200)
    for row in range(10):
        draw.rectangle((30, 80 + row * 45, 250, 110 + row * 45), fill=150)
    film = Image.fromarray(chest).resize((240, 240))
    screen.paste(film, (420, 160))
    return np.asarray(screen)


def build_corpus(in_distribution: list[Path], folder: Path) -> dict[str, list[Path]]:
    """The out-of-distribution corpus by category (files written under ``folder``)."""
    corpus: dict[str, list[Path]] = {}

    def add(category: str, name: str, array: np.ndarray) -> None:
        corpus.setdefault(category, []).append(_save(array, folder / category / f"{name}.png"))

    for name, photo in _package_photos():
        add("photo_grey", Path(name).stem, _grey(photo))
        add("photo_colour", Path(name).stem, np.asarray(photo.resize((SIDE, SIDE))))
    mr = _mr_slice()
    if mr is not None:
        add("mr_slice", "s1045", mr)
        add("mr_slice", "s1045_inverted", 255 - mr)
    for seed in range(3):
        add("document", f"page{seed}", _document(seed))
    rng = np.random.default_rng(0)
    for seed in range(3):
        add("noise", f"noise{seed}", rng.integers(0, 256, (SIDE, SIDE), dtype=np.uint8))
    for level in (0, 128, 255):
        add("flat", f"flat{level}", np.full((SIDE, SIDE), level, np.uint8))
    for path in in_distribution[:5]:
        chest = _grey(Image.open(path), SIDE)
        add("chest_inverted", path.stem, 255 - chest)
        add("chest_rotated", f"{path.stem}_90", np.rot90(chest).copy())
        add("chest_rotated", f"{path.stem}_180", np.rot90(chest, 2).copy())
        corner = np.asarray(Image.fromarray(chest[: SIDE // 3, : SIDE // 3]).resize((SIDE, SIDE)))
        add("chest_corner_crop", path.stem, corner)
        add("screenshot", path.stem, _screenshot(chest))
    return corpus


def _learned_distance(spec: PreprocessSpec, backend: Any, gate: Any, path: Path) -> float | None:
    """The gate's distance of an image (also for one the gate or a rule would refuse)."""
    try:
        decoded = decode_image(path)
    except ImageDecodeError:
        return None
    outputs = backend(preprocess(decoded.pixels, spec)[None])
    return gate.score(np.asarray(outputs["feature_map"])[0])


@dataclasses.dataclass(frozen=True)
class Verdict:
    """What the input gate made of one file: ``outcome`` is ``accepted``, ``learned`` (a learned signal
    refused it), ``rule`` (a rule on the file refused it first) or ``unreadable``; ``signals`` holds
    every learned signal's verdict with its score (empty when a rule refused it or nothing decoded)."""

    outcome: str
    signals: tuple[Any, ...] = ()

    @property
    def refused(self) -> bool:
        return self.outcome != "accepted"


def judge(predictor: Predictor, path: Path) -> Verdict:
    """Run ``path`` through ``predictor`` as the device does; the learned signals' scores always come
    back (the gate is overridden to read them; whether it would have refused is in the verdict)."""
    try:
        prediction = predictor.predict_file(path, override_gate=True)
    except ImageRefusedError:  # with the override, only a rule on the file refuses
        return Verdict("rule")
    except ImageDecodeError:
        return Verdict("unreadable")
    refused = any(not d.accepted for d in prediction.gate_signals)
    return Verdict("learned" if refused else "accepted", tuple(prediction.gate_signals))


def run_study(bundle_dir: Path, in_folder: Path, work: Path, limit: int = 200) -> dict[str, Any]:
    bundle = load_bundle(bundle_dir)
    gate = load_feature_gate(bundle)
    images = sorted(p for p in in_folder.rglob("*") if p.suffix.lower() in (".png", ".jpg", ".dcm"))[:limit]
    corpus = build_corpus(images, work / "ood")
    results: dict[str, Any] = {"bundle": str(bundle_dir), "in_distribution": str(in_folder), "models": {}}
    for entry in bundle.models:
        predictor = Predictor(bundle, open_backend(bundle, model=entry.name, threads=2))
        backend = predictor.backend

        def decide(path: Path, predictor: Predictor = predictor) -> str:
            try:
                predictor.predict_file(path)
            except ImageRefusedError as exc:
                return "learned" if "unlike the images" in exc.reasons[0] else "rule"
            except ImageDecodeError:
                return "unreadable"
            return "accepted"

        in_decisions = [decide(p) for p in images]
        row: dict[str, Any] = {
            "in_distribution_images": len(images),
            "false_refusal_rate": round(sum(d != "accepted" for d in in_decisions) / max(1, len(images)), 4),
            "categories": {},
        }
        ood_all = []
        for category, paths in corpus.items():
            decisions = [decide(p) for p in paths]
            ood_all += paths
            row["categories"][category] = {
                "images": len(paths),
                "true_refusal_rate": round(sum(d != "accepted" for d in decisions) / len(paths), 4),
                "refused_by_learned_gate": sum(d == "learned" for d in decisions),
                "refused_by_rules": sum(d == "rule" for d in decisions),
            }
        total = sum(c["images"] for c in row["categories"].values())
        refused = sum(c["images"] * c["true_refusal_rate"] for c in row["categories"].values())
        row["true_refusal_rate"] = round(refused / max(1, total), 4)
        if gate is not None:
            spec = dataclasses.replace(bundle.spec, layout="NCHW")  # the backend's canonical layout
            inside = [_learned_distance(spec, backend, gate, p) for p in images]
            outside = [_learned_distance(spec, backend, gate, p) for p in ood_all]
            inside = [d for d in inside if d is not None]
            outside = [d for d in outside if d is not None]
            truth = np.r_[np.zeros(len(inside)), np.ones(len(outside))]
            row["learned_gate_auroc"] = round(float(roc_auc(truth, np.r_[inside, outside])), 4)
            feature_map = backend(
                np.zeros((1, 3, bundle.spec.input_size, bundle.spec.input_size), np.float32)
            )
            start = time.perf_counter()
            for _ in range(200):
                gate.score(np.asarray(feature_map["feature_map"])[0])
            gate_ms = (time.perf_counter() - start) / 200 * 1000
            batch = np.zeros((1, 3, bundle.spec.input_size, bundle.spec.input_size), np.float32)
            start = time.perf_counter()
            for _ in range(20):
                backend(batch)
            infer_ms = (time.perf_counter() - start) / 20 * 1000
            row["gate_ms"], row["inference_ms"] = round(gate_ms, 3), round(infer_ms, 2)
        predictor.close()
        results["models"][entry.name] = row
    return results


def table(study: dict[str, Any]) -> str:
    lines = [f"input gate study: {study['bundle']} (in-distribution: {study['in_distribution']})"]
    for name, row in study["models"].items():
        lines.append(
            f"{name}: false refusals {row['false_refusal_rate']:.1%} of {row['in_distribution_images']}; "
            f"true refusals {row['true_refusal_rate']:.1%}; "
            f"learned-gate AUROC {row.get('learned_gate_auroc')}; "
            f"gate {row.get('gate_ms')} ms vs inference {row.get('inference_ms')} ms"
        )
        for category, c in row["categories"].items():
            lines.append(
                f"  {category:<18} {c['images']:>3} images  refused {c['true_refusal_rate']:.0%} "
                f"(learned {c['refused_by_learned_gate']}, rules {c['refused_by_rules']})"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gate_study", description="Measure the input gate."
    )
    add_version(parser)
    parser.add_argument("bundle", type=Path)
    parser.add_argument(
        "--in-distribution", type=Path, required=True, help="folder of in-distribution images"
    )
    parser.add_argument("--limit", type=int, default=200, help="in-distribution images used (default: 200)")
    parser.add_argument("--out", type=Path, default=None, help="write the study as JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="cxr-gate-") as work:
        study = run_study(args.bundle, args.in_distribution, Path(work), args.limit)
    print(table(study))
    if args.out is not None:
        args.out.write_text(json.dumps(study, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
