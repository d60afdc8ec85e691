"""Video sessions end to end over HTTP: prompts, streamed propagation (NDJSON and SSE), cancellation,
objects, masks, frames, limits; the masks compared with ``model.track`` on the same file."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from sam2edge.server.encoding import rle_decode, rle_encode
from tests.server.conftest import CLIP_FRAMES, serve
from tests.server.test_limits import refused
from tests.video.clip import make_clip

CLIP = make_clip(num_frames=CLIP_FRAMES)
N = CLIP_FRAMES


def pt(x: float, y: float, positive: bool = True) -> dict:
    return {"x": x, "y": y, "positive": positive}


def centre_box(obj: int, frame: int = 0) -> dict:
    x0, y0, x1, y1 = CLIP.boxes[obj][frame]
    return {"x": (x0 + x1) / 2, "y": (y0 + y1) / 2, "width": x1 - x0, "height": y1 - y0}


def upload(client, path) -> dict:
    with open(path, "rb") as f:
        r = client.post("/video/sessions", files={"file": (path.name, f, "video/x-msvideo")})
    assert r.status_code == 200, r.text
    return r.json()


def lines(response) -> list[dict]:
    return [json.loads(ln) for ln in response.iter_lines() if ln.strip()]


@pytest.fixture(scope="module")
def session(client, clip_file):
    info = upload(client, clip_file)
    yield info
    client.delete(f"/video/sessions/{info['session_id']}")


def test_session_end_to_end_matches_the_library(server, client, session, clip_file):
    sid = session["session_id"]
    assert (session["num_frames"], session["height"], session["width"]) == (N, 96, 128)
    cx, cy = CLIP.center(1, 0)
    r1 = client.post(f"/video/sessions/{sid}/prompts", json={"frame_idx": 0, "obj_id": 1, "points": [pt(cx, cy)]})
    r2 = client.post(f"/video/sessions/{sid}/prompts", json={"frame_idx": 0, "obj_id": 2, "box": centre_box(2)})
    assert r1.status_code == r2.status_code == 200, (r1.text, r2.text)
    assert [o["obj_id"] for o in r2.json()["objects"]] == [1, 2]
    with client.stream("POST", f"/video/sessions/{sid}/propagate", json={}) as resp:
        assert resp.status_code == 200 and resp.headers["content-type"].startswith("application/x-ndjson")
        got = lines(resp)
    assert [m["event"] for m in got] == ["frame"] * N + ["done"] and got[-1]["frames"] == N

    # the library on the same file with the same prompts
    tracker = server.service.model.track(str(clip_file))
    first = tracker.add_points(0, 1, [[cx, cy]], [1])
    b = centre_box(2)
    second = tracker.add_points(0, 2, box=[b["x"] - b["width"] / 2, b["y"] - b["height"] / 2,
                                            b["x"] + b["width"] / 2, b["y"] + b["height"] / 2])
    assert np.array_equal(rle_decode(r1.json()["objects"][0]["mask"]), first.masks[0])
    assert np.array_equal(rle_decode(r2.json()["objects"][1]["mask"]), second.masks[1])
    for line, ref in zip(got, tracker.propagate()):
        assert line["frame_idx"] == ref.frame_idx
        for obj, mask, score in zip(line["objects"], ref.masks, ref.object_scores):
            assert np.array_equal(rle_decode(obj["mask"]), mask) and obj["area"] == int(mask.sum())
            assert obj["score"] == pytest.approx(float(score), abs=1e-6)
    tracker.close()
    areas = [[o["area"] for o in m["objects"]] for m in got[:N]]
    print(f"propagated {N} frames, mask areas per object {areas}")

    # backwards, as server-sent events: frame 1 only (max_frames counts the frames after the start)
    with client.stream("POST", f"/video/sessions/{sid}/propagate", json={"start_frame_idx": 1, "reverse": True, "max_frames": 0},
                       headers={"Accept": "text/event-stream"}) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(ln[len("data: "):]) for ln in resp.iter_lines() if ln.startswith("data: ")]
    assert [(e["event"], e.get("frame_idx")) for e in events] == [("frame", 1), ("done", None)]

    info = client.get(f"/video/sessions/{sid}").json()
    assert info["obj_ids"] == [1, 2] and info["memory_bytes"] > 0 and info["busy"] is False
    jpeg = client.get(f"/video/sessions/{sid}/frames/{N - 1}")
    assert jpeg.headers["content-type"] == "image/jpeg" and jpeg.content[:2] == b"\xff\xd8"
    refused(client.get(f"/video/sessions/{sid}/frames/99"), 404)


def test_mask_prompt_remove_object_and_errors(client, session):
    sid = session["session_id"]
    mask = np.zeros((96, 128), bool)
    mask[10:40, 60:100] = True
    r = client.post(f"/video/sessions/{sid}/mask", json={"frame_idx": 1, "obj_id": 3, "mask": rle_encode(mask)})
    assert r.status_code == 200, r.text
    assert 3 in [o["obj_id"] for o in r.json()["objects"]]
    assert client.delete(f"/video/sessions/{sid}/objects/3").json()["obj_ids"] == [1, 2]
    refused(client.delete(f"/video/sessions/{sid}/objects/3"), 404, "no object 3")
    refused(client.post(f"/video/sessions/{sid}/mask", json={"frame_idx": 1, "obj_id": 3,
                                                          "mask": {"size": [96, 128], "counts": "0"}}), 400, "runs sum")
    refused(client.post(f"/video/sessions/{sid}/prompts", json={"frame_idx": N, "obj_id": 1, "points": [pt(5, 5)]}), 400, "outside")
    refused(client.post(f"/video/sessions/{sid}/prompts", json={"frame_idx": 0, "obj_id": 1}), 400, "points and/or a box")
    refused(client.get("/video/sessions/nope"), 404)


def test_cancel_and_disconnect_stop_a_propagation(server, client, session):
    sid = session["session_id"]
    if not client.get(f"/video/sessions/{sid}").json()["obj_ids"]:  # run alone: give it an object first
        cx, cy = CLIP.center(1, 0)
        client.post(f"/video/sessions/{sid}/prompts", json={"frame_idx": 0, "obj_id": 1, "points": [pt(cx, cy)]})
    seen: list[dict] = []
    with client.stream("POST", f"/video/sessions/{sid}/propagate", json={}) as resp:
        for ln in resp.iter_lines():
            if not ln.strip():
                continue
            seen.append(json.loads(ln))
            if len(seen) == 1:
                with server.client() as other:
                    refused(other.post(f"/video/sessions/{sid}/prompts",
                                       json={"frame_idx": 0, "obj_id": 1, "points": [pt(5, 5)]}), 409, "busy")
                assert client.post(f"/video/sessions/{sid}/cancel").json()["cancelling"] is True
    assert seen[-1]["event"] == "cancelled" and seen[-1]["frames"] < N
    # a client that goes away mid-stream: the session is released
    with client.stream("POST", f"/video/sessions/{sid}/propagate", json={}) as resp:
        next(ln for ln in resp.iter_lines() if ln.strip())
    deadline = time.monotonic() + 60
    while client.get(f"/video/sessions/{sid}").json()["busy"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.get(f"/video/sessions/{sid}").json()["busy"] is False
    lane = server.service.encode_lane  # the frame that was running finishes, then the generator is closed
    deadline = time.monotonic() + 300  # one frame step: ~3 s on a quiet 2-core CPU, much more on a loaded one
    while lane.depth and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lane.depth == 0


def test_session_limits_media_folder_and_expiry(server, clip_file):
    with serve(server, session_idle_s=0.4, max_video_frames=N - 1, max_sessions=1) as srv, srv.client() as c:
        refused(c.post("/video/sessions", json={"path": clip_file.name}), 413, f"at most {N - 1}")
    with serve(server, session_idle_s=0.4, max_sessions=1) as srv, srv.client() as c:
        refused(c.post("/video/sessions", json={"path": "../../etc/passwd"}), 403, "outside")
        refused(c.post("/video/sessions", json={"path": "/etc/passwd"}), 403, "outside")
        refused(c.post("/video/sessions", json={"path": "missing.avi"}), 404)
        refused(c.post("/video/sessions", files={"file": ("notes.txt", b"hello", "text/plain")}), 400, "not a video")
        refused(c.post("/video/sessions", files={"file": ("big.avi", b"\0" * (3 << 20), "video/x-msvideo")}), 413)
        sid = c.post("/video/sessions", json={"path": clip_file.name}).json()["session_id"]
        refused(c.post("/video/sessions", json={"path": clip_file.name}), 503, "sessions are open")
        time.sleep(1.5)  # idle > 0.4 s: the janitor closes it
        refused(c.get(f"/video/sessions/{sid}"), 404)
        assert c.post("/video/sessions", json={"path": clip_file.name}).status_code == 200


def test_close_deletes_the_upload(server, client, clip_file):
    info = upload(client, clip_file)
    session = server.app.state.sessions.sessions[info["session_id"]]
    folder = session.folder
    assert folder is not None and any(folder.iterdir())
    assert client.delete(f"/video/sessions/{info['session_id']}").json() == {"closed": info["session_id"]}
    deadline = time.monotonic() + 30
    while folder.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not folder.exists()
    refused(client.get(f"/video/sessions/{info['session_id']}"), 404)


def test_closing_during_propagation(server, client, clip_file):
    """DELETE while a propagation streams: the stream ends and the tracker is closed after the running frame."""
    info = upload(client, clip_file)
    sid = info["session_id"]
    cx, cy = CLIP.center(1, 0)
    assert client.post(f"/video/sessions/{sid}/prompts", json={"frame_idx": 0, "obj_id": 1, "points": [pt(cx, cy)]}).status_code == 200
    done = threading.Event()
    out: list[dict] = []

    def read() -> None:
        with server.client() as c2, c2.stream("POST", f"/video/sessions/{sid}/propagate", json={}) as resp:
            for ln in resp.iter_lines():
                if ln.strip():
                    out.append(json.loads(ln))
                    if len(out) == 1:
                        c2.delete(f"/video/sessions/{sid}")
        done.set()

    t = threading.Thread(target=read)
    t.start()
    assert done.wait(120)
    t.join()
    assert out[-1]["event"] in ("cancelled", "error", "done") and len(out) <= N + 1
