"""Measure the JPEG damage checks: false refusals on clean JPEGs, catches on damaged ones.

``python -m tests.jpeg_damage_study`` prints the figures docs/reliability.md quotes (about two
minutes on a 2-core machine):

* **clean**: phantoms, scikit-learn's and matplotlib's sample photographs and graphics, the fuzz
  texture and gradients, at quality 30-100, baseline and progressive, without and with restart
  intervals; then 40 random phantoms at 5 qualities. Every file goes through ``decode_bytes``.
* **corpus**: the mutated JPEGs of :mod:`tests.fuzz_corpus` (seed 15) that Pillow decodes.
* **phantom mutations**: 512 and 384 px phantom JPEGs mutated the same way (seed 7).
* **phantom sweep**: 20 phantoms at 384 and 448 px (sizes whose body edge falls between block
  rows), quality 90 and 95, baseline: clean files, counted by the check that refused them.
* **identity**: whether simplejpeg's full decode of each clean file equals Pillow's, pixel for pixel
  (evidence for decoding once; today the strict decode is only a check).
* **cost**: one 2048 x 2048 phantom JPEG, baseline and progressive: Pillow's decode, the strict
  check at 1/8 and at full scale, and the whole ``decode_bytes`` (printed, never asserted).

Refusals are counted by the check that made them: *staircase* (``check_desync``), *strict*
(libjpeg's warnings, :mod:`cxr_core.jpeg_strict`, which runs last: a file it refused passed every
other check, so it was *scored* before the strict check existed) and *other* (structure, fill,
Pillow's own errors). A damaged file counts as *material* when more than 1 % of its pixels differ
from the undamaged decode by more than 8 grey levels of 255. Every damaged file is also checked at
full scale: the strict check's verdict must not depend on its 1/8 scale.
"""

from __future__ import annotations

import io
import logging
import os
import random
import sys
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from cxr_core.errors import CxrEdgeError
from cxr_core.imaging import decode_bytes
from cxr_core.jpeg_strict import CHECK_SCALE, first_warning, strict_decoder
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
        if "offset by about" in str(exc):
            return "staircase"
        return "strict" if "libjpeg reports" in str(exc) else "other"
    return None


def _same_as_pillow(data: bytes) -> bool:
    """Whether simplejpeg's full-size decode (grey, else RGB) is pixel-identical to Pillow's."""
    decoder = strict_decoder()
    with Image.open(io.BytesIO(data)) as img:
        grey = img.mode == "L"
        pillow = np.asarray(img if grey else img.convert("RGB"))
    theirs = decoder.decode_jpeg(data, colorspace="GRAY" if grey else "RGB")  # type: ignore[union-attr]
    theirs = theirs[..., 0] if grey else theirs
    return pillow.shape == theirs.shape and bool(np.array_equal(pillow, theirs))


def _pixels(data: bytes) -> NDArray[np.int16] | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return np.asarray(Image.open(io.BytesIO(data)).convert("L")).astype(np.int16)
    except Exception:  # noqa: BLE001 - Pillow cannot decode it at all: not a silent case
        return None


def damaged(cases: list[tuple[str, bytes, bytes]]) -> Counter[str]:
    """``cases``: (kind, damaged bytes, original bytes); counts by kind, material or not, outcome.

    Also counts ``scale disagreements``: files the strict check judges differently at full scale."""
    counts: Counter[str] = Counter()
    decoder = strict_decoder()
    for kind, data, original in cases:
        pixels, clean = _pixels(data), _pixels(original)
        if pixels is None or clean is None:
            continue
        material = pixels.shape != clean.shape or float(np.mean(np.abs(pixels - clean) > 8)) > 0.01
        outcome = _refused(data) or "scored"
        counts[f"{kind} {'material' if material else 'minor'} {outcome}"] += 1
        if decoder is not None:
            scaled, full = first_warning(decoder, data), first_warning(decoder, data, scale=1)
            counts["scale disagreements"] += scaled != full
    return counts


def before_after(counts: Counter[str]) -> str:
    """Material damaged files scored, per kind: without the strict check (before) and with it."""
    lines = []
    for kind in ("baseline", "progressive"):
        total = sum(v for k, v in counts.items() if k.startswith(f"{kind} material"))
        after = counts[f"{kind} material scored"]
        before = after + counts[f"{kind} material strict"]
        lines.append(f"  {kind}: {total} material, scored before {before}, after {after}")
    return "\n".join(lines)


def phantom_sweep() -> Iterator[tuple[str, bytes]]:
    for seed in range(20):
        for size in (384, 448):
            image = np.asarray(render_phantom(seed=seed, size=size).image)
            for quality in (90, 95):
                yield f"phantom{seed}-{size}-q{quality}", _jpeg(image, quality=quality)


@contextmanager
def _without_strict_check() -> Iterator[None]:
    """decode_bytes as an install without simplejpeg runs it (the import fails)."""
    saved = sys.modules.get("simplejpeg")
    sys.modules["simplejpeg"] = None  # type: ignore[assignment]
    strict_decoder.cache_clear()
    log = logging.getLogger("cxr_core.jpeg_strict")
    log.disabled = True  # the 'check skipped' warning is expected here
    try:
        yield
    finally:
        log.disabled = False
        if saved is None:
            del sys.modules["simplejpeg"]
        else:
            sys.modules["simplejpeg"] = saved
        strict_decoder.cache_clear()


def _best_ms(run: object, repeats: int = 9) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return 1000 * min(times)


def cost() -> None:
    image = np.asarray(
        Image.fromarray(np.asarray(render_phantom(seed=1, size=1024).image)).resize((2048, 2048))
    )
    decoder = strict_decoder()
    for progressive in (False, True):
        data = _jpeg(image, quality=90, progressive=progressive)

        def pillow(data: bytes = data) -> None:
            with Image.open(io.BytesIO(data)) as img:
                img.load()

        row = {"Pillow decode": _best_ms(pillow)}
        if decoder is not None:
            row[f"strict 1/{CHECK_SCALE}"] = _best_ms(lambda data=data: first_warning(decoder, data))
            row["strict full"] = _best_ms(lambda data=data: first_warning(decoder, data, scale=1))
        row["decode_bytes"] = _best_ms(lambda data=data: decode_bytes(data, "cost.jpg"))
        with _without_strict_check():
            row["decode_bytes without strict"] = _best_ms(lambda data=data: decode_bytes(data, "cost.jpg"))
        kind = "progressive" if progressive else "baseline"
        print(
            f"cost, 2048 x 2048 {kind} (best of 9, ms): " + ", ".join(f"{k} {v:.1f}" for k, v in row.items())
        )


def main() -> int:
    if strict_decoder() is None:
        print("simplejpeg is not installed: the strict check is skipped (install the runtime extra)")
    refused = Counter(_refused(data) or "accepted" for _name, data in clean_files())
    print(f"clean JPEGs: {dict(refused)}")
    if strict_decoder() is not None:
        same = Counter(_same_as_pillow(data) for _name, data in clean_files())
        print(f"clean JPEGs whose full simplejpeg decode equals Pillow's: {same[True]} of {same.total()}")
    sweep = Counter()
    for name, data in phantom_sweep():
        outcome = _refused(data) or "accepted"
        sweep[outcome] += 1
        if outcome != "accepted":
            print(f"  clean phantom refused ({outcome}): {name}")
    print(f"clean phantom sweep: {dict(sweep)}")
    bases = corpus.base_images()
    cases = [
        ("progressive" if "progressive" in c.name else "baseline", c.data, bases[str(c.original)][1])
        for c in corpus.mutated_cases(300, 15)
        if c.fmt == "jpeg"
    ]
    fuzz = damaged(cases)
    print(f"fuzz corpus mutated JPEGs: {dict(sorted(fuzz.items()))}")
    print(before_after(fuzz))
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
    phantoms = damaged(phantom_cases)
    print(f"phantom mutated JPEGs: {dict(sorted(phantoms.items()))}")
    print(before_after(phantoms))
    crafted = Counter(_refused(c.data) or "scored" for c in corpus.crafted_cases() if c.fmt == "jpeg")
    print(f"fuzz corpus crafted JPEGs (all damaged): {dict(crafted)}")
    cost()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
