"""The tiny export served by a real tritonserver (Python backend around our ONNX Runtime runner), driven through
the triton backend: the predictor and the tracker give what the ONNX Runtime backend gives in this process.

Each test prints its worst differences and its duration; the server start is printed by the fixture."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from sam2edge import AutoModel
from sam2edge.contract.artifacts import Artifact
from sam2edge.contract.serving import parse_triton_url
from sam2edge.errors import BackendUnavailableError
from tests.video.clip import make_clip

MIN_IOU = 0.999


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


@pytest.fixture(scope="module")
def models(triton_served, tiny_export):
    url, _ = triton_served
    served = AutoModel.from_pretrained(url, video=True)
    local = AutoModel.from_pretrained(str(tiny_export.onnx_dir), backend="onnxruntime", device="cpu", threads=2, video=True)
    assert served.active_backend == "triton" and local.active_backend == "onnxruntime-cpu"
    return served, local


def test_images_on_triton_equal_onnxruntime(models, triton_served):
    t0 = time.perf_counter()
    served, local = models
    clip = make_clip(num_frames=3, height=120, width=160, seed=3)
    images = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in clip.frames]
    # Three clients at once: while the first image encodes, the other two queue and Triton's dynamic
    # batcher hands them to the encoder together (its batch axis is a true one).
    embedded: list = [None] * 3
    threads = [threading.Thread(target=lambda i=i: embedded.__setitem__(i, served.embed_images(images[i])[0])) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    reference = local.embed_images(images)
    worst_embed = max(float(np.abs(e.embeddings - r.embeddings).max()) for e, r in zip(embedded, reference))
    stats = _encoder_batch_sizes(triton_served[0])
    worst_iou, worst_score = 1.0, 0.0
    for i, (e, r) in enumerate(zip(embedded, reference)):
        x, y = clip.center(1, i)
        prompts = {"point_coordinates": np.array([[x, y], [x + 30, y + 20]], np.float32),
                   "point_labels": np.array([1, 0], np.int32), "boxes": np.array(clip.boxes[2][i], np.float32)}
        for multimask in (False, True):
            a = served.segment_images(embeddings=e, multi_mask_output=multimask, **prompts)[0]
            b = local.segment_images(embeddings=r, multi_mask_output=multimask, **prompts)[0]
            worst_iou = min([worst_iou] + [iou(m, n) for m, n in zip(a.masks, b.masks)])
            worst_score = max(worst_score, float(np.abs(np.asarray(a.scores) - np.asarray(b.scores)).max()))
    print(f"images: worst mask IoU {worst_iou:.6f}, worst score diff {worst_score:.2e}, worst embedding diff "
          f"{worst_embed:.2e}; encoder batch sizes executed {stats}; {time.perf_counter() - t0:.1f} s")
    assert worst_iou >= MIN_IOU and worst_score < 1e-4 and worst_embed < 1e-4
    assert sum(stats.values()) >= 1


def _encoder_batch_sizes(url: str) -> dict[int, int]:
    """batch size -> executions, from the server's statistics of the image encoder."""
    import tritonclient.grpc as grpcclient

    address = parse_triton_url(url)
    client = grpcclient.InferenceServerClient(address.endpoint)
    stats = client.get_inference_statistics(address.model(Artifact.IMAGE_ENCODER), as_json=True)
    rows = stats["model_stats"][0].get("batch_stats", [])
    return {int(r["batch_size"]): int(r["compute_infer"]["count"]) for r in rows}


def test_tracker_on_triton_equals_onnxruntime(models, tmp_path):
    t0 = time.perf_counter()
    served, local = models
    clip = make_clip(num_frames=2, height=96, width=128, seed=5)  # frame 1 runs every artifact
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(clip.frames):
        cv2.imwrite(str(folder / f"{i:05d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    masks = []
    for model in (served, local):
        per_frame = {}
        with model.track(str(folder)) as tracker:
            tracker.add_points(0, 1, box=clip.boxes[1][0])
            tracker.add_points(0, 2, points=[clip.center(2, 0)], labels=[1])
            for result in tracker.propagate():
                per_frame[result.frame_idx] = np.stack([result.mask_of(1), result.mask_of(2)])
        masks.append(per_frame)
    assert sorted(masks[0]) == sorted(masks[1]) == [0, 1]
    worst = min(iou(a, b) for f in masks[0] for a, b in zip(masks[0][f], masks[1][f]))
    print(f"video: 2 frames x 2 objects, worst mask IoU {worst:.6f}; {time.perf_counter() - t0:.1f} s")
    assert worst >= MIN_IOU


def test_a_prefix_the_server_does_not_serve_is_refused(triton_served):
    url, server = triton_served
    with pytest.raises(BackendUnavailableError, match="no sam2edge model"):
        AutoModel.from_pretrained(f"triton://127.0.0.1:{server.port}/not_there")
