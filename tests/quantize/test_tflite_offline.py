"""The TFLite conversion runs offline: a guard refuses sockets, and onnx2tf's download is pre-empted."""

from __future__ import annotations

import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from quantize import tflite_offline
from quantize.tflite_export import ONNX2TF_SAMPLE, TfliteExportError, run_step, sample_file_data
from quantize.tflite_offline import NetworkBlockedError, block_network, unblock_network
from tests.bundle_fixtures import TFLITE_SPEC, tiny_model


@pytest.fixture
def guard() -> Iterator[None]:
    tflite_offline.ATTEMPTS.clear()
    block_network()
    try:
        yield
    finally:
        unblock_network()
        tflite_offline.ATTEMPTS.clear()


@pytest.fixture
def local_server() -> Iterator[tuple[str, int]]:
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    try:
        yield server.getsockname()
    finally:
        server.close()


def test_guard_refuses_tcp_and_dns_and_records_each_attempt(
    guard: None, local_server: tuple[str, int]
) -> None:
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        with pytest.raises(NetworkBlockedError, match="network access blocked during TFLite conversion"):
            client.connect(local_server)
        with pytest.raises(NetworkBlockedError):
            client.connect_ex(local_server)
    finally:
        client.close()
    with pytest.raises(NetworkBlockedError):
        socket.create_connection(local_server, timeout=1)
    with pytest.raises(NetworkBlockedError, match="getaddrinfo"):
        socket.getaddrinfo("github.com", 443)
    assert len(tflite_offline.ATTEMPTS) == 4
    assert isinstance(NetworkBlockedError("x"), OSError)  # HTTP clients treat it as a connection error


def test_guard_leaves_local_unix_sockets_and_restores_everything(local_server: tuple[str, int]) -> None:
    original = socket.socket.connect
    block_network()
    try:
        with tempfile.TemporaryDirectory() as folder:
            path = str(Path(folder) / "s")
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(path)
            listener.listen(1)
            client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            client.connect(path)  # local IPC is not the network
            client.close()
            listener.close()
    finally:
        unblock_network()
        tflite_offline.ATTEMPTS.clear()
    assert socket.socket.connect is original
    client = socket.create_connection(local_server, timeout=5)  # the real network works again
    client.close()


def _fixed_batch_onnx(path: Path) -> Path:
    """The tiny CheXNet as ONNX with the batch fixed to 1: onnx2tf then fetches its sample images."""
    import onnx

    from quantize.onnx_export import export_onnx

    export_onnx(tiny_model("chexnet"), TFLITE_SPEC, path)
    model = onnx.load(str(path))
    for value in [*model.graph.input, *model.graph.output]:
        value.type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(model, str(path))
    return path


@pytest.mark.needs_tflite
def test_conversion_that_wants_the_network_fails(tmp_path: Path) -> None:
    """Without the sample file onnx2tf really tries to download it; the child's guard stops it."""
    onnx_path = _fixed_batch_onnx(tmp_path / "model.onnx")
    folder = tmp_path / "step"
    with pytest.raises(TfliteExportError, match="conversion tried to reach the network") as info:
        run_step({"step": "float", "onnx": str(onnx_path), "out_dir": str(folder / "out")}, folder)
    assert "network access attempted" in str(info.value) and "github.com" in str(info.value)
    assert not (folder / "result.json").exists()


@pytest.mark.slow  # ~11 s; the session bundle's conversion already runs offline with the guard on
@pytest.mark.needs_tflite
def test_sample_file_keeps_the_conversion_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fixed_batch_onnx(tmp_path / "model.onnx")
    folder = tmp_path / "step"
    folder.mkdir()
    calibration = np.random.default_rng(0).standard_normal((4, 3, 72, 72)).astype(np.float32)
    np.save(folder / ONNX2TF_SAMPLE, sample_file_data(calibration))
    monkeypatch.chdir(tmp_path)  # relative paths are the caller's; the child runs in ``folder``
    result = run_step({"step": "float", "onnx": "model.onnx", "out_dir": "step/out"}, Path("step"))
    assert Path(result["files"]["float32"]).is_file() and Path(result["files"]["float16"]).is_file()
    assert Path(result["files"]["float32"]).parent == folder / "out"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "step"]  # nothing in the CWD
