"""Nothing phones home (issue 15, item 4): cxr-predict under strace makes no network call at all.

One process runs cxr-predict (its ``main``, the console script's entry point) on a PNG and a DICOM
again and again for longer than onnxruntime's telemetry needs to wake up (about 9 s; we run 16 s),
under ``strace -f -e trace=network,...``. The test asserts:

* zero network system calls of any kind (socket, connect, sendto, sendmsg, bind, ...): not even an
  ``AF_UNIX`` socket, since a DNS lookup through nscd / systemd-resolved would use one;
* no file written or folder created outside the output folder (and the pipes/devices the
  interpreter uses), with ``HOME`` pointed at an empty folder that must stay empty (onnxruntime's
  telemetry writes ``~/.cache/Microsoft/DeveloperTools/.onnxruntime/deviceid`` and a database).

Python's own ``socket.socket`` patching cannot see native calls; strace sees every system call.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cxr_core.test_input_gate import chest
from tests.file_factory import write_dicom, write_png

REPO = Path(__file__).resolve().parents[1]
SECONDS = 16.0

DRIVER = """
import sys, time
from cxr_core.predict_cli import main
images, bundle, out = sys.argv[1:3], sys.argv[3], sys.argv[4]
start, runs = time.monotonic(), 0
while time.monotonic() - start < {seconds}:
    code = main([*images, "--bundle", bundle, "--json", f"{{out}}/run.json", "--threads", "1"])
    if code != 0:
        sys.exit(f"cxr-predict exited {{code}}")
    runs += 1
    time.sleep(0.5)
print("runs", runs)
"""

#: Write-mode opens and folder changes in the strace log.
_WRITE = re.compile(r"(?:openat|open|creat)\(.*\"([^\"]+)\".*O_(?:WRONLY|RDWR|CREAT)")
_CHANGE = re.compile(r"(?:mkdir|mkdirat|rename|renameat2?|unlink|unlinkat)\((?:[A-Z_0-9]+, )?\"([^\"]+)\"")
_NETWORK = re.compile(
    r"\b(socket|socketpair|connect|bind|listen|accept4?|sendto|sendmsg|sendmmsg|recvfrom)\("
)
#: Where the interpreter itself may write: its byte-code cache is disabled, so only devices.
_ALLOWED_PREFIXES = ("/dev/", "/proc/self/", "/sys/")


def _strace() -> str | None:
    return shutil.which("strace")


@pytest.mark.slow
@pytest.mark.skipif(
    _strace() is None, reason="strace is not installed (apt-get install strace; .ci/run does)"
)
def test_cxr_predict_makes_no_network_call_and_writes_only_its_output(
    session_bundle: Path, tmp_path: Path
) -> None:
    images = tmp_path / "images"
    images.mkdir()
    png = write_png(images / "a.png", chest(320, 288))
    dcm = write_dicom(images / "b.dcm", chest(400, 360), bits_stored=12)
    home, out, work = tmp_path / "home", tmp_path / "out", tmp_path / "work"
    for folder in (home, out, work):
        folder.mkdir()
    trace = tmp_path / "trace.txt"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("XDG_", "ORT_")) and k != "PYTHONPYCACHEPREFIX"
    }
    env.update(
        HOME=str(home),
        PYTHONPATH=str(REPO),
        PYTHONDONTWRITEBYTECODE="1",
        OMP_WAIT_POLICY="PASSIVE",
        MPLCONFIGDIR=str(out / "mpl"),  # never used; would show up as a write if something imported it
    )
    command = [
        _strace(),
        "-f",
        "-qq",
        "-e",
        "trace=network,openat,open,creat,mkdir,mkdirat,rename,renameat,renameat2,unlink,unlinkat",
        "-o",
        str(trace),
        sys.executable,
        "-c",
        DRIVER.format(seconds=SECONDS),
        str(png),
        str(dcm),
        str(session_bundle),
        str(out),
    ]
    done = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"runs (\d+)", done.stdout) and int(re.search(r"runs (\d+)", done.stdout)[1]) >= 5
    log = trace.read_text()

    network = [line for line in log.splitlines() if _NETWORK.search(line)]
    assert network == [], "network system calls:\n" + "\n".join(network[:20])

    written = set()
    for line in log.splitlines():
        if "= -1" in line:  # a failed call wrote nothing
            continue
        match = _WRITE.search(line) or _CHANGE.search(line)
        if match:
            written.add(match[1])
    outside = sorted(
        p
        for p in written
        if not p.startswith(_ALLOWED_PREFIXES)
        and not Path(p if os.path.isabs(p) else work / p).resolve().is_relative_to(out.resolve())
    )
    assert outside == [], f"written outside {out}: {outside}"
    assert list(home.rglob("*")) == [], "HOME must stay untouched (no ~/.cache/Microsoft telemetry files)"
    assert list(work.iterdir()) == []
    assert (out / "run.json").is_file()
