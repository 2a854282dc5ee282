"""The Raspberry Pi kiosk files: install.sh's dry run, and the systemd unit it renders."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from edge_app.options import WATCH_ENV, parse_args

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
    assert "Environment=OPENBLAS_NUM_THREADS=1" in unit  # the gate's BLAS product on one thread
    assert not any(mark in unit for mark in ("@USER@", "@PREFIX@", "@ENV_FILE@"))
    settings = (root / "etc/default/cxr-edge-kiosk").read_text()
    assert "CXR_EDGE_APP_ARGS=--idle-reset 90" in settings
    assert 'CXR_EDGE_WATCH="/media/xrays"' in settings
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


def _environment_file(path: Path) -> dict[str, str]:
    """Read a systemd EnvironmentFile the way systemd does for our lines (double quotes, escapes)."""
    values = {}
    for line in path.read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        if value.startswith('"') and value.endswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        values[key] = value
    return values


def test_watch_folder_with_spaces_stays_one_path(tmp_path: Path) -> None:
    root = tmp_path / "root"
    watch = '/media/usb stick/x "rays" $HOME'
    result = _install("--root", str(root), "--mode", "kms", "--watch", watch)
    assert result.returncode == 0, result.stderr
    settings = _environment_file(root / "etc/default/cxr-edge-kiosk")
    assert settings["CXR_EDGE_WATCH"] == watch
    assert "--watch" not in settings["CXR_EDGE_APP_ARGS"]
    # The app takes the folder from the environment as one path.
    options = parse_args(["--kiosk"], environ={WATCH_ENV: settings["CXR_EDGE_WATCH"]})
    assert options.watch == Path(watch)
    assert parse_args(["--watch", "/other"], environ={WATCH_ENV: watch}).watch == Path("/other")


def test_install_without_source_is_refused_outside_a_dry_run(tmp_path: Path) -> None:
    # Outside --root the script needs root and aarch64 first; the --source check comes before both.
    result = _install("--bundle", str(tmp_path / "missing"))
    assert result.returncode == 1
    assert "--source is required" in result.stderr and "not published" in result.stderr


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
