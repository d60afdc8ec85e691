"""Checkpoint download and cache logic against a local HTTP server (never the internet)."""

from __future__ import annotations

import hashlib
import http.server
import os
import re
import threading
import urllib.parse
from pathlib import Path

import pytest

from sam2edge import download
from sam2edge.config import get_config
from sam2edge.errors import CheckpointError, DownloadError, UnknownModelError

NAME = "sam2.1_hiera_tiny"
PAYLOAD = os.urandom(3 * (1 << 20) + 12345)  # a few 1 MiB chunks plus a tail
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD with Range support; the server's ``mode`` selects a misbehaviour."""

    def log_message(self, *args) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        srv = self.server
        srv.requests.append(self.headers.get("Range"))
        if srv.mode == "404":
            self.send_error(404, "Not Found")
            return
        data, start = srv.payload, 0
        rng = self.headers.get("Range")
        if rng and srv.mode != "ignore_range":
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.drops > 0:  # announce the full length, send half, hang up
            srv.drops -= 1
            body = body[: len(body) // 2]
        self.wfile.write(body)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.payload, self.mode, self.drops, self.requests = PAYLOAD, "normal", 0, []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/{NAME}.pt"


@pytest.fixture
def server():
    srv = _Server()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(autouse=True)
def local_only(monkeypatch):
    """Refuse any request that is not to 127.0.0.1, whatever a test passes."""
    real = download.urllib.request.urlopen

    def guarded(request, *args, **kwargs):
        host = urllib.parse.urlsplit(request.full_url).hostname
        assert host == "127.0.0.1", f"test tried to reach {host}"
        return real(request, *args, **kwargs)

    monkeypatch.setattr(download.urllib.request, "urlopen", guarded)


def fetch(srv: _Server, cache: Path, **kwargs) -> Path:
    kwargs = {"url": srv.url, "expected_sha256": SHA, "progress": False, "timeout": 10, **kwargs}
    return download.download_checkpoint(NAME, cache_dir=cache, **kwargs)


def _part(cache: Path) -> Path:
    return cache / f"{NAME}.pt.part"


def test_download(server, tmp_path):
    path = fetch(server, tmp_path)
    assert path == tmp_path / f"{NAME}.pt"
    assert path.read_bytes() == PAYLOAD
    assert server.requests == [None]
    assert not _part(tmp_path).exists()


def test_cached_file_makes_no_request(server, tmp_path):
    fetch(server, tmp_path)
    server.requests.clear()
    assert fetch(server, tmp_path).read_bytes() == PAYLOAD
    assert server.requests == []
    # Also without the stamp (rehash) and with an unreachable URL.
    (tmp_path / f"{NAME}.pt.verified").unlink()
    assert fetch(server, tmp_path, url="http://127.0.0.1:9/none.pt").read_bytes() == PAYLOAD
    assert server.requests == []


def test_corrupted_cached_file_is_downloaded_again(server, tmp_path):
    path = fetch(server, tmp_path)
    data = bytearray(PAYLOAD)
    data[1000] ^= 0xFF
    stat = path.stat()
    path.write_bytes(bytes(data))  # same size: only the mtime tells the stamp is stale
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    server.requests.clear()
    assert fetch(server, tmp_path).read_bytes() == PAYLOAD
    assert server.requests == [None]


def test_resume_from_part(server, tmp_path):
    _part(tmp_path).write_bytes(PAYLOAD[: 1 << 20])
    assert fetch(server, tmp_path).read_bytes() == PAYLOAD
    assert server.requests == [f"bytes={1 << 20}-"]


def test_server_ignoring_range_restarts(server, tmp_path):
    server.mode = "ignore_range"
    _part(tmp_path).write_bytes(PAYLOAD[:5000])
    assert fetch(server, tmp_path).read_bytes() == PAYLOAD  # not the head twice
    assert server.requests == ["bytes=5000-"]


def test_complete_part_gets_416_and_is_kept(server, tmp_path):
    _part(tmp_path).write_bytes(PAYLOAD)
    assert fetch(server, tmp_path).read_bytes() == PAYLOAD
    assert server.requests == [f"bytes={len(PAYLOAD)}-"]


def test_dropped_connection_resumes_in_same_call(server, tmp_path, capsys):
    server.drops = 1
    assert fetch(server, tmp_path).read_bytes() == PAYLOAD
    assert server.requests == [None, f"bytes={len(PAYLOAD) // 2}-"]
    assert "resuming" in capsys.readouterr().err


def test_dropped_connection_keeps_part_then_resumes(server, tmp_path):
    server.drops = 5
    with pytest.raises(DownloadError, match=r"cut short: received \d+ of \d+ bytes \(Content-Length\)") as info:
        fetch(server, tmp_path, retries=1)
    print(f"  {info.value}")
    assert len(server.requests) == 2
    kept = _part(tmp_path).stat().st_size
    assert 0 < kept < len(PAYLOAD)
    assert not (tmp_path / f"{NAME}.pt").exists()
    server.drops, server.requests = 0, []
    assert fetch(server, tmp_path).read_bytes() == PAYLOAD
    assert server.requests == [f"bytes={kept}-"]


def test_http_404(server, tmp_path):
    server.mode = "404"
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        fetch(server, tmp_path)
    assert server.url in str(info.value)
    assert server.requests == [None]  # no retry on an HTTP error
    assert not (tmp_path / f"{NAME}.pt").exists()


def test_connection_refused(tmp_path):
    srv = _Server()  # bound, then closed: nothing listens on its port
    url = srv.url
    srv.server_close()
    with pytest.raises(DownloadError, match="cannot connect"):
        download.download_checkpoint(NAME, cache_dir=tmp_path, url=url, expected_sha256=SHA, progress=False)


def test_sha_mismatch_deletes_file(server, tmp_path):
    wrong = "0" * 64
    with pytest.raises(DownloadError) as info:
        fetch(server, tmp_path, expected_sha256=wrong)
    msg = str(info.value)
    print(f"  {msg}")
    assert f"{NAME}.pt" in msg and wrong in msg and SHA in msg and "deleted" in msg
    assert not (tmp_path / f"{NAME}.pt").exists() and not _part(tmp_path).exists()


def test_corrupt_part_fails_sha_and_is_deleted(server, tmp_path):
    _part(tmp_path).write_bytes(b"\0" * 4096)  # wrong head: the resumed file cannot match
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        fetch(server, tmp_path)
    assert not _part(tmp_path).exists()
    assert fetch(server, tmp_path).read_bytes() == PAYLOAD  # and the next call starts clean


def test_progress_lines(server, tmp_path, capsys):
    fetch(server, tmp_path, progress=True)
    lines = capsys.readouterr().err.splitlines()
    assert all(f"downloading {NAME}.pt:" in line for line in lines)
    assert "100% (3.2/3.2 MB)" in lines[-1] and 2 <= len(lines) <= 21


def test_bad_url_scheme_and_unknown_name(tmp_path):
    with pytest.raises(DownloadError, match="only http"):
        download.download_checkpoint(NAME, cache_dir=tmp_path, url="ftp://127.0.0.1/x.pt")
    with pytest.raises(UnknownModelError, match="not a known SAM2 variant"):
        download.download_checkpoint("sam3_hiera_tiny", cache_dir=tmp_path)


def test_registry_urls_and_hashes():
    for name in ("sam2.1_hiera_large", "sam2_hiera_tiny"):
        cfg = get_config(name)
        assert cfg.url.startswith("https://dl.fbaipublicfiles.com/segment_anything_2/")
        assert cfg.url.endswith(f"/{name}.pt") and re.fullmatch(r"[0-9a-f]{64}", cfg.sha256)


def test_default_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv(download.CACHE_ENV, str(tmp_path / "c"))
    assert download.default_cache_dir() == tmp_path / "c"
    monkeypatch.delenv(download.CACHE_ENV)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert download.default_cache_dir() == tmp_path / ".cache" / "sam2edge"


def test_env_cache_dir_is_used(server, tmp_path, monkeypatch):
    monkeypatch.setenv(download.CACHE_ENV, str(tmp_path / "env"))
    path = download.download_checkpoint(NAME, url=server.url, expected_sha256=SHA, progress=False)
    assert path == tmp_path / "env" / f"{NAME}.pt"


# --------------------------------------------------------------------------- resolve_checkpoint
def test_resolve_existing_path(tmp_path):
    path = tmp_path / "mine.pt"
    path.write_bytes(b"x")
    assert download.resolve_checkpoint(path) == path
    assert download.resolve_checkpoint(str(path), download=False) == path


def test_resolve_unknown_name(tmp_path):
    with pytest.raises(CheckpointError, match=r"neither an existing file nor a known variant.*sam2\.1_hiera_tiny"):
        download.resolve_checkpoint(tmp_path / "missing.pt")
    with pytest.raises(CheckpointError, match="'hiera_huge'"):
        download.resolve_checkpoint("hiera_huge")


def test_resolve_name_without_download(tmp_path):
    with pytest.raises(CheckpointError, match="is not in the cache") as info:
        download.resolve_checkpoint("sam2.1_hiera_t", cache_dir=tmp_path, download=False)
    assert str(tmp_path / f"{NAME}.pt") in str(info.value)
    (tmp_path / f"{NAME}.pt").write_bytes(b"not the real file")
    with pytest.raises(CheckpointError, match="fails its sha256 check"):
        download.resolve_checkpoint(NAME, cache_dir=tmp_path, download=False)


def test_resolve_alias_downloads_then_uses_cache(server, tmp_path):
    kwargs = {"url": server.url, "expected_sha256": SHA, "progress": False}
    path = download.resolve_checkpoint("sam2/hiera_tiny", cache_dir=tmp_path, **kwargs)
    assert path == tmp_path / f"{NAME}.pt" and path.read_bytes() == PAYLOAD
    assert server.requests == [None]
    assert download.resolve_checkpoint(NAME, cache_dir=tmp_path, download=False, expected_sha256=SHA) == path
    assert server.requests == [None]


def test_checkpoint_module_reexports():
    pytest.importorskip("torch")
    from sam2edge.model import checkpoint

    assert checkpoint.download_checkpoint is download.download_checkpoint
    assert checkpoint.resolve_checkpoint is download.resolve_checkpoint
