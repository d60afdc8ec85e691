"""Every limit and refusal over HTTP: each answers JSON ``{"message", "status"}`` with the right code, no trace."""

from __future__ import annotations

import base64
import threading
import time

import numpy as np
import pytest

from sam2edge.server.settings import ServerSettings, is_loopback
from tests.server.conftest import TEST_LIMITS, npy_b64, png_b64, serve, start

CLICK = {"points": [{"x": 10, "y": 10, "positive": True}]}


def refused(r, status: int, *words: str) -> dict:
    assert r.status_code == status, (r.status_code, r.text)
    body = r.json()
    assert body["status"] == status and isinstance(body["message"], str)
    assert "Traceback" not in r.text
    for w in words:
        assert w in body["message"], body["message"]
    return body


def test_health_ready_info_page(client, settings):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["ready"] is True and ready["backend"] == "onnxruntime-cpu" and ready["video"] is True
    info = client.get("/info").json()
    assert info["active_backend"] == "onnxruntime-cpu" and info["limits"]["max_prompts"] == settings.max_prompts
    assert "api_key" not in info["limits"]
    page = client.get("/")
    assert page.status_code == 200 and "<canvas" in page.text and page.headers["content-type"].startswith("text/html")
    assert client.get("/static/app.js").status_code == 200


def test_body_limit_before_reading(client):
    big = "A" * (TEST_LIMITS["max_body_bytes"] + 10)
    refused(client.post("/sam2/embed_image", content=big, headers={"content-type": "application/json"}), 413, "limit")

    def chunks():  # no Content-Length: cut off while streaming in
        for _ in range(8):
            yield b" " * (1 << 20)

    refused(client.post("/sam2/embed_image", content=chunks(), headers={"content-type": "application/json"}), 413)


def test_pixel_limit_before_decoding(client):
    """A 3000x3000 PNG is a few KB but 9 MP: refused from its header (decompression bomb)."""
    bomb = np.zeros((3000, 3000, 3), np.uint8)
    b64 = png_b64(bomb)
    assert len(b64) < 200_000
    refused(client.post("/sam2/embed_image", json={"image": {"type": "base64", "value": b64}}), 413, "pixels")
    refused(client.post("/sam2/embed_image", json={"image": {"type": "numpy", "value": npy_b64(np.zeros((1100, 1000), np.uint8))}}),
            413, "pixels")


@pytest.mark.parametrize(("image", "words"), [
    ({"type": "base64", "value": "%%%%"}, ("zero bytes",)),
    ({"type": "base64", "value": base64.b64encode(b"not an image at all").decode()}, ("not a PNG",)),
    ({"type": "numpy", "value": base64.b64encode(__import__("pickle").dumps(np.zeros((4, 4, 3), np.uint8))).decode()},
     ("pickle",)),
    ({"type": "numpy", "value": npy_b64(np.zeros((4, 4, 3), np.float32))}, ("uint8",)),
    ({"type": "numpy", "value": npy_b64(np.zeros((4, 4, 2), np.uint8))}, ("HxW",)),
    ({"type": "url", "value": "http://127.0.0.1:9/x.png"}, ("disabled",)),
    ({"type": "file", "value": "/etc/passwd"}, ("not accepted",)),
    ({"type": "gif", "value": "x"}, ("image.type",)),
])
def test_bad_images(client, image, words):
    refused(client.post("/sam2/embed_image", json={"image": image}), 400, *words)


def test_prompt_limits_and_bad_prompts(client, embedded):
    seg = lambda **b: client.post("/sam2/segment_image", json={"image_id": embedded, **b})  # noqa: E731
    refused(seg(prompts=[CLICK] * 5), 400, "at most 4")
    refused(seg(prompts=[{"points": [{"x": 1, "y": 1, "positive": True}] * 6}]), 400, "at most 5")
    refused(seg(prompts=[]), 400, "empty")
    refused(seg(prompts=[{"box": None, "points": []}]), 400, "neither")
    refused(seg(prompts=[{"points": [{"x": 600, "y": 1, "positive": True}]}]), 400, "outside")
    refused(seg(prompts=[CLICK], format="xml"), 400, "format")
    refused(seg(prompts=[{"box": {"x": 5, "y": 5, "width": -3, "height": 4}}]), 400, "width")
    refused(client.post("/sam2/segment_image", json={"image_id": "never-seen", "prompts": [CLICK]}), 400, "not cached")
    refused(client.post("/sam2/segment_image", json={"prompts": [CLICK]}), 400, "image")
    refused(client.post("/sam2/segment_image", content=b"{not json", headers={"content-type": "application/json"}), 400)
    refused(client.get("/nowhere"), 404)


def test_full_encode_queue_answers_503_with_retry_after(server, client):
    lane, gate = server.service.encode_lane, threading.Event()
    for _ in range(lane.capacity):
        lane.post(gate.wait)
    try:
        r = client.post("/sam2/embed_image", json={"image": {"type": "base64", "value": png_b64(np.full((8, 8, 3), 7, np.uint8))}})
        refused(r, 503, "queue is full")
        assert int(r.headers["retry-after"]) >= 1
    finally:
        gate.set()


def test_full_click_queue_answers_503(server, client, embedded):
    """Two requests of 4 clicks fill the 8-click queue while the decoder is held; the third is refused at once."""
    lane, gate = server.service.decode_lane, threading.Event()
    lane.post(gate.wait)
    four = {"image_id": embedded, "format": "rle", "prompts": [CLICK] * 4}
    codes: list[int] = []
    threads = [threading.Thread(target=lambda: codes.append(server.client().post("/sam2/segment_image", json=four).status_code))
               for _ in range(2)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        while server.service.batcher.depth < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        r = client.post("/sam2/segment_image", json=four)
        refused(r, 503, "click queue is full")
        assert r.headers["retry-after"] == "1"
    finally:
        gate.set()
        for t in threads:
            t.join(timeout=120)
    assert codes == [200, 200]


def test_api_key_everywhere_and_constant_time(server):
    key = "s3cret-key-for-tests"
    with serve(server, api_key=key) as keyed, keyed.client() as c:
        refused(c.post("/sam2/embed_image", json={"image_id": "x"}), 401, "API key")
        refused(c.post("/sam2/embed_image", json={"image_id": "x"}, headers={"Authorization": "Bearer wrong"}), 401)
        refused(c.get("/metrics"), 401)
        refused(c.get("/info"), 401)
        refused(c.get("/video/sessions/abc"), 401)
        body = {"image": {"type": "base64", "value": png_b64(np.full((8, 8, 3), 9, np.uint8))}}
        assert c.post("/sam2/embed_image", json={**body, "api_key": key}).status_code == 200
        assert c.post("/sam2/embed_image", json=body, params={"api_key": key}).status_code == 200
        assert c.post("/sam2/embed_image", json=body, headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert c.get("/metrics", headers={"Authorization": f"Bearer {key}"}).status_code == 200
        assert c.get("/video/sessions/abc", params={"api_key": key}).status_code == 404
        assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 200 and c.get("/").status_code == 200
    import inspect

    from sam2edge.server import auth

    assert "compare_digest" in inspect.getsource(auth.valid)


def test_cors_off_unless_configured(server, client):
    hdrs = {"Origin": "http://example.org"}
    assert "access-control-allow-origin" not in client.get("/healthz", headers=hdrs).headers
    pre = client.options("/sam2/segment_image", headers={**hdrs, "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in pre.headers
    with serve(server, cors_origins=("http://example.org",)) as open_, open_.client() as c:
        assert c.get("/healthz", headers=hdrs).headers["access-control-allow-origin"] == "http://example.org"
        assert "access-control-allow-origin" not in c.get("/healthz", headers={"Origin": "http://evil.test"}).headers


def test_not_ready_until_loaded(settings):
    """The model loads in the background: /healthz answers at once, /readyz and the model routes say 503."""
    from sam2edge.server.app import create_app

    gate = threading.Event()
    running = start(create_app(settings, loader=lambda service: gate.wait(60)), settings)
    try:
        with running.client() as c:
            assert c.get("/healthz").status_code == 200
            r = c.get("/readyz")
            assert r.status_code == 503 and r.json()["ready"] is False and "Retry-After" in r.headers
            refused(c.post("/sam2/segment_image", json={"image_id": "x", "prompts": [CLICK]}), 503, "loading")
    finally:
        gate.set()
        running.stop()


def test_metrics_exposition(client, embedded):
    client.post("/sam2/segment_image", json={"image_id": embedded, "prompts": [CLICK], "format": "rle"})
    text = client.get("/metrics").text
    for needle in ('sam2edge_requests_total{method="POST",route="/sam2/segment_image",status="200"}',
                   'sam2edge_request_seconds_bucket{le="0.005",route="/sam2/segment_image"}',
                   'sam2edge_queue_depth{lane="encode"}', 'sam2edge_queue_depth{lane="clicks"}',
                   "sam2edge_decoder_batch_size_count", "sam2edge_embeddings_cache_hits_total",
                   "sam2edge_embeddings_cache_bytes", "sam2edge_logits_cache_entries",
                   'sam2edge_backend_info{backend="onnxruntime-cpu"', "sam2edge_ready 1.0", "sam2edge_video_sessions",
                   "process_resident_memory_bytes"):
        assert needle in text, needle


def test_non_loopback_needs_an_api_key(capsys):
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.20")
    with pytest.raises(ValueError, match="API key"):
        ServerSettings(host="0.0.0.0").check()
    ServerSettings(host="0.0.0.0", api_key="long-enough-key").check()
    from sam2edge.cli import main

    assert main(["serve", "--host", "0.0.0.0", "--model", "sam2.1_hiera_tiny"]) == 1
    assert "without an API key" in capsys.readouterr().err
    assert main(["serve", "--host", "0.0.0.0", "--api-key", "short"]) == 1
    assert "at least 8" in capsys.readouterr().err


def test_url_images_only_when_enabled(server, photo, embedded, tmp_path):
    import functools
    import http.server

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    (tmp_path / "photo.png").write_bytes(base64.b64decode(png_b64(photo)))
    (tmp_path / "big.png").write_bytes(b"\0" * (TEST_LIMITS["max_body_bytes"] + 10))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(tmp_path)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    url = lambda v: {"image": {"type": "url", "value": v}}  # noqa: E731
    try:
        with serve(server, allow_url_images=True) as srv, srv.client() as c:
            r = c.post("/sam2/embed_image", json=url(base + "/photo.png"))
            assert r.status_code == 200 and r.json()["image_id"] == embedded  # same pixels, same cached embedding
            refused(c.post("/sam2/embed_image", json=url(base + "/big.png")), 413)
            refused(c.post("/sam2/embed_image", json=url("file:///etc/passwd")), 400, "http(s)")
            refused(c.post("/sam2/embed_image", json=url(base + "/missing.png")), 400, "could not be fetched")
    finally:
        httpd.shutdown()
