"""Build (once) and cache an arm64 root: Debian bookworm's python3.11 and the ``[pi]`` extra's wheels.

Nothing is installed on the host and no root rights are needed: apt runs with a private state folder
in the cache (its own ``sources.list``, package lists and archive; ``APT::Architecture=arm64``) and
only downloads; the ``.deb`` files are unpacked with ``dpkg-deb -x``. The aarch64 wheels come from
``pip download --platform manylinux_2_*_aarch64 --python-version 3.11 --only-binary=:all:`` and are
unzipped into ``site/``. The only network is the Debian mirror and the Python package index.

A root lives in ``CACHE/roots/<key>`` where the key hashes everything that decides its content
(:meth:`RootSpec.key`): the Debian packages and mirrors, the pip requirements (pinned to the host's
versions where the host has them, so both sides run the same library versions and a difference is
the architecture's), the wheel platforms and :data:`ROOT_FORMAT`. A root is built under a hidden
name and renamed when complete, so an interrupted build is never used.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from tools.arm64_check.errors import DownloadError, HostToolMissingError, StepFailedError

logger = logging.getLogger(__name__)

#: Bumped when the layout or the way a root is built changes: every cached root is rebuilt.
ROOT_FORMAT = 1
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY_MIRROR = "http://deb.debian.org/debian-security"
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
#: Debian packages asked for; apt adds their dependencies (libc6, libssl3, libsqlite3-0 ...).
#: libstdc++6 is what the manylinux wheels (numpy, onnxruntime, ai-edge-litert) link against.
DEBIAN_PACKAGES = ("python3.11", "libstdc++6")
PYTHON_VERSION = "3.11"
#: glibc of bookworm is 2.36: every manylinux tag up to it runs there.
WHEEL_PLATFORMS = (
    "manylinux2014_aarch64",
    *(f"manylinux_2_{minor}_aarch64" for minor in range(17, 37)),
)
#: Not in the [pi] extra, but the docs tell Pi users how to add it for the ONNX formats.
EXTRA_REQUIREMENTS = ("onnxruntime",)
CACHE_ENV = "CXR_EDGE_ARM64_CACHE"

Progress = Callable[[str], None]


def default_cache_dir() -> Path:
    """``$CXR_EDGE_ARM64_CACHE``, else ``$XDG_CACHE_HOME/cxr-edge/arm64-root`` (``~/.cache/...``)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "cxr-edge" / "arm64-root"


def _requirement_name(requirement: str) -> str:
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", requirement)
    if not match:
        raise StepFailedError(f"cannot read the package name of requirement {requirement!r}")
    return re.sub(r"[-_.]+", "-", match.group(1)).lower()


def pi_requirements(pyproject: Path) -> tuple[str, ...]:
    """The device side of the ``[pi]`` extra: the base dependencies, the extra, and onnxruntime.

    Self-references (``cxr-edge[...]``) are dropped: cxr_core comes from the checkout on PYTHONPATH.
    """
    project = tomllib.loads(pyproject.read_text())["project"]
    extras = project.get("optional-dependencies", {})
    if "pi" not in extras:
        raise StepFailedError(f"{pyproject} has no [pi] extra; expected project.optional-dependencies.pi")
    wanted = [*project.get("dependencies", []), *extras["pi"], *EXTRA_REQUIREMENTS]
    seen: dict[str, str] = {}
    for requirement in wanted:
        name = _requirement_name(requirement)
        if name != "cxr-edge" and name not in seen:
            seen[name] = requirement.strip()
    return tuple(seen.values())


def pin_to_host(
    requirements: Sequence[str], version_of: Callable[[str], str | None] | None = None
) -> tuple[str, ...]:
    """``name==<host version>`` for every requirement the host has installed (the same library on
    both sides), else the requirement as written."""

    def installed(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    lookup = version_of or installed
    pinned = []
    for requirement in requirements:
        name = _requirement_name(requirement)
        version = lookup(name)
        pinned.append(f"{name}=={version}" if version else requirement)
    return tuple(pinned)


@dataclass(frozen=True)
class RootSpec:
    """Everything that decides a root's content; its :meth:`key` names the cached root."""

    requirements: tuple[str, ...]
    debian_packages: tuple[str, ...] = DEBIAN_PACKAGES
    mirror: str = DEFAULT_MIRROR
    security_mirror: str = DEFAULT_SECURITY_MIRROR
    suite: str = SUITE
    python_version: str = PYTHON_VERSION
    platforms: tuple[str, ...] = WHEEL_PLATFORMS

    def to_dict(self) -> dict[str, Any]:
        return {"root_format": ROOT_FORMAT, **asdict(self)}

    def key(self) -> str:
        """16 hex digits of the sha256 of the spec (order of requirements and packages ignored)."""
        data = self.to_dict()
        for name in ("requirements", "debian_packages", "platforms"):
            data[name] = sorted(data[name])
        text = json.dumps(data, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Arm64Root:
    """A complete cached root: ``sysroot`` (for QEMU_LD_PREFIX) and ``site`` (the wheels)."""

    path: Path

    @property
    def sysroot(self) -> Path:
        return self.path / "root"

    @property
    def site(self) -> Path:
        return self.path / "site"

    @property
    def python(self) -> Path:
        return self.sysroot / "usr" / "bin" / f"python{PYTHON_VERSION}"

    @property
    def info_path(self) -> Path:
        return self.path / "root.json"

    def info(self) -> dict[str, Any]:
        return json.loads(self.info_path.read_text())


def _need(program: str, package: str) -> str:
    found = shutil.which(program)
    if found is None:
        raise HostToolMissingError(
            f"{program} is not installed on this machine; install the Debian/Ubuntu package {package} "
            f"(apt-get install {package})"
        )
    return found


def _run(argv: Sequence[str], what: str, error: type[Exception] = DownloadError) -> str:
    logger.info("running %s", " ".join(argv))
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-12:])
        raise error(f"{what} failed (exit {done.returncode}): {' '.join(argv[:4])} ...\n{tail}")
    return done.stdout


class _Apt:
    """apt-get with a private state folder for arm64 (downloads only; the host's apt is untouched)."""

    def __init__(self, folder: Path, spec: RootSpec) -> None:
        self.folder = folder
        self.spec = spec
        for sub in (
            "etc/apt/apt.conf.d",
            "etc/apt/preferences.d",
            "etc/apt/sources.list.d",
            "var/lib/apt/lists/partial",
            "var/cache/apt/archives/partial",
            "var/lib/dpkg",
        ):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        (folder / "var/lib/dpkg/status").touch()
        lines = []
        for url, suites in (
            (spec.mirror, (spec.suite, f"{spec.suite}-updates")),
            (spec.security_mirror, (f"{spec.suite}-security",)),
        ):
            lines += [f"deb [arch=arm64 signed-by={KEYRING}] {url} {suite} main" for suite in suites]
        (folder / "etc/apt/sources.list").write_text("\n".join(lines) + "\n")

    def argv(self, *args: str) -> list[str]:
        d = str(self.folder)
        return [
            _need("apt-get", "apt"),
            "-q",
            "-y",
            "-o", f"Dir={d}",
            "-o", f"Dir::State::status={d}/var/lib/dpkg/status",
            "-o", "APT::Architecture=arm64",
            "-o", "APT::Architectures=arm64",
            "-o", "APT::Install-Recommends=false",
            "-o", "Debug::NoLocking=true",
            *args,
        ]  # fmt: skip

    def update(self) -> None:
        _run(self.argv("update"), f"apt-get update from {self.spec.mirror} (arm64 package lists)")

    def download(self, packages: Sequence[str]) -> list[Path]:
        """Download ``packages`` and their dependencies; the exact ``.deb`` files of this resolution."""
        listing = _run(
            self.argv("install", "--print-uris", "-qq", *packages), f"apt-get resolving {' '.join(packages)}"
        )
        names = [m.group(1) for m in re.finditer(r"^'\S+' (\S+\.deb) ", listing, re.MULTILINE)]
        if not names:
            raise DownloadError(f"apt-get listed no packages for {' '.join(packages)}:\n{listing[-800:]}")
        _run(self.argv("install", "--download-only", *packages), f"downloading {len(names)} arm64 .deb files")
        archive = self.folder / "var/cache/apt/archives"
        debs = [archive / name for name in names]
        missing = [p.name for p in debs if not p.is_file()]
        if missing:
            raise DownloadError(f"apt-get reported success but these .deb files are missing: {missing}")
        return debs


def _extract_wheel(wheel: Path, site: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    for data in site.glob("*.data"):  # purelib/platlib go to site; scripts and headers are not needed
        for part in ("purelib", "platlib"):
            source = data / part
            if source.is_dir():
                for item in source.iterdir():
                    target = site / item.name
                    if target.exists():
                        shutil.rmtree(target) if target.is_dir() else target.unlink()
                    item.rename(target)
        shutil.rmtree(data)


def download_wheels(spec: RootSpec, dest: Path) -> list[Path]:
    """The aarch64 cp311 wheels of ``spec.requirements`` and their dependencies, into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--dest", str(dest)]
    for platform in spec.platforms:
        argv += ["--platform", platform]
    argv += ["--python-version", spec.python_version, "--implementation", "cp"]
    argv += ["--abi", f"cp{spec.python_version.replace('.', '')}", "--abi", "abi3", "--abi", "none"]
    argv += ["--only-binary=:all:", *spec.requirements]
    _run(argv, "pip download of the aarch64 wheels (is the package index reachable?)")
    wheels = sorted(dest.glob("*.whl"))
    if not wheels:
        raise DownloadError(f"pip download wrote no wheel into {dest}")
    return wheels


def _deb_version(deb: Path) -> str:
    return deb.name.removesuffix(".deb")


@contextmanager
def _lock(cache: Path) -> Iterator[None]:
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def cached_root(spec: RootSpec, cache: Path) -> Arm64Root | None:
    """The complete root of ``spec`` in ``cache``, or None when it has not been built."""
    root = Arm64Root(cache / "roots" / spec.key())
    return root if root.info_path.is_file() and root.python.is_file() else None


def build_root(spec: RootSpec, cache: Path, progress: Progress) -> Arm64Root:
    """Build the root of ``spec`` into ``cache`` (under a hidden name, renamed when complete)."""
    if not KEYRING.is_file():
        raise HostToolMissingError(
            f"{KEYRING} is missing; install the package debian-archive-keyring (apt-get install "
            "debian-archive-keyring) so the arm64 package lists can be checked"
        )
    _need("dpkg-deb", "dpkg")
    key = spec.key()
    final = cache / "roots" / key
    work = cache / "roots" / f".{key}.building"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.monotonic()
    apt = _Apt(cache / "apt", spec)
    progress(f"arm64 package lists from {spec.mirror} ({spec.suite}) ...")
    apt.update()
    progress(f"downloading {' '.join(spec.debian_packages)} (arm64) and their dependencies ...")
    debs = apt.download(spec.debian_packages)
    progress(f"unpacking {len(debs)} .deb files ...")
    sysroot = work / "root"
    for deb in debs:
        _run(
            [_need("dpkg-deb", "dpkg"), "-x", str(deb), str(sysroot)],
            f"unpacking {deb.name}",
            StepFailedError,
        )
    progress(f"downloading the aarch64 wheels of {', '.join(spec.requirements)} ...")
    wheels = download_wheels(spec, work / "wheels")
    progress(f"unpacking {len(wheels)} wheels ...")
    site = work / "site"
    site.mkdir()
    for wheel in wheels:
        _extract_wheel(wheel, site)
    shutil.rmtree(work / "wheels")
    info = {
        "key": key,
        "spec": spec.to_dict(),
        "debs": [_deb_version(d) for d in debs],
        "wheels": [w.name for w in wheels],
        "build_seconds": round(time.monotonic() - started, 1),
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    (work / "root.json").write_text(json.dumps(info, indent=2) + "\n")
    shutil.rmtree(final, ignore_errors=True)
    work.rename(final)
    return Arm64Root(final)


def ensure_root(
    spec: RootSpec, cache: Path, progress: Progress, rebuild: bool = False
) -> tuple[Arm64Root, bool]:
    """The cached root of ``spec``, built first if needed; ``(root, built_now)``."""
    with _lock(cache):
        found = None if rebuild else cached_root(spec, cache)
        if found is not None:
            progress(f"using the cached arm64 root {found.path}")
            return found, False
        progress(f"building the arm64 root into {cache / 'roots' / spec.key()} (a few minutes, once)")
        return build_root(spec, cache, progress), True
