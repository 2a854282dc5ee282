"""Run a Python module of this checkout inside the arm64 root with ``qemu-aarch64-static``.

qemu-user is called directly with ``QEMU_LD_PREFIX`` (no binfmt registration, no chroot, no root
rights). qemu opens a path inside the prefix first when it exists there, which is how the emulated
program sees the root's libraries - and also how it is given an arm64 view of the CPU: without it,
onnxruntime's cpuinfo library reads the host's x86 ``/proc/cpuinfo`` and ``/sys/devices/system/cpu``
and crashes with SIGSEGV on import. :func:`write_cpu_files` puts a Raspberry Pi's files there.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tools.arm64_check.errors import HostToolMissingError
from tools.arm64_check.root import Arm64Root

QEMU = "qemu-aarch64-static"
QEMU_PACKAGE = "qemu-user-static"


@dataclass(frozen=True)
class CpuModel:
    """A Raspberry Pi CPU as qemu emulates it (``QEMU_CPU``) and as ``/proc/cpuinfo`` describes it."""

    qemu_name: str
    board: str
    part: str
    variant: str
    revision: int
    features: str
    max_khz: int


CPU_MODELS: dict[str, CpuModel] = {
    # Raspberry Pi 5: 4x Cortex-A76, with the dot-product instructions INT8 kernels use.
    "cortex-a76": CpuModel(
        "cortex-a76",
        "Raspberry Pi 5 Model B Rev 1.0",
        "0xd0b",
        "0x4",
        1,
        "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp",
        2400000,
    ),
    # Raspberry Pi 4: 4x Cortex-A72, no dot product (INT8 takes other kernels).
    "cortex-a72": CpuModel(
        "cortex-a72",
        "Raspberry Pi 4 Model B Rev 1.4",
        "0xd08",
        "0x0",
        3,
        "fp asimd evtstrm crc32 cpuid",
        1800000,
    ),
}
CORES = 4


def find_qemu() -> str:
    """The path of qemu-aarch64-static, or a :class:`HostToolMissingError` naming the package."""
    found = shutil.which(QEMU)
    if found is None:
        raise HostToolMissingError(
            f"{QEMU} is not installed on this machine; install the Debian/Ubuntu package {QEMU_PACKAGE} "
            f"(apt-get install {QEMU_PACKAGE}); no binfmt registration is needed"
        )
    return found


def cpuinfo_text(cpu: CpuModel, cores: int = CORES) -> str:
    """``/proc/cpuinfo`` of a Raspberry Pi with ``cores`` cores of ``cpu``."""
    blocks = [
        f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: {cpu.features}\nCPU implementer\t: 0x41\n"
        f"CPU architecture: 8\nCPU variant\t: {cpu.variant}\nCPU part\t: {cpu.part}\n"
        f"CPU revision\t: {cpu.revision}\n"
        for i in range(cores)
    ]
    return "\n".join(blocks) + f"\nModel\t\t: {cpu.board}\n"


def write_cpu_files(sysroot: Path, cpu: CpuModel, cores: int = CORES) -> None:
    """The ``/proc/cpuinfo`` and ``/sys/devices/system/cpu`` files of the emulated Pi, in the root."""
    (sysroot / "proc").mkdir(parents=True, exist_ok=True)
    (sysroot / "proc" / "cpuinfo").write_text(cpuinfo_text(cpu, cores))
    base = sysroot / "sys" / "devices" / "system" / "cpu"
    base.mkdir(parents=True, exist_ok=True)
    span = f"0-{cores - 1}"
    (base / "kernel_max").write_text(f"{cores - 1}\n")
    for name in ("possible", "present", "online"):
        (base / name).write_text(f"{span}\n")
    for i in range(cores):
        core = base / f"cpu{i}"
        files = {
            "online": "1",
            "topology/physical_package_id": "0",
            "topology/core_id": str(i),
            "topology/thread_siblings_list": str(i),
            "topology/core_siblings_list": span,
            "topology/cluster_cpus_list": span,
            "topology/package_cpus_list": span,
            "cpufreq/cpuinfo_max_freq": str(cpu.max_khz),
            "cpufreq/cpuinfo_min_freq": "1500000" if cpu.max_khz > 1500000 else "600000",
        }
        for name, value in files.items():
            (core / name).parent.mkdir(parents=True, exist_ok=True)
            (core / name).write_text(value + "\n")


#: Host variables that would point the emulated Python at x86 files.
_DROP = ("PYTHONHOME", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "LD_PRELOAD", "PYTHONSTARTUP")


def environment(
    root: Arm64Root, repo: Path, cpu: CpuModel, pycache: Path, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of an emulated run: the host's (trust settings included) plus qemu's."""
    env = {k: v for k, v in os.environ.items() if k not in _DROP}
    env.update(
        {
            "QEMU_LD_PREFIX": str(root.sysroot),
            "QEMU_CPU": cpu.qemu_name,
            "PYTHONPATH": os.pathsep.join([str(repo), str(root.site)]),
            "PYTHONNOUSERSITE": "1",
            # compiled modules of the emulated side kept apart from the checkout's __pycache__
            "PYTHONPYCACHEPREFIX": str(pycache),
            "ORT_DISABLE_TELEMETRY": "1",
            "KIVY_NO_ARGS": "1",
            "KIVY_NO_FILELOG": "1",
        }
    )
    env.update(extra or {})
    return env


def python_argv(root: Arm64Root, args: Sequence[str]) -> list[str]:
    """The command line that runs the root's python3.11 with ``args`` under qemu."""
    return [find_qemu(), str(root.python), *args]


def run_python(
    root: Arm64Root,
    args: Sequence[str],
    env: Mapping[str, str],
    cwd: Path,
    timeout: float,
) -> subprocess.CompletedProcess[str]:
    """Run the emulated Python; the caller judges the exit status (a crash is a result, not an error)."""
    return subprocess.run(
        python_argv(root, args),
        env=dict(env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
