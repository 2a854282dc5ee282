"""Every shell script in the repository passes shellcheck (skipped where shellcheck is not installed)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHEBANGS = (b"#!/usr/bin/env bash", b"#!/bin/bash", b"#!/bin/sh", b"#!/usr/bin/env sh")


def _shell_scripts() -> list[Path]:
    listed = subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        text=True,
        check=False,
    )
    if listed.returncode == 0:
        paths = [ROOT / line for line in listed.stdout.splitlines()]
    else:  # an unpacked sdist: no git
        paths = [p for p in ROOT.rglob("*") if ".venv" not in p.parts and ".git" not in p.parts]
    scripts = []
    for path in paths:
        if not path.is_file():
            continue
        if path.suffix == ".sh":
            scripts.append(path)
        elif path.suffix == "" and path.read_bytes()[:64].startswith(SHEBANGS):
            scripts.append(path)
    return sorted(scripts)


SCRIPTS = _shell_scripts()


def test_the_scripts_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in SCRIPTS}
    assert {"edge_app/deploy/pi/install.sh", ".ci/run"} <= names


@pytest.mark.skipif(
    shutil.which("shellcheck") is None, reason="shellcheck is not installed (apt-get install shellcheck)"
)
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_shellcheck(script: Path) -> None:
    result = subprocess.run(["shellcheck", "--severity=warning", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
