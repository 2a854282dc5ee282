"""The Raspberry Pi kiosk files: install.sh's dry run, and the systemd unit it renders."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

PI_DIR = Path(__file__).resolve().parents[2] / "edge_app" / "deploy" / "pi"
INSTALL = PI_DIR / "install.sh"


def _install(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(INSTALL), *args], capture_output=True, text=True, timeout=60)


def test_script_syntax() -> None:
    assert subprocess.run(["bash", "-n", str(INSTALL)], capture_output=True).returncode == 0


def test_dry_run_kms(tmp_path: Path, session_bundle: Path) -> None:
    root = tmp_path / "root"
    result = _install(
        "--root",
        str(root),
        "--mode",
        "kms",
        "--user",
        "kiosk",
        "--bundle",
        str(session_bundle),
        "--watch",
        "/media/xrays",
        "--idle-reset",
        "90",
    )
    assert result.returncode == 0, result.stderr
    unit = (root / "etc/systemd/system/cxr-edge-kiosk.service").read_text()
    assert "User=kiosk" in unit
    assert "ExecStart=/opt/cxr-edge/venv/bin/cxr-app --kiosk $CXR_EDGE_APP_ARGS" in unit
    assert "EnvironmentFile=/etc/default/cxr-edge-kiosk" in unit
    assert not any(mark in unit for mark in ("@USER@", "@PREFIX@", "@ENV_FILE@"))
    settings = (root / "etc/default/cxr-edge-kiosk").read_text()
    assert "CXR_EDGE_APP_ARGS=--watch /media/xrays --idle-reset 90" in settings
    assert "SDL_VIDEODRIVER=kmsdrm" in settings and "CXR_EDGE_DATA_DIR=/var/lib/cxr-edge" in settings
    installed = root / "var/lib/cxr-edge/bundles" / session_bundle.name
    assert sorted(p.name for p in installed.iterdir()) == sorted(p.name for p in session_bundle.iterdir())


def test_dry_run_desktop(tmp_path: Path) -> None:
    root = tmp_path / "root"
    result = _install("--root", str(root), "--mode", "desktop", "--user", "nobody-here")
    assert result.returncode == 0, result.stderr
    home = root / "home" / "nobody-here"
    unit = (home / ".config/systemd/user/cxr-edge-kiosk.service").read_text()
    assert "WantedBy=graphical-session.target" in unit and "User=" not in unit
    settings = (home / ".config/cxr-edge/kiosk.env").read_text()
    assert "SDL_VIDEODRIVER" not in settings and "--idle-reset 120" in settings


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--idle-reset", "soon"], "not a number of seconds"),
        (["--mode", "x11"], "expected kms or desktop"),
        (["--frobnicate"], "unknown option"),
    ],
)
def test_bad_options(tmp_path: Path, args: list[str], message: str) -> None:
    result = _install("--root", str(tmp_path), *args)
    assert result.returncode == 1 and message in result.stderr


def test_bundle_that_is_not_one(tmp_path: Path) -> None:
    result = _install("--root", str(tmp_path), "--bundle", str(tmp_path))
    assert result.returncode == 1 and "has no manifest.json" in result.stderr


def test_rendered_unit_passes_systemd_analyze(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here")
    root = tmp_path / "root"
    assert _install("--root", str(root), "--mode", "kms", "--user", "root").returncode == 0
    unit = (root / "etc/systemd/system/cxr-edge-kiosk.service").read_text()
    # systemd-analyze checks that ExecStart exists and the EnvironmentFile path: point them here.
    executable = shutil.which("cxr-app") or shutil.which("true")
    unit = unit.replace("/opt/cxr-edge/venv/bin/cxr-app", str(executable))
    unit = unit.replace("/etc/default/cxr-edge-kiosk", str(root / "etc/default/cxr-edge-kiosk"))
    path = tmp_path / "cxr-edge-kiosk.service"
    path.write_text(unit)
    result = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Unknown key" not in result.stderr and "Unknown section" not in result.stderr


def test_trust_key_installs_the_exporters_key_for_the_kiosk(
    tmp_path: Path, session_bundle: Path, suite_keys: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kiosk trusts exactly the keys given with --trust-key; its bundle then loads there."""
    import os

    from cxr_core.bundle import load_bundle
    from cxr_core.bundle.signing import BundleUntrustedKeyError

    public = Path(os.environ["CXR_EDGE_KEY_DIR"]) / "signing-key.pub"
    root = tmp_path / "root"
    result = _install(
        "--root", str(root), "--mode", "kms", "--bundle", str(session_bundle), "--trust-key", str(public)
    )
    assert result.returncode == 0, result.stderr
    settings = (root / "etc/default/cxr-edge-kiosk").read_text()
    assert "CXR_EDGE_TRUSTED_KEYS=/var/lib/cxr-edge/trusted-keys" in settings
    assert "ORT_DISABLE_TELEMETRY=1" in settings
    trusted = root / "var/lib/cxr-edge/trusted-keys"
    assert [p.name for p in trusted.iterdir()] == [f"{suite_keys}.pub"]
    installed = root / "var/lib/cxr-edge/bundles" / session_bundle.name
    monkeypatch.setenv("CXR_EDGE_TRUSTED_KEYS", str(trusted))
    assert load_bundle(installed).trust.key_id == suite_keys
    monkeypatch.setenv("CXR_EDGE_TRUSTED_KEYS", str(tmp_path / "none"))
    with pytest.raises(BundleUntrustedKeyError):
        load_bundle(installed)


def test_trust_key_refuses_a_file_that_is_not_a_key(tmp_path: Path) -> None:
    bogus = tmp_path / "key.pub"
    bogus.write_text("ssh-ed25519 AAAA user@host\n")
    result = _install("--root", str(tmp_path / "root"), "--trust-key", str(bogus))
    assert result.returncode == 1 and "is not a cxr-edge public key" in result.stderr
