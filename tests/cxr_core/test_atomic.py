"""Atomic writes keep the permissions an ordinary write would give (not mkstemp's owner-only 0600)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from cxr_core.atomic import atomic_write, current_umask


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_file_gets_the_umask_s_permissions(tmp_path: Path, umask_022: None) -> None:
    target = tmp_path / "predictions.json"
    atomic_write(target, lambda handle: handle.write(b"{}"))
    assert _mode(target) == 0o644
    assert target.read_bytes() == b"{}"


def test_a_rewrite_keeps_the_existing_file_s_permissions(tmp_path: Path, umask_022: None) -> None:
    target = tmp_path / "predictions.json"
    target.write_bytes(b"old")
    for mode in (0o664, 0o640):
        target.chmod(mode)
        atomic_write(target, lambda handle: handle.write(b"new"))
        assert _mode(target) == mode
    assert target.read_bytes() == b"new"


def test_a_private_umask_gives_a_private_file(tmp_path: Path) -> None:
    previous = os.umask(0o077)
    try:
        assert current_umask() == 0o077
        target = tmp_path / "heatmap.png"
        atomic_write(target, lambda handle: handle.write(b"x"))
    finally:
        os.umask(previous)
    assert _mode(target) == 0o600
    assert current_umask() == previous
