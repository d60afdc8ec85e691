"""Batch labelling on a local Ray cluster (2 CPUs, 256 MB object store) gives what one process gives:
an image set with prompts from a JSONL file through an actor pool of 2, and a short video in a Ray task
(prompted on its last frame: tracked forward, then back to frame 0).
Every Ray call is bounded in time (a hung cluster fails the test instead of stalling CI)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from sam2edge.errors import InputError
from sam2edge.scale.labels import CocoWriter, ModelRequest, decode_rle, image_jobs, read_jsonl, video_jobs
from sam2edge.scale.ray_label import Workers, label_images, label_images_local, track_videos, track_videos_local
from tests.video.clip import make_clip

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


@pytest.fixture(scope="module")
def request_(tiny_export) -> ModelRequest:
    return ModelRequest(str(tiny_export.onnx_dir), backend="onnxruntime", device="cpu", threads=1, strict=True)


@pytest.fixture(scope="module")
def image_set(tmp_path_factory) -> Path:
    """3 images (one unreadable job added by the test), prompts of every kind, one line merged into another."""
    root = tmp_path_factory.mktemp("images")
    clip = make_clip(num_frames=3, height=120, width=160, seed=7)
    for i, frame in enumerate(clip.frames):
        cv2.imwrite(str(root / f"img{i}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    lines = [
        {"image": "img0.png", "prompts": [{"points": [clip.center(1, 0)], "labels": [1]}, {"box": clip.boxes[2][0]}]},
        {"image": "img1.png", "points": [clip.center(2, 1), [5, 5]], "labels": [1, 0], "category": "square"},
        {"image": "img2.png", "box": clip.boxes[1][2], "points": [clip.center(1, 2)], "labels": [1]},
        {"image": "img0.png", "box": clip.boxes[1][0], "category": "disc"},  # merged into the first job
    ]
    (root / "jobs.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    return root


def test_jobs_are_read_and_checked(image_set):
    jobs = image_jobs(read_jsonl(image_set / "jobs.jsonl"), image_set)
    assert [(j["id"], j["file_name"], len(j["prompts"])) for j in jobs] == [(1, "img0.png", 3), (2, "img1.png", 1),
                                                                            (3, "img2.png", 1)]
    for bad in ({"image": 3}, {"image": "a.png", "points": [[1, 2]], "labels": [1, 0]}, {"image": "a.png"},
                {"image": "a.png", "box": [1, 2, 3]}):
        with pytest.raises(InputError):
            image_jobs([bad])
    with pytest.raises(InputError, match="objects"):
        video_jobs([{"video": "a.mp4", "objects": []}])


def test_ray_labels_images_like_one_process(ray_cluster, image_set, request_, tmp_path):
    jobs = image_jobs(read_jsonl(image_set / "jobs.jsonl"), image_set)
    jobs.append({"id": 4, "file_name": "missing.png", "path": str(image_set / "missing.png"), "prompts": [{"box": [0, 0, 9, 9]}]})
    t0 = time.perf_counter()
    seen: list[tuple[int, int]] = []
    on_ray = bounded(lambda: label_images(jobs, request_, Workers(actors=2), progress=lambda d, t: seen.append((d, t))))
    t_ray = time.perf_counter() - t0
    t0 = time.perf_counter()
    local = label_images_local(jobs, request_)
    t_local = time.perf_counter() - t0
    assert seen[-1] == (4, 4) and [r["id"] for r in on_ray] == [1, 2, 3, 4]
    assert "could not be read" in on_ray[3]["error"]  # a bad job fails alone
    worst = 0.0
    for a, b in zip(on_ray[:3], local[:3]):
        assert [x["segmentation"] for x in a["annotations"]] == [x["segmentation"] for x in b["annotations"]]
        worst = max([worst] + [abs(x["score"] - y["score"]) for x, y in zip(a["annotations"], b["annotations"])])
    assert worst < 1e-6
    writer = CocoWriter(tmp_path / "out")
    for result in on_ray:
        writer.add(result)
    doc = json.loads(writer.write().read_text())
    assert len(doc["images"]) == 3 and len(doc["annotations"]) == 5 and doc["errors"][0]["file_name"] == "missing.png"
    assert {c["name"] for c in doc["categories"]} == {"object", "square", "disc"}
    ann = doc["annotations"][0]
    png = cv2.imread(str(tmp_path / "out" / ann["mask_file"]), cv2.IMREAD_GRAYSCALE) > 127
    assert np.array_equal(png, decode_rle(ann["segmentation"])) and int(png.sum()) == ann["area"] > 0
    print(f"images: 3 images + 1 bad job, 5 masks equal to one process (worst score diff {worst:.1e}); "
          f"ray (2 actors) {t_ray:.1f} s, one process {t_local:.1f} s")


def test_ray_tracks_a_video_like_one_process(ray_cluster, request_, tmp_path):
    clip = make_clip(num_frames=2, height=96, width=128, seed=9)
    folder = tmp_path / "clip"
    folder.mkdir()
    for i, frame in enumerate(clip.frames):
        cv2.imwrite(str(folder / f"{i:05d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    rows = [{"video": "clip", "objects": [{"id": 1, "frame": 1, "box": list(clip.boxes[1][1])},
                                          {"id": 2, "frame": 1, "points": [list(clip.center(2, 1))], "labels": [1]}]}]
    jobs = video_jobs(rows, tmp_path)
    t0 = time.perf_counter()
    on_ray = bounded(lambda: track_videos(jobs, request_, Workers(actors=1)))
    t_ray = time.perf_counter() - t0
    local = track_videos_local(jobs, request_)
    assert on_ray == local
    (video,) = on_ray
    assert video["length"] == 2 and [o["id"] for o in video["objects"]] == [1, 2]
    assert all(s is not None for o in video["objects"] for s in o["segmentations"])  # forward from frame 1, then back to 0
    print(f"video: 2 frames x 2 objects equal to one process; ray task {t_ray:.1f} s")


def test_cli_labels_on_the_cluster(ray_cluster, image_set, tiny_export, tmp_path, capsys):
    from sam2edge.cli.main import main

    jobs = tmp_path / "one.jsonl"
    jobs.write_text(json.dumps({"image": str(image_set / "img1.png"), "box": [10, 10, 90, 90]}) + "\n")
    out = tmp_path / "labels"
    code = bounded(lambda: main(["label", "--prompts", str(jobs), "--out", str(out), "--model", str(tiny_export.onnx_dir),
                                 "--backend", "onnxruntime", "--device", "cpu", "--actors", "1", "--json"]))
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["images"] == 1 and summary["annotations"] == 1 and summary["failed"] == 0
    doc = json.loads((out / "annotations.json").read_text())
    assert doc["annotations"][0]["mask_file"] == "masks/000001_000.png" and (out / "masks" / "000001_000.png").is_file()


def test_automatic_masks_plug_in_by_name(image_set):
    """The folder path calls ``model.generate_masks`` (automatic mask generation) when the model has it."""
    from sam2edge.scale.labels import encode_rle, folder_jobs, generate_job

    class Generating:
        def generate_masks(self, bgr, **options):
            mask = np.zeros(bgr.shape[:2], bool)
            mask[10:30, 20:60] = True
            return [{"segmentation": mask, "predicted_iou": 0.9, "stability_score": 0.95},
                    {"segmentation": encode_rle(np.zeros((120, 160), bool)), "predicted_iou": 0.5}]  # already RLE

    jobs = folder_jobs(image_set)
    assert [j["file_name"] for j in jobs] == ["img0.png", "img1.png", "img2.png"]
    result = generate_job(Generating(), jobs[0])
    first, second = result["annotations"]
    assert first["area"] == 800 and first["bbox"] == [20.0, 10.0, 40.0, 20.0] and first["stability_score"] == 0.95
    assert second["area"] == 0 and (result["height"], result["width"]) == (120, 160)
    with pytest.raises(InputError, match="generate_masks"):
        generate_job(object(), jobs[0])
