"""The out-of-distribution corpus of the input-gate study, built offline and deterministic for a seed.

    python -m benchmarks.ood_corpus OUT_FOLDER [--seed 0] [--per-category 6]

Only images that installed packages ship (scikit-learn's and matplotlib's sample photographs and MR
slice, the acquired CT, MR and nuclear-medicine images in pydicom's test files) and what the project
draws itself (:mod:`benchmarks.ood_render`, the body-part phantoms of
:mod:`training.data.phantom_bodyparts`, chest phantoms of :mod:`training.data.phantom`): nothing is
downloaded. Every image is at least 512 px on its shorter side, so the size rule of the input gate
does not pre-empt the learned signals. The corpus is **only measured, never used to fit or set a
threshold**: a bundle's thresholds come from its own validation images at export.

Categories (:data:`CATEGORIES`, each ``per_category`` images): natural photographs in grey and colour,
document pages and text, screenshots with a chest film inside, CT and MR slices as DICOM (with the
modality tag, which the rule gate refuses, and with it stripped, which reaches the learned signals)
and as PNG, acquired (not drawn) CT, MR and nuclear-medicine images as PNG, radiographs of the hand,
knee, skull and pelvis, noise, flat fields, and chest phantoms
inverted, rotated by 90 and 180 degrees and cropped to a corner. ``corpus.json`` in the folder lists
every file with its category and what it is.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from benchmarks import ood_render as draw
from cxr_core.cli_common import add_version
from cxr_core.errors import CxrEdgeError

logger = logging.getLogger(__name__)

SIDE = 512
DEFAULT_PER_CATEGORY = 6
MANIFEST = "corpus.json"

#: Category -> what its images are (the study's table and docs/input-gate.md use these words).
CATEGORIES: dict[str, str] = {
    "photo_grey": "natural photographs (scikit-learn, matplotlib samples), greyscale, crops",
    "photo_colour": "the same photographs in colour",
    "document": "document pages, forms, tables, a slide, handwriting",
    "screenshot": "app/web screenshots and a photo of a monitor with a chest film inside",
    "ct_dicom": "CT slices (thorax, abdomen, head) as DICOM, Modality CT",
    "ct_dicom_untagged": "the CT slices as DICOM without the Modality tag",
    "ct_png": "CT slices windowed to 8-bit PNG",
    "mr_dicom": "MR slices (T1/T2 head, T2 abdomen) as DICOM, Modality MR",
    "mr_dicom_untagged": "the MR slices as DICOM without the Modality tag",
    "mr_png": "MR slices as PNG (one is matplotlib's sample MR slice)",
    "medical_acquired": "acquired CT (head, spine), MR (abdomen, head) and nuclear-medicine (bone scan) "
    "images from pydicom's test files, windowed to PNG",
    "xray_hand": "radiograph phantoms of a hand",
    "xray_knee": "radiograph phantoms of a knee",
    "xray_skull": "radiograph phantoms of a skull",
    "xray_pelvis": "radiograph phantoms of a pelvis",
    "noise": "uniform, Gaussian, salt-and-pepper, smooth, grating and blurred noise",
    "flat": "flat fields (black to white) and a gradient",
    "chest_inverted": "chest phantoms with inverted polarity",
    "chest_rotated_90": "chest phantoms rotated by 90 or 270 degrees",
    "chest_rotated_180": "chest phantoms upside down",
    "chest_corner_crop": "a corner third of a chest phantom, enlarged",
}

_CT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.2"
_MR_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.4"
_UID_ROOT = "1.2.826.0.1.3680043.10.1138."  # a fixed root: UIDs derived from the file's name and seed


class CorpusError(CxrEdgeError, ValueError):
    """The corpus cannot be built as asked (a bad count, a folder that is a file)."""


@dataclass(frozen=True)
class CorpusImage:
    category: str
    path: Path
    source: str


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _fit(image: Image.Image, side: int = SIDE) -> Image.Image:
    """Resized so that the shorter side is ``side`` (never smaller)."""
    scale = side / min(image.size)
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BILINEAR)


def _package_photos() -> list[tuple[str, Image.Image]]:
    """The photographs that installed packages ship (none of them radiographs)."""
    photos: list[tuple[str, Image.Image]] = []
    try:
        from sklearn.datasets import load_sample_image

        photos += [(name, Image.fromarray(load_sample_image(name))) for name in ("china.jpg", "flower.jpg")]
    except ImportError:
        pass
    try:
        import matplotlib.cbook

        for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png"):
            with matplotlib.cbook.get_sample_data(name) as handle:
                photos.append((name, Image.open(handle).convert("RGB")))
    except (ImportError, OSError, ValueError):
        pass
    return photos


def _photo_variant(photo: Image.Image, variant: int) -> Image.Image:
    """The whole photograph, then its centre, left and right parts (each at least 512 px)."""
    w, h = photo.size
    boxes = [
        (0, 0, w, h),
        (w // 5, h // 5, w - w // 5, h - h // 5),
        (0, 0, w * 3 // 5, h),
        (w * 2 // 5, 0, w, h),
    ]
    return _fit(photo.crop(boxes[variant % len(boxes)]))


def _matplotlib_mr() -> NDArray[np.uint8] | None:
    try:
        import matplotlib.cbook

        with matplotlib.cbook.get_sample_data("s1045.ima.gz") as handle:
            raw = handle.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (ImportError, OSError, ValueError):
        return None
    image = np.frombuffer(raw, np.uint16).astype(np.float32).reshape(256, 256)
    return np.asarray(_fit(Image.fromarray(draw.to_grey(image))))


#: Acquired (not drawn) images among pydicom's test files, shipped in its wheel: what each shows.
ACQUIRED_DICOM: tuple[tuple[str, str], ...] = (
    ("J2K_pixelrep_mismatch.dcm", "CT head, skull base (512 px, JPEG 2000)"),
    ("693_J2KI.dcm", "CT head (512 px, lossy JPEG 2000)"),
    ("CT_small.dcm", "CT thoracic spine and aorta (128 px)"),
    ("examples_overlay.dcm", "MR abdomen, liver lesion (484 x 300 px)"),
    ("MR_small.dcm", "MR head (64 px)"),
    ("JPEG2000.dcm", "nuclear-medicine whole-body bone scan (256 x 1,024 px, JPEG 2000)"),
)


def _first_value(value: object) -> float:
    """A DICOM number that may hold several values (``WindowCenter`` of 40\\40\\40): the first."""
    from pydicom.multival import MultiValue

    return float(value[0] if isinstance(value, MultiValue) else value)  # type: ignore[arg-type]


def _acquired_slices() -> list[tuple[str, str, NDArray[np.float32], tuple[float, float] | None]]:
    """pydicom's acquired test images that decode here: (file, what, values after the modality
    rescale, the file's own window or None). Read from the installed package's folder, never through
    pydicom's downloader; a file that is missing or cannot be decoded is left out."""
    try:
        import pydicom
        import pydicom.data
    except ImportError:
        return []
    folder = Path(pydicom.data.__file__).parent / "test_files"
    slices = []
    for name, what in ACQUIRED_DICOM:
        try:
            ds = pydicom.dcmread(folder / name)
            values = ds.pixel_array.astype(np.float32)
        except (OSError, ValueError, RuntimeError, AttributeError, NotImplementedError) as exc:
            logger.warning("pydicom's test file %s is left out of the corpus: %s", name, exc)
            continue
        values = values * float(ds.get("RescaleSlope", 1) or 1) + float(ds.get("RescaleIntercept", 0) or 0)
        center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
        window = None if center is None or width is None else (_first_value(center), _first_value(width))
        slices.append((name, what, values, window))
    return slices


def _acquired(out: _Writer, n: int) -> None:
    """Each acquired image windowed to 8 bits and brought to :data:`SIDE` on its shorter side: first
    at the file's own window (or its 0.5-99.5th percentiles where it has none), then at its 1-99th
    percentiles, then its centre at those, a tenth more cropped from each side each round (to 40%)."""
    slices = _acquired_slices()
    if not slices:
        return
    for i in range(n):
        name, what, values, window = slices[i % len(slices)]
        variant = i // len(slices)
        if variant >= 2:
            share = min(variant - 1, 4) / 10.0
            h, w = values.shape
            top, left = int(h * share), int(w * share)
            values = values[top : h - top, left : w - left]
        if variant == 0 and window is not None:
            center, width = window
            how = f"its own window {center:g}/{width:g}"
        else:
            low, high = np.percentile(values, (0.5, 99.5) if variant == 0 else (1.0, 99.0))
            center, width = (low + high) / 2.0, max(high - low, 1e-3)
            how = "percentile window" + (
                f", {min(variant - 1, 4) * 10}% cropped from each side" if variant >= 2 else ""
            )
        grey = _fit(Image.fromarray(draw.window(values, center, width)))
        out.png(
            "medical_acquired",
            f"{Path(name).stem}_{variant}",
            np.asarray(grey),
            f"pydicom {name}: {what}, {how}",
        )


def _chest(seed: int, index: int) -> NDArray[np.uint8]:
    """A 512 px chest phantom from a stream the phantom data sets never use."""
    from training.data.phantom import DRAWABLE_FINDINGS, render_phantom

    rng = _rng(seed, 7, index)
    count = int(rng.integers(0, 3))
    findings = tuple(rng.choice(DRAWABLE_FINDINGS, count, replace=False)) if count else ()
    view = ("PA", "AP")[index % 2]
    stream = np.random.SeedSequence(seed, spawn_key=(99, index))
    return render_phantom(findings, seed=stream, size=SIDE, view=view, female=bool(index % 3 == 1)).image


def _uid(seed: int, name: str) -> str:
    digest = int.from_bytes(name.encode("utf-8"), "big") % 10**20
    return f"{_UID_ROOT}{seed}.{digest}"


def write_dicom(
    path: Path,
    stored: NDArray[np.uint16],
    *,
    modality: str | None,
    sop_class: str,
    body_part: str,
    rescale: tuple[float, float],
    window: tuple[float, float],
    seed: int,
) -> Path:
    """A deterministic 12-bit monochrome DICOM (fixed UIDs, no dates); ``modality`` None: no tag."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, _uid(seed, path.name)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = _uid(seed, "study"), _uid(seed, path.parent.name)
    if modality is not None:
        ds.Modality = modality
        ds.BodyPartExamined = body_part
    ds.Rows, ds.Columns = (int(n) for n in stored.shape)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.RescaleSlope, ds.RescaleIntercept = rescale
    ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = np.ascontiguousarray(stored, dtype="<u2").tobytes()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = f"{_UID_ROOT}0"
    ds.file_meta = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


class _Writer:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.images: list[CorpusImage] = []

    def png(self, category: str, name: str, array: NDArray[np.uint8], source: str) -> None:
        path = self.folder / category / f"{name}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(path, compress_level=3)
        self.images.append(CorpusImage(category, path, source))

    def dicom(self, category: str, name: str, source: str, **fields: object) -> None:
        path = write_dicom(self.folder / category / f"{name}.dcm", **fields)  # type: ignore[arg-type]
        self.images.append(CorpusImage(category, path, source))


def _photos(out: _Writer, n: int) -> None:
    photos = _package_photos()
    if not photos:
        return
    for i in range(n):
        name, photo = photos[i % len(photos)]
        variant = _photo_variant(photo, i // len(photos))
        stem = f"{Path(name).stem}_{i // len(photos)}"
        out.png("photo_grey", stem, np.asarray(variant.convert("L")), f"{name}, grey")
        out.png("photo_colour", stem, np.asarray(variant), name)


def _tomography(out: _Writer, n: int, seed: int) -> None:
    regions = ("thorax", "abdomen", "head")
    for i in range(n):
        region = regions[i % 3]
        hu = draw.ct_slice(_rng(seed, 11, i), region)
        center, width = draw.CT_WINDOWS[region][(i // 3) % len(draw.CT_WINDOWS[region])]
        stored = np.clip(hu + 1024.0, 0, 4095).astype(np.uint16)
        fields = dict(
            stored=stored, sop_class=_CT_SOP_CLASS, rescale=(1.0, -1024.0), window=(center, width), seed=seed
        )
        part = {"thorax": "CHEST", "abdomen": "ABDOMEN", "head": "HEAD"}[region]
        what = f"CT {region}, window {center:g}/{width:g}"
        out.dicom("ct_dicom", f"ct_{region}_{i}", what, modality="CT", body_part=part, **fields)
        out.dicom(
            "ct_dicom_untagged",
            f"ct_{region}_{i}",
            f"{what}, no Modality",
            modality=None,
            body_part=part,
            **fields,
        )
        out.png("ct_png", f"ct_{region}_{i}", draw.window(hu, center, width), what)
    kinds = ("t1_head", "t2_head", "t2_abdomen")
    mpl_mr = _matplotlib_mr()
    for i in range(n):
        kind = kinds[i % 3]
        signal = draw.mr_slice(_rng(seed, 12, i), kind)
        stored = np.clip(signal * 4.0, 0, 4095).astype(np.uint16)
        top = float(np.percentile(stored, 99.5))
        fields = dict(
            stored=stored, sop_class=_MR_SOP_CLASS, rescale=(1.0, 0.0), window=(top / 2, top), seed=seed
        )
        part = "ABDOMEN" if kind.endswith("abdomen") else "HEAD"
        out.dicom("mr_dicom", f"mr_{kind}_{i}", f"MR {kind}", modality="MR", body_part=part, **fields)
        out.dicom(
            "mr_dicom_untagged",
            f"mr_{kind}_{i}",
            f"MR {kind}, no Modality",
            modality=None,
            body_part=part,
            **fields,
        )
        if i == 0 and mpl_mr is not None:
            out.png("mr_png", "matplotlib_s1045", mpl_mr, "matplotlib's sample MR slice s1045")
        else:
            out.png("mr_png", f"mr_{kind}_{i}", draw.to_grey(signal), f"MR {kind}")


def _radiographs(out: _Writer, n: int, seed: int) -> None:
    from training.data.phantom_bodyparts import BODY_PARTS, render_body_part

    for k, part in enumerate(BODY_PARTS):
        for i in range(n):
            image = render_body_part(part, seed=np.random.SeedSequence(seed, spawn_key=(13, k, i)), size=SIDE)
            out.png(f"xray_{part}", f"{part}_{i}", image, f"{part} radiograph phantom")
    corners = ((0, 0), (0, 1), (1, 0), (1, 1))
    third = SIDE // 3
    for i in range(n):
        chest = _chest(seed, i)
        out.png("chest_inverted", f"chest_{i}", 255 - chest, "chest phantom, inverted")
        turn = 1 if i % 2 == 0 else 3
        out.png(
            "chest_rotated_90",
            f"chest_{i}",
            np.rot90(chest, turn).copy(),
            f"chest phantom, {90 * turn} degrees",
        )
        out.png("chest_rotated_180", f"chest_{i}", np.rot90(chest, 2).copy(), "chest phantom, 180 degrees")
        row, col = corners[i % 4]
        crop = chest[
            row * (SIDE - third) : row * (SIDE - third) + third,
            col * (SIDE - third) : col * (SIDE - third) + third,
        ]
        corner = np.asarray(Image.fromarray(crop).resize((SIDE, SIDE), Image.Resampling.BICUBIC))
        out.png("chest_corner_crop", f"chest_{i}", corner, "a corner third of a chest phantom, enlarged")
        out.png(
            "screenshot",
            f"screen_{i}",
            draw.screenshot(chest, _rng(seed, 14, i), i),
            "a screen with a chest film",
        )


def _pictures(out: _Writer, n: int, seed: int) -> None:
    for i in range(n):
        out.png("document", f"page_{i}", draw.document(_rng(seed, 15, i), i), "document page")
        out.png("noise", f"noise_{i}", draw.noise(_rng(seed, 16, i), i), "noise")
        out.png("flat", f"flat_{i}", draw.flat(i), "flat field or gradient")


BUILDERS: tuple[Callable[[_Writer, int, int], None], ...] = (
    lambda out, n, seed: _photos(out, n),
    _tomography,
    lambda out, n, seed: _acquired(out, n),
    _radiographs,
    _pictures,
)


def build_corpus(
    folder: str | Path, *, seed: int = 0, per_category: int = DEFAULT_PER_CATEGORY
) -> dict[str, list[Path]]:
    """Write the corpus under ``folder``; return its files by category (in :data:`CATEGORIES` order).

    Same seed and count, same bytes. ``corpus.json`` lists every file, its category and source.
    """
    if per_category < 1:
        raise CorpusError(f"per_category={per_category}; expected at least 1 image per category")
    root = Path(folder)
    if root.exists() and not root.is_dir():
        raise CorpusError(f"corpus folder {root} is a file; expected a folder")
    out = _Writer(root)
    for builder in BUILDERS:
        builder(out, per_category, seed)
    corpus: dict[str, list[Path]] = {c: [] for c in CATEGORIES}
    for image in out.images:
        corpus[image.category].append(image.path)
    manifest = {
        "seed": seed,
        "per_category": per_category,
        "categories": CATEGORIES,
        "images": [
            {"category": i.category, "file": i.path.relative_to(root).as_posix(), "source": i.source}
            for i in out.images
        ],
    }
    (root / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return {c: paths for c, paths in corpus.items() if paths}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.ood_corpus", description=__doc__.split("\n\n")[0]
    )
    add_version(parser)
    parser.add_argument("folder", type=Path, help="where the corpus is written")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-category", type=int, default=DEFAULT_PER_CATEGORY)
    args = parser.parse_args(argv)
    corpus = build_corpus(args.folder, seed=args.seed, per_category=args.per_category)
    for category, paths in corpus.items():
        print(f"{category:<20} {len(paths):>3}  {CATEGORIES[category]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
