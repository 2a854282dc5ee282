"""Write a set of phone photos of phantom films in the ChestX-ray14 layout (``cxr-synth --photos``).

Layout under ``ROOT``::

    Data_Entry_2017.csv, train_val_list.txt, test_list.txt   the phantoms' labels, names *.jpg
    images_001/images/00000001_000.jpg ...                   the photos (JPEG as the camera saved them)
    photo_corners.csv                                        ground truth: scene, usable, defect, corners
    digital/                                                 the same films as a normal phantom set (PNG)
    cxr_synth.json                                           the marker, with the photo settings

``digital/`` is exactly what ``cxr-synth ROOT/digital`` writes with the same seed, image count and
size, so a model can be compared on the digital and the photographed version of every film (same
stem: ``digital/images_001/images/00000001_000.png`` is the film of ``00000001_000.jpg``).

Each photo is a light box, monitor or window photo (equal shares); ``unusable`` of them are
deliberately unusable, each with one defect of :data:`training.data.photo_scene.DEFECTS` in equal
shares. Photo ``i`` draws from ``SeedSequence(seed, spawn_key=(3, i))``, so the set is
byte-identical for a seed whatever the number of workers.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from training.data import synthetic
from training.data.photo_render import render_photo
from training.data.photo_scene import DEFECTS, KINDS
from training.data.synthetic_labels import SyntheticOptionError

PHOTO_STREAM = 3
DEFAULT_PHOTO_SIZE = (1600, 1200)
DEFAULT_UNUSABLE = 0.25
CORNER_COLUMNS = ["x0", "y0", "x1", "y1", "x2", "y2", "x3", "y3"]
#: photo_corners.csv: the agreed columns first (docs/photos.md), then the scene's main knobs.
CORNERS_HEADER = [
    "Image Index",
    "scene",
    "usable",
    "defect",
    *CORNER_COLUMNS,
    "digital",
    "tilt_deg",
    "fill",
    "blur_px",
    "moire",
    "glare_spots",
    "jpeg_quality",
]


@dataclass(frozen=True)
class PhotoJob:
    index: int
    film: str  # the digital PNG
    path: str  # the JPEG to write
    kind: str
    defect: str | None
    size: tuple[int, int]
    seed: int


@dataclass(frozen=True)
class PhotoSummary:
    """What :func:`generate_photos` wrote (the digital set's summary inside)."""

    root: Path
    n_photos: int
    n_unusable: int
    photo_size: tuple[int, int]
    kinds: dict[str, int]
    defects: dict[str, int]
    digital: synthetic.SyntheticSummary
    files: tuple[Path, ...]
    seconds: float


def parse_photo_size(text: str) -> tuple[int, int]:
    """``"1600x1200"`` -> ``(1600, 1200)``; a clear error for anything else."""
    parts = text.lower().replace("*", "x").split("x")
    try:
        width, height = (int(p) for p in parts)
    except ValueError:
        raise SyntheticOptionError(
            f"photo size {text!r}; expected WIDTHxHEIGHT in pixels, e.g. 1600x1200 or 4000x3000"
        ) from None
    check_photo_size((width, height))
    return width, height


def check_photo_size(size: tuple[int, int]) -> None:
    if not all(64 <= s <= 8000 for s in size):
        raise SyntheticOptionError(f"photo size {size[0]}x{size[1]}; expected 64 to 8000 pixels a side")


def plan_photos(n: int, seed: int, unusable: float) -> list[tuple[str, str | None]]:
    """(kind, defect) of each photo: kinds in equal shares, defects spread evenly over the unusable ones."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(PHOTO_STREAM, 1 << 30)))
    n_bad = int(round(unusable * n))
    bad = set(rng.permutation(n)[:n_bad].tolist())
    kinds = rng.permutation(np.arange(n) % len(KINDS))
    defects = iter(rng.permutation(np.arange(n_bad) % len(DEFECTS)).tolist())
    return [(KINDS[int(kinds[i])], DEFECTS[next(defects)] if i in bad else None) for i in range(n)]


def _photo_job(job: PhotoJob) -> tuple[int, list[str]]:
    """Render and write one photo; returns its index and its photo_corners.csv cells after the name."""
    with Image.open(job.film) as image:
        film = np.asarray(image.convert("L"))
    rng = np.random.default_rng(np.random.SeedSequence(job.seed, spawn_key=(PHOTO_STREAM, job.index)))
    photo = render_photo(film, rng, kind=job.kind, defect=job.defect, size=job.size)
    path = Path(job.path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = synthetic._temp_beside(path)
    tmp.write_bytes(photo.jpeg)
    tmp.replace(path)
    corners = ["" if math.isnan(v) else f"{v:.2f}" for v in photo.corners.ravel()]
    s = photo.scene
    return job.index, [
        s.kind,
        "1" if photo.usable else "0",
        photo.defect or "",
        *corners,
        "",  # the digital file, filled in by the caller
        f"{s.tilt_deg:.2f}",
        f"{s.fill:.4f}",
        f"{s.blur_px:.2f}",
        f"{s.moire:.3f}",
        str(len(s.glare)),
        str(s.jpeg_quality),
    ]


def generate_photos(
    root: str | Path,
    *,
    n_images: int = 200,
    image_size: int = 512,
    photo_size: tuple[int, int] = DEFAULT_PHOTO_SIZE,
    unusable: float = DEFAULT_UNUSABLE,
    seed: int = 0,
    prevalence: str = "balanced",
    workers: int | None = None,
    progress: bool = True,
    overwrite: bool = False,
) -> PhotoSummary:
    """Write ``n_images`` photographed phantom films under ``root``; see the module docstring."""
    start = time.perf_counter()
    check_photo_size(photo_size)
    if not 0.0 <= unusable <= 1.0:
        raise SyntheticOptionError(f"unusable share {unusable}; expected a fraction from 0 to 1")
    workers = synthetic._check_args(n_images, image_size, workers, prevalence)
    root, settings = synthetic._begin_set(
        root, "chestxray14", n_images, image_size, seed, prevalence, overwrite
    )
    settings["photos"] = {
        "photo_size": list(photo_size),
        "unusable": unusable,
        "digital": synthetic.DIGITAL_DIR,
    }
    synthetic._write_marker(root, settings, complete=False)
    digital = synthetic.generate_chestxray14(
        root / synthetic.DIGITAL_DIR,
        n_images=n_images,
        image_size=image_size,
        seed=seed,
        prevalence=prevalence,
        workers=workers,
        progress=progress,
        overwrite=overwrite,
    )
    plan = synthetic.plan_chestxray14(n_images, seed=seed, prevalence=prevalence)
    scenes = plan_photos(n_images, seed, unusable)
    digital_index = {p.name: p for p in (root / synthetic.DIGITAL_DIR).glob("images_*/images/*.png")}
    jobs, names = [], {}
    for p, (kind, defect) in zip(plan, scenes, strict=True):
        png = synthetic.image_name(p)
        jpg = Path(png).with_suffix(".jpg").name
        names[p.index] = (jpg, png)
        folder = synthetic._folder(p.index, synthetic.IMAGES_PER_FOLDER)
        jobs.append(
            PhotoJob(
                p.index, str(digital_index[png]), str(root / folder / jpg), kind, defect, photo_size, seed
            )
        )
    results = dict(synthetic._run_jobs(jobs, workers, progress, "photos", work=_photo_job))
    corner_rows = []
    for index in sorted(results):
        jpg, png = names[index]
        cells = results[index]
        cells[3 + len(CORNER_COLUMNS)] = str(digital_index[png].relative_to(root).as_posix())
        corner_rows.append([jpg, *cells])
    # the labels: the digital set's CSV and lists with the photo names
    rename = {png: jpg for jpg, png in names.values()}
    files = (root / synthetic.DATA_ENTRY_CSV, root / synthetic.TRAIN_VAL_LIST, root / synthetic.TEST_LIST)
    for name in (synthetic.TRAIN_VAL_LIST, synthetic.TEST_LIST):
        lines = (root / synthetic.DIGITAL_DIR / name).read_text(encoding="utf-8").split()
        synthetic._write_text_atomic(root / name, "".join(f"{rename[n]}\n" for n in lines))
    entry_lines = (
        (root / synthetic.DIGITAL_DIR / synthetic.DATA_ENTRY_CSV).read_text(encoding="utf-8").splitlines()
    )
    renamed = [entry_lines[0]]
    for line in entry_lines[1:]:
        name, rest = line.split(",", 1)
        fields = rest.split(",")
        fields[6:10] = [str(photo_size[0]), str(photo_size[1]), "", ""]  # the photo's size; spacing unknown
        renamed.append(",".join([rename[name], *fields]))
    corners_csv = root / synthetic.PHOTO_CORNERS_CSV
    synthetic._write_text_atomic(corners_csv, synthetic._csv_text(CORNERS_HEADER, corner_rows))
    synthetic._write_text_atomic(files[0], "\n".join(renamed) + "\n")
    kinds = {k: sum(1 for kind, _ in scenes if kind == k) for k in KINDS}
    defects = {d: sum(1 for _, defect in scenes if defect == d) for d in DEFECTS}
    synthetic._write_marker(root, settings, complete=True, counts=digital.label_counts)
    return PhotoSummary(
        root,
        n_images,
        sum(defects.values()),
        photo_size,
        kinds,
        defects,
        digital,
        (*files, corners_csv),
        time.perf_counter() - start,
    )
