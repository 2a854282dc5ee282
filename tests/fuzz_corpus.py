"""A fuzz corpus of damaged PNG, JPEG and DICOM files, and the "tried / handled / crashed / silent" table.

Two kinds of cases:

* **crafted**: a named, deliberately damaged file (a JPEG truncated at 40 % with its end marker put
  back, a DICOM whose WindowWidth is NaN, ...). Every crafted case is damaged: scoring it is wrong.
* **mutated**: a valid file with a few bytes flipped, inserted, deleted or the tail cut off
  (seeded, reproducible). A mutated file may still be a faithful image (a flipped byte in a comment);
  it counts as *silent* only when it decodes to pixels that differ from the original's.

Each case goes through the device path up to the model input: decode, the input gate, preprocess.
Outcomes: *handled* (a :class:`~cxr_core.errors.CxrEdgeError` naming the problem), *crashed* (any
other exception), *silent* (a damaged image reached the model input), *intact* (a mutated file that
decodes to the original pixels, or was refused for another good reason before decoding).

Run ``python -m tests.fuzz_corpus [--mutations 100] [--seed 15]`` to print the table.
"""

from __future__ import annotations

import argparse
import io
import random
import tempfile
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from tests.file_factory import write_dicom


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # "crafted" | "mutated"
    fmt: str  # png | jpeg | dicom
    data: bytes
    suffix: str
    original: str | None = None  # the base image's key for mutated cases


def texture(height: int = 320, width: int = 288, seed: int = 0) -> NDArray[np.uint8]:
    """A smooth ramp plus blobs and mild noise: every JPEG block and PNG row carries information."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    img = 0.5 * x / width + 0.3 * y / height
    img += 0.15 * np.sin(x / 9.0) * np.cos(y / 13.0)
    img += rng.normal(0, 0.02, size=img.shape).astype(np.float32)
    return np.clip(img * 255, 0, 255).astype(np.uint8)


def png_bytes(arr: NDArray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(arr: NDArray, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90, **kwargs)
    return buf.getvalue()


def dicom_bytes(arr: NDArray, **kwargs: Any) -> bytes:
    import pydicom.config

    old = pydicom.config.settings.writing_validation_mode
    pydicom.config.settings.writing_validation_mode = pydicom.config.IGNORE
    try:
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            path = write_dicom(Path(tmp) / "x.dcm", arr, **kwargs)
            return path.read_bytes()
    finally:
        pydicom.config.settings.writing_validation_mode = old


def base_images() -> dict[str, tuple[str, bytes, str]]:
    """The valid originals: key -> (format, bytes, suffix)."""
    grey = texture()
    twelve = (grey.astype(np.uint16) * 16).astype(np.uint16)
    return {
        "png": ("png", png_bytes(grey), ".png"),
        "jpeg": ("jpeg", jpeg_bytes(grey), ".jpg"),
        "jpeg-progressive": ("jpeg", jpeg_bytes(grey, progressive=True), ".jpg"),
        "dicom": ("dicom", dicom_bytes(twelve, window=(2048, 4096)), ".dcm"),
    }


# ----------------------------------------------------------------------------- crafted cases


def _truncate_with_end(data: bytes, fraction: float, end: bytes) -> bytes:
    return data[: max(1, int(len(data) * fraction))] + end


def _png_chunk(ctype: bytes, payload: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(payload)) + ctype + payload + struct.pack(">I", zlib.crc32(ctype + payload))


def _png_bad_idat_crc(data: bytes) -> bytes:
    at = data.index(b"IDAT") + 4 + 20
    return data[:at] + bytes([data[at] ^ 0x55]) + data[at + 1 :]


def _replace_vr(data: bytes, tag: bytes, old_vr: bytes, new_vr: bytes) -> bytes:
    needle = tag + old_vr
    assert needle in data, f"{needle!r} not in DICOM bytes"
    return data.replace(needle, tag + new_vr, 1)


def _set_raw(data: bytes, tag: tuple[int, int], vr: bytes, value: bytes) -> bytes:
    """Replace the value of the explicit-VR little-endian element ``tag`` with raw ``value`` bytes."""
    import struct

    head = struct.pack("<HH", *tag) + vr
    at = data.index(head)
    (length,) = struct.unpack("<H", data[at + 6 : at + 8])
    if len(value) % 2:
        value += b" " if vr not in (b"US", b"OB", b"OW") else b"\x00"
    return data[: at + 6] + struct.pack("<H", len(value)) + value + data[at + 8 + length :]


_TAGS = {
    "WindowCenter": ((0x0028, 0x1050), b"DS"),
    "WindowWidth": ((0x0028, 0x1051), b"DS"),
    "RescaleIntercept": ((0x0028, 0x1052), b"DS"),
    "RescaleSlope": ((0x0028, 0x1053), b"DS"),
    "NumberOfFrames": ((0x0028, 0x0008), b"IS"),
    "Rows": ((0x0028, 0x0010), b"US"),
    "Columns": ((0x0028, 0x0011), b"US"),
}


def crafted_cases() -> Iterator[Case]:
    """Named damaged files, the issue's list and more (about 80)."""
    grey = texture()
    twelve = (grey.astype(np.uint16) * 16).astype(np.uint16)
    jpeg, png = jpeg_bytes(grey), png_bytes(grey)
    prog = jpeg_bytes(grey, progressive=True)
    for pct in range(10, 100, 10):
        yield Case(
            f"jpeg truncated {pct}% + EOI",
            "crafted",
            "jpeg",
            _truncate_with_end(jpeg, pct / 100, b"\xff\xd9"),
            ".jpg",
        )
        yield Case(f"jpeg truncated {pct}%", "crafted", "jpeg", jpeg[: int(len(jpeg) * pct / 100)], ".jpg")
        yield Case(
            f"progressive jpeg truncated {pct}% + EOI",
            "crafted",
            "jpeg",
            _truncate_with_end(prog, pct / 100, b"\xff\xd9"),
            ".jpg",
        )
        cut = _truncate_with_end(png, pct / 100, b"")
        yield Case(f"png truncated {pct}%", "crafted", "png", cut, ".png")
        yield Case(f"png truncated {pct}% + IEND", "crafted", "png", cut + _png_chunk(b"IEND", b""), ".png")
    yield Case("png IDAT crc damaged", "crafted", "png", _png_bad_idat_crc(png), ".png")
    at = jpeg.index(b"\xff\xda") + 40
    yield Case("jpeg scan bytes zeroed", "crafted", "jpeg", jpeg[:at] + bytes(400) + jpeg[at + 400 :], ".jpg")

    def dcm(name: str, raw: dict[str, bytes] | None = None, **kwargs: Any) -> Case:
        data = dicom_bytes(twelve, **kwargs)
        for keyword, value in (raw or {}).items():
            tag, vr = _TAGS[keyword]
            data = _set_raw(data, tag, vr, value)
        return Case(name, "crafted", "dicom", data, ".dcm")

    nan, inf = float("nan"), float("inf")
    for label, value in (
        ("NaN", "nan"),
        ("inf", "inf"),
        ("-inf", "-inf"),
        ("text", "abc"),
        ("1e30", "1e30"),
        ("0", "0"),
        ("-5", "-5"),
    ):
        yield dcm(f"dicom WindowWidth {label}", window=(2048, 4096), raw={"WindowWidth": value.encode()})
    for label, value in (("NaN", "nan"), ("inf", "inf"), ("text", "abc"), ("1e30", "1e30")):
        yield dcm(f"dicom WindowCenter {label}", window=(2048, 4096), raw={"WindowCenter": value.encode()})
    for label, value in (("NaN", "nan"), ("inf", "inf"), ("text", "abc"), ("0", "0"), ("1e30", "1e30")):
        yield dcm(f"dicom RescaleSlope {label}", rescale=(1.0, 0.0), raw={"RescaleSlope": value.encode()})
    for label, value in (("NaN", "nan"), ("inf", "inf"), ("text", "abc")):
        yield dcm(
            f"dicom RescaleIntercept {label}", rescale=(1.0, 0.0), raw={"RescaleIntercept": value.encode()}
        )
    yield dcm("dicom Rows empty", raw={"Rows": b""})
    yield dcm("dicom Columns empty", raw={"Columns": b""})
    yield dcm("dicom Rows smaller than pixel data", overrides={"Rows": 256})
    yield dcm("dicom Rows larger than pixel data", overrides={"Rows": 400})
    yield dcm("dicom Columns smaller than pixel data", overrides={"Columns": 270})
    yield dcm("dicom pixel data 1 byte short", overrides={"PixelData": twelve.tobytes()[:-2]})
    yield dcm("dicom pixel data half", overrides={"PixelData": twelve.tobytes()[: twelve.nbytes // 2]})
    yield dcm("dicom pixel data doubled", overrides={"PixelData": twelve.tobytes() * 2})
    yield dcm("dicom VOI LUT 0 bits", voi_lut=(0, 0, list(range(4096))))
    yield dcm("dicom VOI LUT 40 bits", voi_lut=(0, 40, list(range(4096))))
    yield dcm("dicom VOI LUT empty data", voi_lut=(0, 16, []))
    yield dcm("dicom NumberOfFrames text", overrides={"NumberOfFrames": "1"}, raw={"NumberOfFrames": b"abc"})
    yield dcm("dicom NumberOfFrames 0", overrides={"NumberOfFrames": "0"})
    yield dcm("dicom NumberOfFrames -1", overrides={"NumberOfFrames": "-1"})
    yield dcm("dicom NumberOfFrames 1.5", overrides={"NumberOfFrames": "1"}, raw={"NumberOfFrames": b"1.5"})
    yield dcm("dicom BitsStored 0", overrides={"BitsStored": 0})
    yield dcm("dicom BitsStored 40", overrides={"BitsStored": 40})
    yield dcm("dicom BitsAllocated 12", overrides={"BitsAllocated": 12})
    yield dcm("dicom BitsAllocated 0", overrides={"BitsAllocated": 0})
    yield dcm("dicom SamplesPerPixel 0", overrides={"SamplesPerPixel": 0})
    yield dcm("dicom PixelRepresentation 7", overrides={"PixelRepresentation": 7})
    yield dcm("dicom PhotometricInterpretation empty", overrides={"PhotometricInterpretation": ""})
    data = dicom_bytes(twelve, overrides={"Manufacturer": "ACME"})
    yield Case(
        "dicom unknown VR XX",
        "crafted",
        "dicom",
        _replace_vr(data, b"\x08\x00\x70\x00", b"LO", b"XX"),
        ".dcm",
    )
    windowed = dicom_bytes(twelve, window=(2048, 4096))
    yield Case(
        "dicom WindowWidth VR XX",
        "crafted",
        "dicom",
        _replace_vr(windowed, b"\x28\x00\x51\x10", b"DS", b"XX"),
        ".dcm",
    )
    yield Case("dicom truncated 60%", "crafted", "dicom", data[: int(len(data) * 0.6)], ".dcm")
    yield Case("dicom truncated in header", "crafted", "dicom", data[:300], ".dcm")
    data = dicom_bytes(twelve, voi_lut=(0, 16, list(range(0, 65536, 16))))
    desc = b"\x28\x00\x02\x30US\x06\x00"  # (0028,3002) LUTDescriptor, 3 x US
    if desc in data:
        at = data.index(desc)
        yield Case(
            "dicom VOI LUT descriptor 2 values (raw)",
            "crafted",
            "dicom",
            data[:at] + b"\x28\x00\x02\x30US\x04\x00" + data[at + 8 : at + 12] + data[at + 14 :],
            ".dcm",
        )
    del nan, inf


# ----------------------------------------------------------------------------- mutated cases


def mutate(data: bytes, rng: random.Random) -> bytes:
    """Flip, overwrite, insert or delete a few bytes past the signature, or cut the tail."""
    out = bytearray(data)
    op = rng.choice(("flip", "flip", "overwrite", "insert", "delete", "truncate"))
    start = min(16, len(out) - 1)
    if op == "truncate":
        return bytes(out[: rng.randrange(start, len(out))])
    for _ in range(rng.randint(1, 8)):
        at = rng.randrange(start, len(out))
        if op == "flip":
            out[at] ^= 1 << rng.randrange(8)
        elif op == "overwrite":
            out[at] = rng.randrange(256)
        elif op == "insert":
            out[at:at] = bytes([rng.randrange(256)])
        else:
            del out[at]
    return bytes(out)


def mutated_cases(count: int, seed: int) -> Iterator[Case]:
    rng = random.Random(seed)
    bases = base_images()
    keys = sorted(bases)
    for i in range(count):
        key = keys[i % len(keys)]
        fmt, data, suffix = bases[key]
        yield Case(f"{key} mutation {i}", "mutated", fmt, mutate(data, rng), suffix, original=key)


# ----------------------------------------------------------------------------- classification


def model_input(path: Path) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Decode, gate and preprocess ``path``: (decoded pixels, model input)."""
    from cxr_core.imaging import decode_image
    from cxr_core.input_gate import InputGate
    from cxr_core.preprocess import PreprocessSpec, preprocess

    decoded = decode_image(path)
    InputGate().enforce(decoded, path)
    return decoded.pixels, preprocess(decoded.pixels, PreprocessSpec())


def classify(case: Case, folder: Path, originals: dict[str, NDArray[np.float32]]) -> tuple[str, str]:
    """(outcome, detail) for one case; outcome is handled, crashed, silent or intact."""
    from cxr_core.errors import CxrEdgeError

    path = folder / f"case{abs(hash(case.name)) % 10**8}{case.suffix}"
    path.write_bytes(case.data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pixels, _ = model_input(path)
    except CxrEdgeError as exc:
        return "handled", f"{type(exc).__name__}: {exc}"[:160]
    except Exception as exc:  # noqa: BLE001 - counting crashes is the point
        return "crashed", f"{type(exc).__name__}: {exc}"[:160]
    finally:
        path.unlink(missing_ok=True)
    if case.kind == "crafted":
        return "silent", "scored a damaged file"
    original = originals[str(case.original)]
    if pixels.shape == original.shape and np.array_equal(pixels, original):
        return "intact", "decodes to the original pixels"
    material = f"{material_change(pixels, original):.1%} by > 8/255"
    if pixels.shape == original.shape and np.mean(np.abs(pixels - original) > 1 / 255) <= 0.01:
        return "silent-minor", f"differs from the original in <= 1% of pixels, {material}"
    changed = 1.0 if pixels.shape != original.shape else float(np.mean(pixels != original))
    return "silent", f"{changed:.0%} of pixels differ from the original, {material}"


def material_change(pixels: NDArray[np.float32], original: NDArray[np.float32]) -> float:
    """Share of pixels that differ from the original by more than 8 grey levels of 255 (1.0 when the
    size changed): how much of the image a damaged file that was scored actually changed."""
    if pixels.shape != original.shape:
        return 1.0
    return float(np.mean(np.abs(pixels - original) > 8 / 255))


def run_corpus(
    mutations: int = 300,
    seed: int = 15,
    on_case: Callable[[Case, str, str], None] | None = None,
    by_format: bool = False,
) -> dict[str, Counter[str]]:
    """Classify every case; return ``{"crafted": Counter, "mutated": Counter}`` (or one row per kind and
    format, e.g. ``"mutated jpeg"``, with ``by_format``)."""
    table: dict[str, Counter[str]] = {} if by_format else {"crafted": Counter(), "mutated": Counter()}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        originals: dict[str, NDArray[np.float32]] = {}
        for key, (_fmt, data, suffix) in base_images().items():
            path = folder / f"original{suffix}"
            path.write_bytes(data)
            originals[key] = model_input(path)[0]
        cases = [*crafted_cases(), *mutated_cases(mutations, seed)]
        for case in cases:
            outcome, detail = classify(case, folder, originals)
            row = f"{case.kind} {case.fmt}" if by_format else case.kind
            table.setdefault(row, Counter())
            table[row][outcome] += 1
            table[row]["tried"] += 1
            if on_case is not None:
                on_case(case, outcome, detail)
    return table


def changed_summary(details: dict[str, list[float]]) -> str:
    """One line per format: how much the scored mutated files changed (share of pixels > 8/255)."""
    lines = []
    for fmt, values in sorted(details.items()):
        if values:
            arr = np.sort(np.asarray(values))
            lines.append(
                f"{fmt}: {len(arr)} damaged files scored (silent + silent-minor); pixels changed by > 8/255: "
                f"median {np.median(arr):.1%}, max {arr[-1]:.1%}, "
                f"{int(np.sum(arr > 0.01))} of them > 1%, {int(np.sum(arr > 0.10))} > 10%"
            )
    return "\n".join(lines)


def format_table(table: dict[str, Counter[str]]) -> str:
    cols = ("tried", "handled", "crashed", "silent", "silent-minor", "intact")
    lines = [f"| {'corpus':<14} | " + " | ".join(f"{c:>12}" for c in cols) + " |"]
    lines.append("|" + "-" * 16 + "|" + "|".join("-" * 14 for _ in cols) + "|")
    for kind, counts in table.items():
        lines.append(f"| {kind:<14} | " + " | ".join(f"{counts[c]:>12}" for c in cols) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mutations", type=int, default=300)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--by-format", action="store_true", help="one row per kind and format")
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per non-handled case")
    args = parser.parse_args(argv)

    changed: dict[str, list[float]] = {}

    def show(case: Case, outcome: str, detail: str) -> None:
        if args.verbose and outcome in ("crashed", "silent"):
            print(f"{outcome:8} {case.name}: {detail}")
        if case.kind == "mutated" and outcome in ("silent", "silent-minor"):
            changed.setdefault(case.fmt, []).append(_changed_share(detail))

    print(format_table(run_corpus(args.mutations, args.seed, show, args.by_format)))
    print(changed_summary(changed))
    return 0


def _changed_share(detail: str) -> float:
    """The '> 8/255' share ``classify`` wrote at the end of a silent or silent-minor case's detail."""
    return float(detail.rsplit(", ", 1)[1].split("%")[0]) / 100


if __name__ == "__main__":
    raise SystemExit(main())
