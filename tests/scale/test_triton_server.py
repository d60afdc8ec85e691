"""The tiny export served by a real tritonserver (Python backend around our ONNX Runtime runner), driven through
the triton backend: the predictor and the tracker give what the ONNX Runtime backend gives in this process
(the session's single-process reference of the labelling jobs, see conftest).

Each test prints its worst differences and its duration; the server start is printed by the fixture."""

from __future__ import annotations

import threading
import time

import pytest

from sam2edge import AutoModel
from sam2edge.contract.artifacts import Artifact
from sam2edge.contract.serving import parse_triton_url
from sam2edge.errors import BackendUnavailableError
from sam2edge.scale.labels import segment_job, track_job
from tests.scale.compare import compare_images, compare_videos

MIN_IOU = 0.999  # the served models run ONNX Runtime with 2 threads, the reference with 1: sums may round apart


@pytest.fixture(scope="module")
def served(triton_served):
    model = AutoModel.from_pretrained(triton_served[0], video=True)
    assert model.active_backend == "triton"
    return model


def test_images_on_triton_equal_onnxruntime(served, triton_served, labelling):
    """The labelling jobs through the served model, two clients at once: while one image encodes, the other
    queues and Triton's dynamic batcher may hand both to the encoder together (its batch axis is a true one)."""
    t0 = time.perf_counter()
    jobs = [j for j, r in zip(labelling.image_jobs, labelling.images) if "error" not in r]
    results: list = [None] * len(jobs)
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, segment_job(served, jobs[i]))) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(600)
    assert all(r is not None for r in results), "a client did not finish"
    worst_iou, worst_score = compare_images(results, [r for r in labelling.images if "error" not in r])
    stats = _encoder_batch_sizes(triton_served[0])
    print(f"images: {len(jobs)} images, worst mask IoU {worst_iou:.6f}, worst score diff {worst_score:.2e}; "
          f"encoder batch sizes executed {stats}; {time.perf_counter() - t0:.1f} s")
    assert worst_iou >= MIN_IOU and worst_score < 1e-4
    assert sum(size * count for size, count in stats.items()) == len(jobs)  # every image encoded on the server once


def _encoder_batch_sizes(url: str) -> dict[int, int]:
    """batch size -> executions, from the server's statistics of the image encoder."""
    import tritonclient.grpc as grpcclient

    address = parse_triton_url(url)
    client = grpcclient.InferenceServerClient(address.endpoint)
    stats = client.get_inference_statistics(address.model(Artifact.IMAGE_ENCODER), as_json=True)
    rows = stats["model_stats"][0].get("batch_stats", [])
    return {int(r["batch_size"]): int(r["compute_infer"]["count"]) for r in rows}


def test_tracker_on_triton_equals_onnxruntime(served, labelling):
    """The labelling video through the served models: prompted on frame 1, tracked forward and back to frame 0,
    so every artifact (memory attention and memory encoder included) runs on the server."""
    t0 = time.perf_counter()
    (job,) = labelling.video_jobs
    worst = compare_videos([track_job(served, job)], labelling.videos)
    print(f"video: 2 frames x 2 objects, worst mask IoU {worst:.6f}; {time.perf_counter() - t0:.1f} s")
    assert worst >= MIN_IOU


def test_a_prefix_the_server_does_not_serve_is_refused(triton_served):
    url, server = triton_served
    with pytest.raises(BackendUnavailableError, match="no sam2edge model"):
        AutoModel.from_pretrained(f"triton://127.0.0.1:{server.port}/not_there")
