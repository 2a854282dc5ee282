"""Fixtures for edge-bench tests: a tiny labelled image set, bundle copies to damage, and one full run.

The full run (``loose_run``) is edge-bench end to end on the suite's tiny bundle: both ONNX
formats at 1 and 2 threads, the PyTorch reference, ``--data``, ``--profile`` and every gate set
loose; several tests read its files, so it runs once per session.
"""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from cxr_core.bundle import sha256_file
from cxr_core.labels import CHESTXRAY14_LABELS
from tests.file_factory import write_png
from tests.signing import resign

EVAL_IMAGES = 16
#: The inputs gate refuses images under 256 px; the e2e split reads these files too.
EVAL_SIDE = 256


def write_labels_csv(path: Path, names: Sequence[str], labels: np.ndarray) -> Path:
    """A wide labels CSV: ``path`` column plus one 0/1 column per ChestX-ray14 finding."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", *CHESTXRAY14_LABELS])
        for name, row in zip(names, labels, strict=True):
            writer.writerow([name, *(str(int(v)) for v in row)])
    return path


@pytest.fixture(scope="session")
def eval_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """16 real 256 px grey PNGs (gradient, blob, noise) and labels.csv with both classes per finding."""
    root = tmp_path_factory.mktemp("eval")
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[0:EVAL_SIDE, 0:EVAL_SIDE] / EVAL_SIDE
    names = []
    for i in range(EVAL_IMAGES):
        cy, cx = rng.uniform(0.2, 0.8, size=2)
        image = (
            0.3 * yy + 0.5 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 0.03) + 0.1 * rng.random(yy.shape)
        )
        names.append(f"img_{i:02d}.png")
        write_png(root / names[-1], np.clip(image, 0, 1))
    labels = (np.arange(len(CHESTXRAY14_LABELS))[None, :] + np.arange(EVAL_IMAGES)[:, None]) % 2
    write_labels_csv(root / "labels.csv", names, labels)
    return root


def rehash(bundle: Path, file_name: str) -> None:
    """Record ``file_name``'s new sha256 and size in the bundle manifest (a deliberately altered file)."""
    manifest_path = bundle / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    digest, size = sha256_file(bundle / file_name), (bundle / file_name).stat().st_size
    manifest["files"][file_name] = {"sha256": digest, "size_bytes": size}
    for model in manifest["models"]:
        if model["file"] == file_name:
            model["sha256"], model["size_bytes"] = digest, size
    manifest_path.write_text(json.dumps(manifest, indent=1))
    resign(bundle)


@dataclass
class Run:
    """One edge-bench invocation: exit code, captured output and its out folder."""

    code: int
    stdout: str
    stderr: str
    out: Path

    @property
    def results(self) -> dict:
        return json.loads((self.out / "results.json").read_text())


RunBench = Callable[[list[str], Path], Run]


@pytest.fixture(scope="session")
def run_bench() -> RunBench:
    """``run(argv, out)``: ``python -m benchmarks`` (= edge-bench) in a subprocess, like a user's shell."""
    import subprocess
    import sys

    def run(argv: list[str], out: Path) -> Run:
        done = subprocess.run(
            [sys.executable, "-m", "benchmarks", *argv, "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        return Run(done.returncode, done.stdout, done.stderr, out)

    return run


FAST = ["--runs", "5", "--warmup", "1", "--idle-seconds", "0", "--quiet"]


@pytest.fixture(scope="session")
def loose_run(
    session_bundle: Path,
    eval_dir: Path,
    checkpoint_factory: Callable[[str], Path],
    tmp_path_factory: pytest.TempPathFactory,
    run_bench: RunBench,
) -> Run:
    """edge-bench end to end with every option and loose gates (expected to pass, exit 0)."""
    out = tmp_path_factory.mktemp("bench") / "loose"
    argv = [
        str(session_bundle),
        *FAST,
        "--threads",
        "1,2",
        "--data",
        str(eval_dir),
        "--reference-torch",
        str(checkpoint_factory("chexnet")),
        "--profile",
        "--e2e-images",
        "1",
        "--e2e-repeats",
        "1",
        "--device-name",
        "laptop",
        "--fail-under",
        "0.0",
        "--max-auc-drop",
        "1.0",
        "--max-dp",
        "1.0",
        "--min-agreement",
        "0.0",
    ]
    return run_bench(argv, out)


@pytest.fixture
def bundle_copy_factory(session_bundle: Path, tmp_path: Path) -> Callable[[str], Path]:
    """``copy(name)``: a private copy of the session bundle that a test may alter."""

    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copytree(session_bundle, target)
        return target

    return copy
