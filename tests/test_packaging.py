"""The distribution: ``python -m build`` makes a wheel and an sdist, and the wheel works on its own.

The slow test installs the wheel into a fresh virtual environment (no system site packages, so the
wheel's declared dependencies are all it gets), then runs ``cxr-predict`` from that environment on
a real image with the suite's tiny bundle. pip fetches numpy, Pillow and the runtime extra from the
package index or its cache; where neither is reachable the install step is skipped with the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.cxr_core.test_input_gate import chest
from tests.file_factory import write_png

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_license_is_the_apache_license_the_metadata_names() -> None:
    text = (ROOT / "LICENSE").read_text()
    assert text.lstrip().startswith("Apache License") and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text  # the full text, not a pointer to it
    project = PYPROJECT["project"]
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    assert "Apache-2.0" in (ROOT / "README.md").read_text()
    assert any(req.startswith("build") for req in project["optional-dependencies"]["dev"])


def _source_copy(target: Path) -> Path:
    """The tracked and new (not ignored) files of the checkout, so the build never writes into it."""
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
        check=False,
    )
    if listed.returncode != 0:
        pytest.skip(f"not a git checkout ({listed.stderr.strip()}); the build test copies tracked files")
    for name in listed.stdout.splitlines():
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("build", reason="the dev extra's 'build' package is not installed")
    work = tmp_path_factory.mktemp("dist")
    source = _source_copy(work / "src")
    out = work / "dist"
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(source)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out


@pytest.mark.slow
def test_sdist_and_wheel_carry_the_licence_readme_and_docs(dist: Path) -> None:
    version = PYPROJECT["project"]["version"]
    (sdist,) = dist.glob(f"cxr_edge-{version}.tar.gz")
    (wheel,) = dist.glob(f"cxr_edge-{version}-py3-none-any.whl")
    with tarfile.open(sdist) as archive:
        names = {n.split("/", 1)[1] for n in archive.getnames() if "/" in n}
    assert {"LICENSE", "README.md", "pyproject.toml", "docs/architecture.md", "docs/deploy-pi.md"} <= names
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(f"cxr_edge-{version}.dist-info/METADATA").decode()
        entry_points = archive.read(f"cxr_edge-{version}.dist-info/entry_points.txt").decode()
    assert f"cxr_edge-{version}.dist-info/licenses/LICENSE" in names
    assert "edge_app/deploy/pi/install.sh" in names and "edge_app/kv/root.kv" in names
    assert "cxr_core/py.typed" in names
    assert "License-Expression: Apache-2.0" in metadata
    for script in PYPROJECT["project"]["scripts"]:
        assert f"{script} =" in entry_points


def _clean_env() -> dict[str, str]:
    """The environment without the test run's PYTHONPATH: the fresh venv must see only itself."""
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}


def _pip(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        env=_clean_env(),
        cwd=venv,
    )


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_wheel_installs_in_a_fresh_venv_and_predicts(
    dist: Path, session_bundle: Path, tmp_path: Path
) -> None:
    (wheel,) = dist.glob("cxr_edge-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    installed = _pip(venv, "install", str(wheel))
    if installed.returncode != 0 and "No matching distribution" in installed.stdout + installed.stderr:
        pytest.skip(f"numpy/Pillow not reachable from this machine: {installed.stderr[-500:]}")
    assert installed.returncode == 0, installed.stdout[-2000:] + installed.stderr[-2000:]
    assert (venv / "bin" / "cxr-predict").is_file(), installed.stdout[-2000:]
    env = _clean_env()
    predict = venv / "bin" / "cxr-predict"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(predict), *args], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300
        )

    helped = run("--help")
    assert helped.returncode == 0 and "--bundle" in helped.stdout, helped.stderr
    if "--version" in helped.stdout:
        versioned = run("--version")
        assert versioned.returncode == 0
        assert PYPROJECT["project"]["version"] in versioned.stdout + versioned.stderr
    # The wheel's own code, not the checkout's, answers.
    where = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import cxr_core; print(cxr_core.__file__)"],
        capture_output=True, text=True, cwd=tmp_path, env=env, check=True,
    ).stdout  # fmt: skip
    assert str(venv) in where and str(ROOT) not in where
    # The runtime extra, as a device installs it: onnxruntime, and cryptography for the signature check.
    runtime = _pip(venv, "install", f"{wheel}[runtime]")
    if runtime.returncode != 0:
        pytest.skip(f"the runtime extra could not be installed here: {runtime.stderr[-500:]}")
    image = write_png(tmp_path / "scan.png", chest())
    out = tmp_path / "results.json"
    predicted = run(str(image), "--bundle", str(session_bundle), "--json", str(out))
    assert predicted.returncode == 0, predicted.stdout + predicted.stderr
    results = json.loads(out.read_text())["results"]
    assert len(results) == 1 and len(results[0]["findings"]) == 14
