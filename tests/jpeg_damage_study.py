"""Measure the JPEG damage checks: false refusals on clean JPEGs, catches on damaged ones.

``python -m tests.jpeg_damage_study`` prints the figures docs/reliability.md quotes (about two
minutes on a 2-core machine):

* **clean**: phantoms, scikit-learn's and matplotlib's sample photographs and graphics, the fuzz
  texture and gradients, at quality 30-100, baseline and progressive, without and with restart
  intervals; then 40 random phantoms at 5 qualities. Every file goes through ``decode_bytes``.
* **corpus**: the mutated JPEGs of :mod:`tests.fuzz_corpus` (seed 15) that Pillow decodes.
* **phantom mutations**: 512 and 384 px phantom JPEGs mutated the same way (seed 7).

A damaged file counts as *material* when more than 1 % of its pixels differ from the undamaged
decode by more than 8 grey levels of 255.
"""

from __future__ import annotations

import io
import os
import random
import warnings
from collections import Counter
from collections.abc import Iterator

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from cxr_core.errors import CxrEdgeError
from cxr_core.imaging import decode_bytes
from tests import fuzz_corpus as corpus
from tests.file_factory import gradient
from training.data.phantom import DRAWABLE_FINDINGS, render_phantom


def _sources() -> Iterator[tuple[str, NDArray]]:
    import matplotlib
    from sklearn.datasets import load_sample_images

    for seed, size, view in [
        (0, 256, "PA"),
        (1, 512, "AP"),
        (2, 1024, "PA"),
        (3, 512, "LATERAL"),
        (4, 768, "PA"),
    ]:
        yield (
            f"phantom{seed}-{size}-{view}",
            np.asarray(render_phantom(seed=seed, size=size, view=view).image),
        )
    yield "phantom5-crop", np.asarray(render_phantom(seed=5, size=512).image)[:500, 3:507]
    for path in load_sample_images().filenames:
        yield os.path.basename(path), np.asarray(Image.open(path))
        yield os.path.basename(path) + "-grey", np.asarray(Image.open(path).convert("L"))
    data = os.path.join(matplotlib.get_data_path(), "sample_data")
    grace = Image.open(os.path.join(data, "grace_hopper.jpg"))
    yield "grace", np.asarray(grace)
    yield "grace-grey", np.asarray(grace.convert("L"))
    yield "grace-small", np.asarray(grace.convert("L").resize((203, 237)))
    yield "grace-big", np.asarray(grace.convert("L").resize((1200, 1400)))
    for name in ("Minduka_Present_Blue_Pack.png", "logo2.png"):
        yield name, np.asarray(Image.open(os.path.join(data, name)).convert("RGB"))
    yield "texture", corpus.texture()
    yield "gradient", gradient(64, 48)
    yield "gradient-big", gradient(400, 304)


def _jpeg(image: NDArray, **options: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", **options)
    return buf.getvalue()


def clean_files() -> Iterator[tuple[str, bytes]]:
    for name, image in _sources():
        for quality in (30, 50, 75, 90, 95, 100):
            for progressive in (False, True):
                for restart in ({}, {"restart_marker_rows": 1}, {"restart_marker_blocks": 5}):
                    yield name, _jpeg(image, quality=quality, progressive=progressive, **restart)
    rng = np.random.default_rng(1)
    findings = sorted(DRAWABLE_FINDINGS)
    for seed in range(40):
        size = int(rng.choice([256, 384, 512, 640, 1024]))
        view = str(rng.choice(["PA", "AP", "LATERAL"]))
        chosen = list(rng.choice(findings, size=int(rng.integers(0, 3)), replace=False))
        image = np.asarray(render_phantom(chosen, seed=100 + seed, size=size, view=view).image)
        for quality in (30, 50, 70, 85, 95):
            yield f"random phantom {seed}", _jpeg(image, quality=quality, progressive=bool(seed % 2))


def _refused(data: bytes) -> str | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            decode_bytes(data, "study.jpg")
    except CxrEdgeError as exc:
        return "staircase" if "offset by about" in str(exc) else "other"
    return None


def _pixels(data: bytes) -> NDArray[np.int16] | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(Image.open(io.BytesIO(data)).convert("L")).astype(np.int16)
    except Exception:  # noqa: BLE001 - Pillow cannot decode it at all: not a silent case
        return None


def damaged(cases: list[tuple[str, bytes, bytes]]) -> Counter[str]:
    """``cases``: (kind, damaged bytes, original bytes); counts by kind, material or not, outcome."""
    counts: Counter[str] = Counter()
    for kind, data, original in cases:
        pixels, clean = _pixels(data), _pixels(original)
        if pixels is None or clean is None:
            continue
        material = pixels.shape != clean.shape or float(np.mean(np.abs(pixels - clean) > 8)) > 0.01
        outcome = _refused(data) or "scored"
        counts[f"{kind} {'material' if material else 'minor'} {outcome}"] += 1
    return counts


def main() -> int:
    refused = Counter(_refused(data) or "accepted" for _name, data in clean_files())
    print(f"clean JPEGs: {dict(refused)}")
    bases = corpus.base_images()
    cases = [
        ("progressive" if "progressive" in c.name else "baseline", c.data, bases[str(c.original)][1])
        for c in corpus.mutated_cases(300, 15)
        if c.fmt == "jpeg"
    ]
    print(f"fuzz corpus mutated JPEGs: {dict(sorted(damaged(cases).items()))}")
    rng = random.Random(7)
    originals = {}
    for seed, size in ((2, 512), (5, 384)):
        image = np.asarray(render_phantom(seed=seed, size=size).image)
        for progressive in (False, True):
            originals[(seed, progressive)] = corpus.jpeg_bytes(image, progressive=progressive)
    keys = sorted(originals)
    phantom_cases = []
    for i in range(200):
        key = keys[i % len(keys)]
        kind = "progressive" if key[1] else "baseline"
        phantom_cases.append((kind, corpus.mutate(originals[key], rng), originals[key]))
    print(f"phantom mutated JPEGs: {dict(sorted(damaged(phantom_cases).items()))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
