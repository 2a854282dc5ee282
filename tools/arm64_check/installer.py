"""Exercise the Pi installer and its systemd units as far as they go without systemd.

``install.sh --root DIR`` (its dry run) writes every file of an install below ``DIR``: the unit,
the settings file, the copied bundle and the trusted key. This module runs it in both modes, checks
the rendered units (no placeholder left, ``ExecStart`` is the venv's ``cxr-app --kiosk``, the
``EnvironmentFile`` it names was written, ``User=`` in the system unit only), reads the settings the
way systemd does, and runs ``systemd-analyze verify`` on each unit when the host has it. The caller
then verifies the *installed* bundle with the arm64 Python and only the installed trusted keys:
what the kiosk itself would load at boot.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INSTALL_SH = Path("edge_app") / "deploy" / "pi" / "install.sh"
PREFIX = "/opt/cxr-edge"
DATA_DIR = "/var/lib/cxr-edge"
#: A stick with a space in its label: the settings must keep it one path.
WATCH = "/media/pi/USB STICK/xrays"
KIOSK_USER = "kiosk"
UNIT_PATHS = {
    "kms": ("etc/systemd/system/cxr-edge-kiosk.service", "etc/default/cxr-edge-kiosk"),
    "desktop": (
        f"home/{KIOSK_USER}/.config/systemd/user/cxr-edge-kiosk.service",
        f"home/{KIOSK_USER}/.config/cxr-edge/kiosk.env",
    ),
}


def parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """A systemd unit file: section -> key -> values (a key may repeat); comments and blanks skipped."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, sep, value = line.partition("=")
        if current is None or not sep:
            current = sections.setdefault("", {})
            current.setdefault("<unparsable>", []).append(f"line {number}: {line}")
            continue
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def read_environment_file(text: str) -> dict[str, str]:
    """A systemd ``EnvironmentFile`` as systemd reads the lines install.sh writes (double quotes, escapes)."""
    values = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith(("#", ";")):
            continue
        key, _, value = line.partition("=")
        if len(value) >= 2 and value.startswith('"') and value.endswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        values[key.strip()] = value
    return values


def unit_problems(unit_text: str, mode: str, root: Path) -> list[str]:
    """What is wrong with a rendered unit of ``mode`` whose install tree is ``root`` (empty: nothing)."""
    problems = [f"placeholder {m} left in the unit" for m in sorted(set(re.findall(r"@[A-Z_]+@", unit_text)))]
    unit = parse_unit(unit_text)
    problems += [f"unparsable {line}" for line in unit.get("", {}).get("<unparsable>", [])]
    for section in ("Unit", "Service", "Install"):
        if section not in unit:
            problems.append(f"no [{section}] section")
    service = unit.get("Service", {})
    exec_start = service.get("ExecStart", [""])
    argv = exec_start[0].split()
    if len(exec_start) != 1 or not argv or argv[0] != f"{PREFIX}/venv/bin/cxr-app" or "--kiosk" not in argv:
        problems.append(f"ExecStart={exec_start}: expected one '{PREFIX}/venv/bin/cxr-app --kiosk ...'")
    for env_file in service.get("EnvironmentFile", []) or ["(none)"]:
        if not (root / env_file.lstrip("-/")).is_file():
            problems.append(f"EnvironmentFile={env_file} was not written by the dry run")
    users = service.get("User", [])
    if mode == "kms" and users != [KIOSK_USER]:
        problems.append(f"User={users}: expected [{KIOSK_USER!r}] in the system unit")
    if mode == "desktop" and users:
        problems.append(f"User={users}: a user unit must not set User=")
    if service.get("Restart") != ["on-failure"]:
        problems.append(f"Restart={service.get('Restart')}: expected on-failure")
    return problems


def systemd_verify(unit_text: str, root: Path, env_file: str, scratch: Path) -> dict[str, Any]:
    """``systemd-analyze verify`` of the unit with its paths pointed into ``root``; skipped without it."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return {"status": "skipped", "message": "systemd-analyze is not installed on this host"}
    executable = shutil.which("true") or "/bin/true"
    text = unit_text.replace(f"{PREFIX}/venv/bin/cxr-app", executable)
    text = text.replace(env_file, str(root / env_file.lstrip("/")))
    text = re.sub(r"^User=.*$", "User=root", text, flags=re.MULTILINE)  # the kiosk user exists on the Pi only
    scratch.mkdir(parents=True, exist_ok=True)
    path = scratch / "cxr-edge-kiosk.service"
    path.write_text(text)
    done = subprocess.run(
        [analyze, "verify", str(path)], capture_output=True, text=True, timeout=120, check=False
    )
    noise = [line for line in done.stderr.splitlines() if "Unknown" in line or "Failed" in line]
    ok = done.returncode == 0 and not noise
    return {"status": "pass" if ok else "fail", "message": "\n".join(noise or done.stderr.splitlines()[-5:])}


@dataclass
class InstallCheck:
    """The dry runs' results: per mode its exit status, unit problems and systemd-analyze verdict."""

    modes: dict[str, dict[str, Any]] = field(default_factory=dict)
    installed_bundle: Path | None = None
    trusted_keys: Path | None = None

    @property
    def passed(self) -> bool:
        return all(
            m["exit"] == 0 and not m["problems"] and m["systemd_analyze"]["status"] != "fail"
            for m in self.modes.values()
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "modes": self.modes,
            "installed_bundle": None if self.installed_bundle is None else str(self.installed_bundle),
            "trusted_keys": None if self.trusted_keys is None else str(self.trusted_keys),
        }


def check_installer(repo: Path, bundle: Path, work: Path, trust_key: Path | None) -> InstallCheck:
    """Run ``install.sh --root`` in kms and desktop mode under ``work`` and check what it wrote."""
    result = InstallCheck()
    for mode, (unit_rel, env_rel) in UNIT_PATHS.items():
        root = work / f"kiosk-{mode}"
        shutil.rmtree(root, ignore_errors=True)
        argv = ["bash", str(repo / INSTALL_SH), "--root", str(root), "--mode", mode, "--user", KIOSK_USER]
        argv += ["--bundle", str(bundle), "--watch", WATCH]
        if trust_key is not None:
            argv += ["--trust-key", str(trust_key)]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
        row: dict[str, Any] = {
            "exit": done.returncode,
            "problems": [],
            "output": done.stdout.splitlines()[-12:],
        }
        if done.returncode != 0:
            row["problems"].append(
                f"install.sh --root exited {done.returncode}: {done.stderr.strip()[-500:]}"
            )
            row["systemd_analyze"] = {"status": "skipped", "message": "the dry run failed"}
            result.modes[mode] = row
            continue
        unit_text = (root / unit_rel).read_text()
        row["problems"] += unit_problems(unit_text, mode, root)
        env = read_environment_file((root / env_rel).read_text())
        row["settings"] = env
        if env.get("CXR_EDGE_WATCH") != WATCH:
            row["problems"].append(f"CXR_EDGE_WATCH={env.get('CXR_EDGE_WATCH')!r}: expected {WATCH!r}")
        installed = root / DATA_DIR.lstrip("/") / "bundles" / bundle.resolve().name
        if not (installed / "manifest.json").is_file():
            row["problems"].append(f"the bundle was not installed at {installed}")
        elif mode == "kms":
            result.installed_bundle = installed
            keys = env.get("CXR_EDGE_TRUSTED_KEYS", "")
            result.trusted_keys = root / keys.lstrip("/") if keys else None
        row["systemd_analyze"] = systemd_verify(unit_text, root, "/" + env_rel, work / f"analyze-{mode}")
        result.modes[mode] = row
    return result
