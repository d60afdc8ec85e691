"""The camera WebSocket: prompts once, then JPEG frames; each answer equals ``model.stream`` on the same frames."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sam2edge.server.encoding import rle_decode
from tests.server.conftest import CLIP_FRAMES
from tests.video.clip import make_clip

ws_client = pytest.importorskip("websockets.sync.client")
CLIP = make_clip(num_frames=CLIP_FRAMES)


def jpeg(rgb: np.ndarray) -> bytes:
    import cv2

    ok, data = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 95])
    assert ok
    return data.tobytes()


def ws_url(server, query: str = "") -> str:
    return server.url.replace("http://", "ws://") + "/stream" + query


def test_stream_tracks_frames_like_the_library(server):
    import cv2

    cx, cy = CLIP.center(1, 0)
    frames = [jpeg(f) for f in CLIP.frames[:2]]
    with ws_client.connect(ws_url(server), max_size=1 << 22) as ws:
        ws.send(json.dumps({"prompts": []}))
        assert json.loads(ws.recv())["pending"] == 0
        ws.send(frames[0])  # a frame before any prompt
        err = json.loads(ws.recv())
        assert err["event"] == "error" and err["status"] == 400 and "prompts" in err["message"]
        ws.send("{not json")
        assert json.loads(ws.recv())["status"] == 400  # the stream stays open
        ws.send(json.dumps({"prompts": [{"obj_id": 1, "points": [{"x": cx, "y": cy, "positive": True}]}]}))
        assert json.loads(ws.recv()) == {"event": "prompts", "pending": 1, "time": pytest.approx(0, abs=5)}
        answers = []
        for data in frames:
            ws.send(data)
            answers.append(json.loads(ws.recv()))
        ws.send(json.dumps({"prompts": [{"obj_id": 1, "points": [{"x": cx, "y": cy, "positive": False}]}]}))
        corrected = json.loads(ws.recv())
    assert [a["frame_idx"] for a in answers] == [0, 1] and corrected["frame_idx"] == 1
    assert all(a["event"] == "frame" for a in answers + [corrected])

    # the library on the same decoded frames
    rgbs = [cv2.imdecode(np.frombuffer(d, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1].copy() for d in frames]
    stream = server.service.model.stream(rgbs[0], {1: {"points": [[cx, cy]], "labels": [1]}}, input_color_format="rgb")
    refs = [stream.first_result, stream.track(rgbs[1])]
    refs.append(stream.add_prompt(1, points=[[cx, cy]], labels=[0]))
    stream.close()
    for got, ref in zip(answers + [corrected], refs):
        assert np.array_equal(rle_decode(got["objects"][0]["mask"]), ref.masks[0])
        assert got["objects"][0]["score"] == pytest.approx(float(ref.object_scores[0]), abs=1e-6)
    print("stream areas", [a["objects"][0]["area"] for a in answers + [corrected]])


def test_stream_refusals(server):
    from websockets.exceptions import ConnectionClosed, InvalidStatus

    from tests.server.conftest import serve

    with serve(server, api_key="stream-key-123") as keyed:
        with pytest.raises((InvalidStatus, ConnectionClosed)):
            with ws_client.connect(ws_url(keyed)) as ws:
                ws.recv()
        with ws_client.connect(ws_url(keyed, "?api_key=stream-key-123")) as ws:
            ws.send(json.dumps({"prompts": []}))
            assert json.loads(ws.recv())["event"] == "prompts"
    with ws_client.connect(ws_url(server)) as first:  # max_streams = 1
        first.send(json.dumps({"prompts": []}))
        first.recv()
        with pytest.raises((InvalidStatus, ConnectionClosed)):
            with ws_client.connect(ws_url(server)) as second:
                second.recv()
        big = b"\xff\xd8" + b"\0" * (1 << 20)  # over max_frame_bytes (1 MiB)
        first.send(big)
        err = json.loads(first.recv())
        assert err["status"] == 413
