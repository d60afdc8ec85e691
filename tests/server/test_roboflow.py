"""Roboflow-format /sam2/embed_image and /sam2/segment_image over HTTP, checked against the library.

Every mask that comes back is compared with what ``model.segment_images`` returns for the same
prompt on the same cached embedding: exactly (RLE, npz), or through the same polygon encoder.
"""

from __future__ import annotations

import io
import threading
import time

import numpy as np
import pytest

from sam2edge.server.encoding import polygons, rle_decode
from tests.server.conftest import npy_b64, png_b64


def point(x: float, y: float, positive: bool = True) -> dict:
    return {"x": x, "y": y, "positive": positive}


def library(server, image_id: str, coords=None, labels=None, box=None, mask=None, multimask=True, logits=False):
    """The library's own answer on the server's cached embedding (best mask, its score, its low-res logits)."""
    emb = server.service.model.cached_embeddings(image_id)
    kwargs = {}
    if coords is not None:
        kwargs.update(point_coordinates=np.array(coords, np.float32), point_labels=np.array(labels, np.int32))
    if box is not None:
        kwargs["boxes"] = np.array(box, np.float32)
    if mask is not None:
        kwargs["mask_input"] = mask
    pred = server.service.model.segment_images(embeddings=emb, multi_mask_output=multimask, return_logits=logits, **kwargs)[0]
    best = int(np.argmax(pred.scores))
    return pred.masks[best], float(pred.scores[best]), pred.logits[best]


def segment(client, **body):
    r = client.post("/sam2/segment_image", json=body)
    assert r.status_code == 200, r.text
    return r


def test_embed_returns_id_and_reuses_the_cache(server, client, photo, embedded):
    hits = server.service.embeddings_cache.stats()["hits"]
    again = client.post("/sam2/embed_image", json={"image": {"type": "base64", "value": png_b64(photo)}})
    assert again.status_code == 200 and again.json()["image_id"] == embedded
    assert set(again.json()) == {"image_id", "time"}
    # The .npy form of the same pixels (BGR, as Roboflow's numpy images) lands on the same cached embedding.
    npy = client.post("/sam2/embed_image", json={"image": {"type": "numpy", "value": npy_b64(photo[:, :, ::-1].copy())}})
    assert npy.json()["image_id"] == embedded
    assert server.service.embeddings_cache.stats()["hits"] >= hits + 2
    named = client.post("/sam2/embed_image", json={"image_id": embedded})  # id only: already cached
    assert named.status_code == 200 and named.json()["image_id"] == embedded


def test_every_format_matches_the_library(server, client, embedded, photo):
    prompts = [{"points": [point(250, 200)]}, {"box": {"x": 256, "y": 250, "width": 200, "height": 260}}]
    refs = [library(server, embedded, [[250, 200]], [1]), library(server, embedded, box=[156, 120, 356, 380])]
    rle = segment(client, image_id=embedded, prompts=prompts, format="rle").json()
    as_json = segment(client, image_id=embedded, prompts={"prompts": prompts}, format="json").json()
    assert set(rle) == {"predictions", "time"} and len(rle["predictions"]) == 2
    for p_rle, p_json, (mask, score, _) in zip(rle["predictions"], as_json["predictions"], refs):
        assert p_rle["format"] == "rle" and p_json["format"] == "polygon"
        assert p_rle["masks"]["size"] == [512, 512]
        assert np.array_equal(rle_decode(p_rle["masks"]), mask)
        assert p_json["masks"] == polygons(mask)
        assert p_rle["confidence"] == pytest.approx(score, abs=1e-7) == p_json["confidence"]
    # binary: Roboflow's npz with the chosen full-size logits and low-res logits per prompt
    r = segment(client, image=None, image_id=embedded, prompts=prompts, format="binary")
    assert r.headers["content-type"] == "application/octet-stream"
    npz = np.load(io.BytesIO(r.content), allow_pickle=False)
    assert npz["masks"].shape == (2, 512, 512) and npz["low_res_masks"].shape == (2, 256, 256)
    full, _, low = library(server, embedded, [[250, 200]], [1], logits=True)
    assert np.array_equal(npz["masks"][0], full) and np.array_equal(npz["low_res_masks"][0], low)
    assert np.array_equal(npz["masks"][0] > 0, refs[0][0])


def test_roboflow_input_shapes(client, embedded, photo):
    """A single prompt dict, a flat list and the nested set all work; extra Roboflow fields are ignored;
    the image may come with the id (not decoded when cached) or alone."""
    base = {"sam2_version_id": "hiera_tiny", "id": "x", "usage_billable": True, "api_key": None}
    one = segment(client, **base, image_id=embedded, prompts={"points": [point(100, 100)]}, format="rle").json()
    flat = segment(client, **base, image_id=embedded, prompts=[{"points": [point(100, 100)]}], format="rle").json()
    full = segment(client, image={"type": "base64", "value": png_b64(photo)}, prompts={"prompts": [{"points": [point(100, 100)]}]},
                   format="rle").json()
    assert one["predictions"][0]["masks"] == flat["predictions"][0]["masks"] == full["predictions"][0]["masks"]


def test_multimask_alternatives_extension(server, client, embedded):
    pred = segment(client, image_id=embedded, prompts=[{"points": [point(300, 300)]}], format="rle",
                   include_alternatives=True).json()["predictions"][0]
    emb = server.service.model.cached_embeddings(embedded)
    ref = server.service.model.segment_images(embeddings=emb, point_coordinates=np.array([[300.0, 300.0]]),
                                             point_labels=np.array([1]))[0]
    assert len(pred["alternatives"]) == 2
    got = sorted([pred["confidence"]] + [a["confidence"] for a in pred["alternatives"]])
    assert got == pytest.approx(sorted(np.asarray(ref.scores).tolist()), abs=1e-7)
    assert pred["confidence"] == pytest.approx(float(np.max(ref.scores)), abs=1e-7)
    single = segment(client, image_id=embedded, prompts=[{"points": [point(300, 300)]}], multimask_output=False,
                     format="rle", include_alternatives=True).json()["predictions"][0]
    assert single["alternatives"] == []


@pytest.mark.parametrize("flags", [{"save_logits_to_cache": True, "load_logits_from_cache": True},
                                   {"use_mask_input_cache": True}])
def test_logits_cache_refines_the_next_click(server, client, embedded, flags):
    first = [point(200, 260)]
    segment(client, image_id=embedded, prompts=[{"points": first}], format="rle", **flags)
    second = first + [point(320, 180, False)]
    got = segment(client, image_id=embedded, prompts=[{"points": second}], format="rle", **flags).json()["predictions"][0]
    _, _, prior = library(server, embedded, [[200, 260]], [1])
    refined, score, _ = library(server, embedded, [[200, 260], [320, 180]], [1, 0], mask=prior[None])
    plain, plain_score, _ = library(server, embedded, [[200, 260], [320, 180]], [1, 0])
    assert np.array_equal(rle_decode(got["masks"]), refined)
    assert got["confidence"] == pytest.approx(score, abs=1e-7)
    assert not (np.array_equal(refined, plain) and score == plain_score), "the mask input changed nothing"
    without = segment(client, image_id=embedded, prompts=[{"points": second}], format="rle").json()["predictions"][0]
    assert np.array_equal(rle_decode(without["masks"]), plain)


def test_concurrent_clicks_are_coalesced_and_exact(server, client, embedded):
    """Clicks from many clients on one cached image: batched decoder calls, results identical to single calls."""
    lane = server.service.decode_lane
    gate = threading.Event()
    lane.post(gate.wait)  # hold the decoder so the clicks pile up and form batches
    clicks = [[[60.0 + 45 * i, 90.0 + 30 * i]] for i in range(6)] + [[[100.0, 400.0], [420.0, 90.0]], [[380.0, 300.0], [50.0, 50.0]]]
    labels = [[1]] * 6 + [[1, 0], [1, 1]]
    results: dict[int, dict] = {}

    def send(i: int) -> None:
        with server.client() as c:
            body = {"image_id": embedded, "format": "rle",
                    "prompts": [{"points": [point(x, y, bool(lab)) for (x, y), lab in zip(clicks[i], labels[i])]}]}
            results[i] = c.post("/sam2/segment_image", json=body).json()

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(clicks))]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while server.service.batcher.depth < len(clicks) and time.monotonic() < deadline:
        time.sleep(0.01)
    gate.set()
    for t in threads:
        t.join(timeout=120)
    for i in range(len(clicks)):
        mask, score, _ = library(server, embedded, clicks[i], labels[i])
        pred = results[i]["predictions"][0]
        assert np.array_equal(rle_decode(pred["masks"]), mask), f"click {i} differs from its own call"
        assert pred["confidence"] == score  # bit-identical: same rows of the same graph
    text = client.get("/metrics").text
    singles = float(next(ln.split()[-1] for ln in text.splitlines() if ln.startswith('sam2edge_decoder_batch_size_bucket{le="1.0"}')))
    count = float(next(ln.split()[-1] for ln in text.splitlines() if ln.startswith("sam2edge_decoder_batch_size_count")))
    print(f"decoder calls so far: {count:.0f}, of which single-prompt: {singles:.0f}")
    assert count > singles, "no decoder call ever held more than one prompt"
