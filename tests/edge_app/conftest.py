"""Fixtures of the app tests: Kivy's environment and real image files.

Kivy reads these variables when it is first imported, so they are set here, before any test
module imports it: SDL's ``offscreen`` driver gives a real OpenGL context (Mesa) without an X
server; no Kivy config file, log file or command-line parsing; a private KIVY_HOME.

The tests that open the real window live in ``window/`` and run in a child process started by
``test_app_window.py``: TensorFlow 2.21 (imported by the .tflite fixtures of other test packages)
and Mesa's OpenGL cannot share a process here, in either order -- TensorFlow imported after a GL
context segfaults in its own import, and a window created after TensorFlow segfaults in Mesa's
LLVM-based llvmpipe driver (the software renderer without LLVM, softpipe, works but made these
tests ten times slower). The child collects ``window/`` because it sets ``CXR_EDGE_WINDOW_TESTS=1``;
to run them directly: ``CXR_EDGE_WINDOW_TESTS=1 pytest tests/edge_app/window``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

from edge_app.headless import prepare_environment

# The same offscreen settings the screenshot tool and the window tests' child use (edge_app.headless),
# in a private Kivy home removed when the test process ends.
_KIVY_HOME = tempfile.mkdtemp(prefix="cxr-edge-kivy-home-")
atexit.register(shutil.rmtree, _KIVY_HOME, True)
prepare_environment(_KIVY_HOME)

#: Set in the child process that runs the window tests (see the module docstring).
WINDOW_ENV = "CXR_EDGE_WINDOW_TESTS"
#: The parent's tiny bundle, handed to the child so it is not exported twice.
BUNDLE_ENV = "CXR_EDGE_TEST_BUNDLE"
#: The parent's gated bundle (every learned-gate signal fitted at export), for the "score anyway" tests.
GATED_BUNDLE_ENV = "CXR_EDGE_TEST_GATED_BUNDLE"
collect_ignore = [] if os.environ.get(WINDOW_ENV) == "1" else ["window"]

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tests.file_factory import write_dicom, write_jpeg, write_png  # noqa: E402

#: Radiograph-like test images are this size: above the input gate's 256 px minimum, still tiny.
HEIGHT, WIDTH = 320, 288


def radiograph(height: int = HEIGHT, width: int = WIDTH, seed: int = 0) -> np.ndarray:
    """A grey, chest-film-like image in [0, 1]: dark lung fields, a bright mediastinum, soft noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    y, x = yy / height, xx / width
    lungs = np.exp(-(((x - 0.3) / 0.16) ** 2 + ((y - 0.5) / 0.3) ** 2)) + np.exp(
        -(((x - 0.7) / 0.16) ** 2 + ((y - 0.5) / 0.3) ** 2)
    )
    mediastinum = 0.15 * np.exp(-(((x - 0.5) / 0.08) ** 2))
    image = 0.75 - 0.45 * lungs + mediastinum + 0.01 * rng.random((height, width))
    return np.clip(image, 0.0, 1.0)


@pytest.fixture(scope="session")
def image_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Real files, one per case the app must handle."""
    root = tmp_path_factory.mktemp("app_images")
    grey = radiograph()
    files = {
        "png": write_png(root / "chest_pa.png", grey),
        "dicom": write_dicom(root / "chest_dx.dcm", (grey * 4095).astype(np.uint16), bits_stored=12),
        "lateral": write_dicom(root / "chest_lat.dcm", (grey * 4095).astype(np.uint16), view="LL"),
        "ct": write_dicom(
            root / "head_ct.dcm", (grey * 4095).astype(np.uint16), modality="CT", body_part="HEAD"
        ),
    }
    rng = np.random.default_rng(1)
    photo = np.stack([grey, rng.random(grey.shape) * 0.3, 1.0 - grey], axis=-1)  # strongly coloured
    files["photo"] = write_jpeg(root / "holiday.jpg", photo)
    files["bad"] = root / "not_an_image.png"
    files["bad"].write_text("this is a text file, not a PNG\n", encoding="utf-8")
    return files


def alter_golden(bundle: Path, rehash: bool) -> Path:
    """Change the golden reference of ``bundle`` (a test's copy) so no model can match it.

    The reference probabilities become ``1 - p``. With ``rehash`` the manifest's sha256 of
    ``golden.npz`` is updated too -- a consistent bundle whose reference disagrees with its models,
    which only running the models shows -- else the bundle fails its integrity check.
    """
    import json

    from cxr_core.bundle import sha256_file

    golden = bundle / "golden.npz"
    with np.load(golden) as data:
        arrays = {key: data[key] for key in data.files}
    arrays["probabilities"] = (1.0 - arrays["probabilities"]).astype(arrays["probabilities"].dtype)
    with golden.open("wb") as handle:
        np.savez(handle, **arrays)
    if rehash:
        manifest_path = bundle / "manifest.json"
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        record = manifest["files"]["golden.npz"]
        digest = sha256_file(golden)
        manifest["files"]["golden.npz"] = {**record, "sha256": digest} if isinstance(record, dict) else digest
        manifest_path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        from tests.signing import resign

        resign(bundle)
    return golden
