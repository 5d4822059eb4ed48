"""Downloading CIFAR-10 (:func:`ba_net.data.download.download_file`, the download branch of
:func:`ba_net.data.locate_cifar10`) against a local HTTP server on 127.0.0.1 that serves a small
synthetic tarball: success with progress lines, a wrong checksum, a connection cut or stalled
half-way, an offline machine, and truncated or corrupt files in every lookup source.
Nothing here touches the network beyond 127.0.0.1 or the real Paddle cache."""
import errno
import hashlib
import http.server
import logging
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ba_net import data as D
from ba_net.data import sources
from ba_net.files import is_temp_file
from ba_net.data.download import download_file
from ba_net.errors import DataError
from helpers import write_cifar10_tarball

NAME = "cifar-10-python.tar.gz"


# ------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def tarball(module_tmp):
    """A CIFAR-10-shaped tarball of random images (~1.1 MB, so a download takes many chunks)."""
    rng = np.random.default_rng(0)
    members = {f"cifar-10-batches-py/data_batch_{i}": (rng.integers(0, 256, (60, 32, 32, 3), dtype=np.uint8),
                                                       rng.integers(0, 10, 60)) for i in range(1, 6)}
    members["cifar-10-batches-py/test_batch"] = (rng.integers(0, 256, (30, 32, 32, 3), dtype=np.uint8),
                                                 rng.integers(0, 10, 30))
    return write_cifar10_tarball(module_tmp("src") / NAME, members)


class _Handler(http.server.BaseHTTPRequestHandler):
    """/ok: the tarball; /cut: half of it, then the connection closes; /stall: half of it, then
    silence (each announces the full Content-Length); /nolength: the tarball without a length."""

    def do_GET(self):
        srv = self.server
        srv.requests.append(self.path)
        body = srv.body
        if self.path == "/nolength":  # HTTP/1.0, no Content-Length: the body ends when the connection closes
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)
            return
        if self.path not in ("/ok", "/cut", "/stall"):
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path == "/ok":
            self.wfile.write(body)
            return
        self.wfile.write(body[: len(body) // 2])
        self.wfile.flush()
        if self.path == "/stall":
            srv.release.wait(10)  # the client's read timeout fires first; teardown releases us
        self.close_connection = True

    def log_message(self, *args):  # keep the test output quiet
        pass


@pytest.fixture
def server(tarball):
    """An HTTP server on 127.0.0.1 (a free port), in a thread, shut down after the test."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.body, srv.requests, srv.release = tarball.read_bytes(), [], threading.Event()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.release.set()
    srv.shutdown()
    srv.server_close()
    thread.join(5)


@pytest.fixture
def closed_port():
    """A local port where nothing listens (bound, not listening: connections are refused)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def progress(caplog, monkeypatch):
    """The ``ba_net.data`` log records (the tools' logging set-up stops propagation: undone here)."""
    monkeypatch.setattr(logging.getLogger("ba_net"), "propagate", True)
    caplog.set_level(logging.INFO, logger="ba_net.data")
    return caplog


@pytest.fixture
def no_local_data(tmp_path, monkeypatch):
    """No BA_NET_CIFAR10, and Paddle's cache redirected to an empty folder; returns the cache path."""
    monkeypatch.delenv("BA_NET_CIFAR10", raising=False)
    cache = tmp_path / "home" / ".cache" / "paddle" / "dataset" / "cifar" / NAME
    monkeypatch.setattr(sources, "paddle_cache_path", lambda: cache)
    return cache


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def _one_line(exc_info):
    text = str(exc_info.value)
    assert "\n" not in text and text.strip() == text, repr(text)
    return text


def _files(folder):
    """Every file in ``folder`` (hidden temporary files included)."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ------------------------------------------------------------------------------- download_file

def test_download_arrives_verified_with_progress_and_reads(server, tarball, tmp_path, progress, monkeypatch):
    dest = tmp_path / "cache" / NAME
    synced, real_fsync = [], os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink(f"/proc/self/fd/{fd}")), real_fsync(fd)))
    assert download_file(server.url + "/ok", dest, _md5(tarball)) == dest
    assert any(Path(s).parent == dest.parent and is_temp_file(s) for s in synced), synced  # fsynced before the rename
    assert dest.read_bytes() == tarball.read_bytes() and _md5(dest) == _md5(tarball)
    assert _files(dest.parent) == [NAME]  # no temporary file left
    lines = [r.getMessage() for r in progress.records if "MB/s" in r.getMessage()]
    assert 2 <= len(lines) <= 11, lines  # about one a tenth, not one per chunk
    assert all("% (" in line and "ETA" in line for line in lines), lines
    assert lines[-1].startswith(f"{NAME}: 100% (")
    assert any("md5 verified" in r.getMessage() for r in progress.records)
    images, labels = D.read_cifar10(dest, "train")
    expected = D.read_cifar10(tarball, "train")
    assert images.shape == (300, 32, 32, 3)
    np.testing.assert_array_equal(images, expected[0])
    np.testing.assert_array_equal(labels, expected[1])


def test_download_without_content_length(server, tarball, tmp_path):
    dest = tmp_path / NAME
    assert download_file(server.url + "/nolength", dest, _md5(tarball)) == dest
    assert dest.read_bytes() == tarball.read_bytes() and _files(tmp_path) == [NAME]


def test_wrong_checksum_leaves_nothing(server, tmp_path):
    dest = tmp_path / "cache" / NAME
    with pytest.raises(DataError) as err:
        download_file(server.url + "/ok", dest, "0" * 32)
    text = _one_line(err)
    assert f"{server.url}/ok has md5 " in text and "not the expected " + "0" * 32 in text, text
    assert "nothing was kept, run again" in text, text
    assert _files(dest.parent) == []


@pytest.mark.parametrize("path, reason", [("/cut", "connection closed early"), ("/stall", "timed out")])
def test_connection_cut_half_way_leaves_nothing(server, tarball, tmp_path, path, reason):
    dest = tmp_path / "cache" / NAME
    start = time.monotonic()
    with pytest.raises(DataError) as err:
        download_file(server.url + path, dest, _md5(tarball), timeout=0.5)
    assert time.monotonic() - start < 5
    text = _one_line(err)
    total = tarball.stat().st_size
    assert f"download of {server.url}{path} broke off after" in text, text
    assert f"of {total / 1e6:.1f} MB ({reason})" in text and "run again to retry" in text, text
    assert _files(dest.parent) == []


def test_existing_file_survives_a_failed_download(server, tmp_path):
    dest = tmp_path / NAME
    dest.write_bytes(b"the previous copy")
    with pytest.raises(DataError):
        download_file(server.url + "/cut", dest, "0" * 32)
    assert _files(tmp_path) == [NAME] and dest.read_bytes() == b"the previous copy"


def test_http_error_is_one_line(server, tmp_path):
    with pytest.raises(DataError) as err:
        download_file(server.url + "/missing", tmp_path / NAME, "0" * 32)
    assert f"cannot download {server.url}/missing (HTTP Error 404" in _one_line(err)
    assert _files(tmp_path) == []


def test_unwritable_destination_is_one_line(server, tarball, tmp_path, monkeypatch):
    (tmp_path / "blocker").write_text("a file where the folder should be")
    dest = tmp_path / "blocker" / NAME
    with pytest.raises(DataError) as err:
        download_file(server.url + "/ok", dest, _md5(tarball))
    assert f"cannot write {dest} ({dest.parent} is a file, not a folder); free disk space" in _one_line(err)
    assert server.requests == []  # nothing fetched

    def disk_full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", disk_full)
    dest = tmp_path / "full" / NAME
    with pytest.raises(DataError) as err:
        download_file(server.url + "/ok", dest, _md5(tarball))
    assert f"cannot write {dest} (No space left on device); free disk space" in _one_line(err)
    assert _files(dest.parent) == []


def test_offline_fails_fast(closed_port, tmp_path):
    url = f"http://127.0.0.1:{closed_port}/{NAME}"
    with pytest.raises(DataError) as err:
        download_file(url, tmp_path / NAME, "0" * 32)
    assert f"cannot reach {url} (Connection refused): check the network" in _one_line(err)
    assert _files(tmp_path) == []


def test_a_server_that_never_answers_times_out(tmp_path):
    sock = socket.socket()  # listening, never accepting: the connection opens, no reply comes
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/{NAME}"
    bound = threading.Timer(10, sock.close)  # without a client timeout, closing resets the connection
    bound.start()
    try:
        start = time.monotonic()
        with pytest.raises(DataError) as err:
            download_file(url, tmp_path / NAME, "0" * 32, timeout=0.5)
        assert time.monotonic() - start < 5
    finally:
        bound.cancel()
        sock.close()
    assert f"cannot reach {url} (timed out)" in _one_line(err)
    assert _files(tmp_path) == []


# ------------------------------------------------------------------------------- locate_cifar10

def test_locate_downloads_into_the_cache_once(server, tarball, no_local_data, monkeypatch, progress):
    monkeypatch.setattr(sources, "CIFAR10_URL", server.url + "/ok")
    monkeypatch.setattr(sources, "CIFAR10_MD5", _md5(tarball))
    assert D.locate_cifar10(None) == no_local_data
    assert server.requests == ["/ok"] and _md5(no_local_data) == _md5(tarball)
    assert any("downloading" in r.getMessage() for r in progress.records)
    assert D.locate_cifar10(None) == no_local_data  # the second call finds the cache
    assert server.requests == ["/ok"]
    assert D.read_cifar10(D.locate_cifar10(None), "test")[0].shape == (30, 32, 32, 3)


def test_locate_offline_says_how_to_supply_the_file(closed_port, no_local_data, monkeypatch):
    url = f"http://127.0.0.1:{closed_port}/{NAME}"
    monkeypatch.setattr(sources, "CIFAR10_URL", url)
    with pytest.raises(DataError) as err:
        D.locate_cifar10(None)
    text = _one_line(err)
    for part in ("CIFAR-10 not found locally", f"cannot reach {url} (Connection refused)", "-o data.data_file=PATH",
                 "export BA_NET_CIFAR10=PATH", f"place {NAME} at {no_local_data} (fetch it elsewhere from {url})"):
        assert part in text, (part, text)
    assert _files(no_local_data.parent) == []


def test_locate_wrong_checksum_names_the_fix(server, no_local_data, monkeypatch):
    monkeypatch.setattr(sources, "CIFAR10_URL", server.url + "/ok")
    monkeypatch.setattr(sources, "CIFAR10_MD5", "0" * 32)
    with pytest.raises(DataError) as err:
        D.locate_cifar10(None)
    text = _one_line(err)
    assert "has md5" in text and "run again to retry" in text and f"place {NAME} at {no_local_data}" in text, text
    assert _files(no_local_data.parent) == []


def test_locate_without_download_says_how_to_supply_the_file(no_local_data, monkeypatch):
    monkeypatch.setattr(sources, "download_file", lambda *a, **k: pytest.fail("must not download"))
    with pytest.raises(DataError) as err:
        D.locate_cifar10(None, download=False)
    assert "download disabled); fix one of: -o data.data_file=PATH" in _one_line(err)


# ------------------------------------------------------------------ corrupt files in each source

def _corrupt(kind, tarball, path):
    data = tarball.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes({"empty": b"", "truncated-gzip": data[: len(data) // 2], "gzip-header-only": data[:10],
                      "not-gzip": np.random.default_rng(1).bytes(5000)}[kind])
    return path


@pytest.mark.parametrize("kind", ["empty", "truncated-gzip", "gzip-header-only", "not-gzip"])
@pytest.mark.parametrize("source", ["data_file", "BA_NET_CIFAR10", "cache"])
def test_corrupt_file_in_any_source_is_one_line_naming_it(source, kind, tarball, tmp_path, no_local_data,
                                                          monkeypatch):
    monkeypatch.setattr(sources, "download_file", lambda *a, **k: pytest.fail("must not download"))
    path = _corrupt(kind, tarball, no_local_data if source == "cache" else tmp_path / "given" / NAME)
    if source == "BA_NET_CIFAR10":
        monkeypatch.setenv("BA_NET_CIFAR10", str(path))
    with pytest.raises(DataError) as err:
        D.read_cifar10(D.locate_cifar10(str(path) if source == "data_file" else None), "train")
    text = _one_line(err)
    assert text.startswith(f"{path} is not a readable CIFAR-10 tarball ("), text
    assert "delete it and download again, or point data.data_file at a good copy" in text, text
