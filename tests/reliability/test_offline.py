"""Class: offline, as the README promises.

``$SAM2EDGE_MODELS_DIR`` is where hand-copied checkpoints are found by every command,
``$SAM2EDGE_MIRROR`` replaces the download host, failed downloads leave no lock files and say
what to do next, and ``sam2edge models`` tells what is here.
"""

from __future__ import annotations

import hashlib
import http.server
import threading

import pytest

from sam2edge import download
from sam2edge.cli import build as build_cmd
from sam2edge.cli.main import COMMANDS, main
from sam2edge.config import get_config, variant_names
from sam2edge.errors import DownloadError
from tests.engines.recorded import make_onnx_export

NAME = "sam2.1_hiera_tiny"
MODELS_DIR_ENV, MIRROR_ENV = "SAM2EDGE_MODELS_DIR", "SAM2EDGE_MIRROR"  # user-facing names, as documented
PAYLOAD = b"not really a checkpoint, but bytes with a known hash" * 1000


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for var in (MODELS_DIR_ENV, MIRROR_ENV, download.CACHE_ENV, "SAM2EDGE_STORE", "SAM2EDGE_ENGINES"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(download.CACHE_ENV, str(tmp_path / "cache"))


class _Handler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        self.server.paths.append(self.path)
        self.send_response(200)
        self.send_header("Content-Length", str(len(PAYLOAD)))
        self.end_headers()
        self.wfile.write(PAYLOAD)


@pytest.fixture()
def mirror():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.paths = []
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def test_models_dir_is_where_every_command_finds_checkpoints(monkeypatch, tmp_path):
    """Before: only the PyTorch loader looked there; `export` and `build` went to the download cache and
    failed offline."""
    models = tmp_path / "models"
    models.mkdir()
    (models / f"{NAME}.pt").write_bytes(PAYLOAD)
    monkeypatch.setenv(MODELS_DIR_ENV, str(models))
    assert download.resolve_checkpoint(NAME, download=False) == models / f"{NAME}.pt"
    assert download.resolve_checkpoint("sam2/hiera_tiny") == models / f"{NAME}.pt"  # an alias, no network
    # `sam2edge build NAME` with an empty store exports from it instead of refusing
    exported = []

    def fake_export(model, root=None, progress=None):
        exported.append(download.resolve_checkpoint(model))
        return make_onnx_export(tmp_path / "store")

    monkeypatch.setattr(build_cmd, "export_checkpoint", fake_export)
    from sam2edge.engines.store import ArtifactStore

    build_cmd.find_or_export(ArtifactStore(tmp_path / "store"), NAME)
    assert exported == [models / f"{NAME}.pt"]


def test_mirror_replaces_the_download_host(monkeypatch, tmp_path, mirror):
    monkeypatch.setenv(MIRROR_ENV, f"http://127.0.0.1:{mirror.server_address[1]}/sam2/")
    sha = hashlib.sha256(PAYLOAD).hexdigest()
    path = download.download_checkpoint(NAME, expected_sha256=sha, progress=False)
    assert path.read_bytes() == PAYLOAD and mirror.paths == [f"/sam2/{get_config(NAME).filename}"]


def test_failed_download_says_what_to_do_and_leaves_no_lock(monkeypatch, tmp_path):
    monkeypatch.setenv(MIRROR_ENV, "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(DownloadError) as info:
        download.download_checkpoint(NAME, progress=False, retries=0, timeout=5)
    message = str(info.value)
    assert MODELS_DIR_ENV in message and MIRROR_ENV in message and f"{NAME}.pt" in message, message
    leftovers = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert not [n for n in leftovers if n.endswith(".lock")], leftovers


def test_help_and_the_resolve_error_name_the_models_dir(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert MODELS_DIR_ENV in capsys.readouterr().out
    for command in ("segment", "track", "export", "build", "download", "models"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert MODELS_DIR_ENV in capsys.readouterr().out, command
    from sam2edge.errors import CheckpointError

    with pytest.raises(CheckpointError, match=MODELS_DIR_ENV):
        download.resolve_checkpoint(NAME, download=False)


def test_models_command_lists_what_is_here(monkeypatch, tmp_path, capsys):
    assert "models" in COMMANDS
    models = tmp_path / "models"
    models.mkdir()
    (models / f"{NAME}.pt").write_bytes(PAYLOAD)
    monkeypatch.setenv(MODELS_DIR_ENV, str(models))
    make_onnx_export(tmp_path / "store")
    code = main(["models", "--store", str(tmp_path / "store"), "--verify"])
    out = capsys.readouterr().out
    assert code == 0, out
    for name in variant_names():
        assert name in out
    tiny = out[out.index(NAME):]
    assert str(models / f"{NAME}.pt") in tiny and "NOT the published file" in tiny, out
    assert f"{NAME}-abababab" in out and "onnx" in out
    assert "auto:" in out, out
