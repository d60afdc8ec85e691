"""Batch labelling on a local Ray cluster (2 CPUs, 256 MB object store) gives what one process gives (the
session's single-process reference, see conftest): an image set with prompts from a JSONL file through
`sam2edge label` with an actor pool of 2, and a short video in a Ray task (prompted on its last frame:
tracked forward, then back to frame 0).
Every Ray call is bounded in time (a hung cluster fails the test instead of stalling CI)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import pytest

from sam2edge.errors import InputError
from sam2edge.scale.labels import CocoWriter, decode_rle, image_jobs, video_jobs
from sam2edge.scale.ray_label import Workers, track_videos

LIMIT_S = 900  # per Ray call, far above the ~1-3 min one takes on a loaded 2-core machine


def bounded(fn: Callable[[], Any], seconds: float = LIMIT_S) -> Any:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"the Ray call did not finish within {seconds} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def test_jobs_are_read_and_checked(labelling):
    jobs = labelling.image_jobs
    assert [(j["id"], j["file_name"], len(j["prompts"])) for j in jobs] == [(1, "img0.png", 3), (2, "img1.png", 1),
                                                                            (3, "missing.png", 1)]
    assert [p.get("category") for p in jobs[0]["prompts"]] == [None, None, "disc"]
    for bad in ({"image": 3}, {"image": "a.png", "points": [[1, 2]], "labels": [1, 0]}, {"image": "a.png"},
                {"image": "a.png", "box": [1, 2, 3]}):
        with pytest.raises(InputError):
            image_jobs([bad])
    with pytest.raises(InputError, match="objects"):
        video_jobs([{"video": "a.mp4", "objects": []}])


def test_ray_labels_images_like_one_process(ray_cluster, labelling, tiny_export, tmp_path, capsys):
    """``sam2edge label`` on the cluster (an actor pool of 2) writes what the single-process path gives: every
    mask equal, the missing image listed as failed (exit 1), mask PNGs equal to their RLEs."""
    from sam2edge.cli.main import EXIT_ERROR, main

    out = tmp_path / "labels"
    t0 = time.perf_counter()
    code = bounded(lambda: main(["label", "--prompts", str(labelling.jobs_file), "--out", str(out), "--model",
                                 str(tiny_export.onnx_dir), "--backend", "onnxruntime", "--device", "cpu", "--actors", "2",
                                 "--threads", "1", "--json"]))
    t_ray = time.perf_counter() - t0
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert code == EXIT_ERROR and summary | {"seconds": 0} == {"images": 2, "annotations": 4, "failed": 1, "seconds": 0,
                                                                "json": str(out / "annotations.json")}
    assert "3/3 images" in captured.err  # the progress bar reached every job
    doc = json.loads((out / "annotations.json").read_text())
    reference = CocoWriter(tmp_path / "reference", write_masks=False)
    for result in labelling.images:
        reference.add(result)
    want = reference.document()
    assert [a["segmentation"] for a in doc["annotations"]] == [a["segmentation"] for a in want["annotations"]]
    worst = max(abs(a["score"] - b["score"]) for a, b in zip(doc["annotations"], want["annotations"]))
    assert worst < 1e-6
    assert doc["images"] == want["images"] and doc["categories"] == want["categories"]
    assert {c["name"] for c in doc["categories"]} == {"object", "square", "disc"}
    assert [e["file_name"] for e in doc["errors"]] == ["missing.png"] and "could not be read" in doc["errors"][0]["error"]
    for ann in doc["annotations"]:
        png = cv2.imread(str(out / ann["mask_file"]), cv2.IMREAD_GRAYSCALE) > 127
        assert np.array_equal(png, decode_rle(ann["segmentation"])) and int(png.sum()) == ann["area"]
    assert all(a["area"] > 0 for a in doc["annotations"])
    print(f"images: 2 images + 1 missing, 4 masks equal to one process (worst score diff {worst:.1e}); "
          f"sam2edge label on ray (2 actors) {t_ray:.1f} s")


def test_ray_tracks_a_video_like_one_process(ray_cluster, labelling):
    """One Ray task per video: prompted on the clip's last frame, tracked forward and back to frame 0."""
    t0 = time.perf_counter()
    on_ray = bounded(lambda: track_videos(labelling.video_jobs, labelling.request, Workers(actors=1)))
    t_ray = time.perf_counter() - t0
    assert on_ray == labelling.videos
    (video,) = on_ray
    assert video["length"] == 2 and [o["id"] for o in video["objects"]] == [1, 2]
    assert all(s is not None for o in video["objects"] for s in o["segmentations"])  # forward from frame 1, then back to 0
    print(f"video: 2 frames x 2 objects equal to one process; ray task {t_ray:.1f} s")


def test_automatic_masks_plug_in_by_name(tmp_path):
    """The folder path calls ``model.generate_masks`` (automatic mask generation) when the model has it."""
    from sam2edge.scale.labels import encode_rle, folder_jobs, generate_job

    class Generating:
        def generate_masks(self, bgr, **options):
            mask = np.zeros(bgr.shape[:2], bool)
            mask[10:30, 20:60] = True
            return [{"segmentation": mask, "predicted_iou": 0.9, "stability_score": 0.95},
                    {"segmentation": encode_rle(np.zeros((120, 160), bool)), "predicted_iou": 0.5}]  # already RLE

    for name in ("b.png", "a.jpg", "sub/c.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        cv2.imwrite(str(tmp_path / name), np.full((120, 160, 3), 128, np.uint8))
    jobs = folder_jobs(tmp_path)
    assert [j["file_name"] for j in jobs] == ["a.jpg", "b.png", "sub/c.png"]
    result = generate_job(Generating(), jobs[0])
    first, second = result["annotations"]
    assert first["area"] == 800 and first["bbox"] == [20.0, 10.0, 40.0, 20.0] and first["stability_score"] == 0.95
    assert second["area"] == 0 and (result["height"], result["width"]) == (120, 160)
    with pytest.raises(InputError, match="generate_masks"):
        generate_job(object(), jobs[0])
