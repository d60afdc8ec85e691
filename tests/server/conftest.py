"""A real server on 127.0.0.1 (uvicorn, ephemeral port) over the session's random-weight export.

``server`` is the main one (ONNX Runtime on the export tests' own ``tiny_export``, model loaded
in the background as ``create_app`` does by default, small limits so every refusal is cheap
to reach). ``serve()`` starts more servers in the same process, sharing the loaded model, for
settings that cannot coexist (an API key, CORS, a short idle timeout).

``SAM2EDGE_TEST_ONNX_DIR``: an existing export of sam2.1_hiera_tiny to use instead of
``tiny_export`` (saves the export's minutes when iterating on the server alone).
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("httpx")
pytest.importorskip("pycocotools")
pytest.importorskip("onnxruntime")

import httpx  # noqa: E402

from sam2edge.server.settings import ServerSettings  # noqa: E402

CLIP_FRAMES = 3

# Small on purpose: each limit is reachable with a cheap request.
TEST_LIMITS = dict(
    max_body_bytes=3 << 20, max_image_pixels=1_000_000, max_prompts=4, max_points=5, encode_queue=4, click_queue=8,
    batch_window_ms=5.0, max_sessions=2, max_video_bytes=2 << 20, max_video_frames=50, max_streams=1,
    max_frame_bytes=1 << 20, session_idle_s=3600.0,
)


@dataclass
class Running:
    url: str
    app: Any
    server: Any
    thread: threading.Thread

    @property
    def service(self) -> Any:
        return self.app.state.service

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kwargs.pop("timeout", 120), **kwargs)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def start(app: Any, settings: ServerSettings) -> Running:
    import uvicorn

    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on",
                            ws_max_size=settings.max_frame_bytes + (1 << 16))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    return Running(f"http://127.0.0.1:{port}", app, server, thread)


@pytest.fixture(scope="session")
def onnx_dir(request: pytest.FixtureRequest) -> Path:
    given = os.environ.get("SAM2EDGE_TEST_ONNX_DIR")
    if given:
        return Path(given)
    return request.getfixturevalue("tiny_export").onnx_dir


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="session")
def settings(onnx_dir: Path, media_dir: Path) -> ServerSettings:
    return ServerSettings(model=str(onnx_dir), backend="onnxruntime", media_dir=media_dir, **TEST_LIMITS)


@pytest.fixture(scope="session")
def server(settings: ServerSettings) -> Iterator[Running]:
    from sam2edge.server.app import create_app

    running = start(create_app(settings), settings)
    with running.client() as c:
        deadline = time.monotonic() + 600
        while c.get("/readyz").status_code != 200:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the model did not load: {running.service.load_error}")
            time.sleep(0.2)
    yield running
    running.stop()


@contextlib.contextmanager
def serve(base: Running, **changes: Any) -> Iterator[Running]:
    """Another server with changed settings, sharing ``base``'s loaded model and caches."""
    from sam2edge.server.app import create_app

    svc = base.service
    settings = replace(svc.settings, **changes)
    app = create_app(settings, model=svc.model, video_available=svc.video_available,
                     caches=(svc.embeddings_cache, svc.logits_cache))
    running = start(app, settings)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def client(server: Running) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


# -- images ------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A real photograph (RGB uint8, 512x512)."""
    skimage = pytest.importorskip("skimage")
    return skimage.data.astronaut()


def png_b64(rgb: np.ndarray) -> str:
    import cv2

    ok, data = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    assert ok
    return base64.b64encode(data.tobytes()).decode()


def npy_b64(array: np.ndarray) -> str:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return base64.b64encode(buf.getvalue()).decode()


@pytest.fixture(scope="session")
def embedded(client: httpx.Client, photo: np.ndarray) -> str:
    """The photo's image_id after one /sam2/embed_image (the embedding stays cached)."""
    r = client.post("/sam2/embed_image", json={"image": {"type": "base64", "value": png_b64(photo)}})
    assert r.status_code == 200, r.text
    return r.json()["image_id"]


# -- video ----------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def clip_file(media_dir: Path) -> Path:
    """A 3-frame 128x96 MJPG .avi of two moving textured objects (tests/video/clip.py); short because
    every tracked frame runs the full image encoder on this CPU."""
    import cv2

    from tests.video.clip import make_clip

    clip = make_clip(num_frames=CLIP_FRAMES)
    path = media_dir / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (128, 96))
    for frame in clip.frames:
        writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
    writer.release()
    assert path.stat().st_size > 0
    return path
