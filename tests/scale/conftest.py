"""Scale-out fixtures: a placeholder export set (configs and hashes, no real networks), a real tritonserver
serving the session's tiny export through the Python backend, a small local Ray cluster, and ONE
single-process reference (2 images, a 2-frame clip) that both the Triton and the Ray tests compare with:
every encode on this CPU costs seconds, so the reference is computed once per session."""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import pytest

from sam2edge.contract.artifacts import ARTIFACTS
from sam2edge.contract.edgetam_artifacts import specs_for_variant
from sam2edge.contract.manifest import spec_to_dict, write_manifest

REPO_ROOT = Path(__file__).resolve().parents[2]
CHECKPOINT = "cd" * 32


def make_fake_export(store: Path, variant: str = "sam2.1_hiera_tiny") -> Path:
    """``<store>/<variant>-cdcdcdcd/onnx`` with placeholder bytes per artifact and a manifest in the export's format."""
    onnx_dir = store / f"{variant}-{CHECKPOINT[:8]}" / "onnx"
    onnx_dir.mkdir(parents=True)
    files, artifacts = {}, {}
    specs = specs_for_variant(variant)
    for i, name in enumerate(ARTIFACTS):
        data = bytes([i + 1]) * (1000 + i)
        (onnx_dir / f"{name}.onnx").write_bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        files[f"{name}.onnx"] = {"sha256": sha, "size": len(data)}
        artifacts[name] = {"file": f"{name}.onnx", "sha256": sha, "size": len(data), "spec": spec_to_dict(specs[name])}
    write_manifest(onnx_dir, {"format": "sam2edge-onnx/1", "variant": variant, "checkpoint_sha256": CHECKPOINT,
                              "host_constants": {"no_obj_ptr": [0.25, -0.5]}, "artifacts": artifacts, "files": files})
    return onnx_dir


@pytest.fixture
def fake_export(tmp_path: Path) -> Path:
    return make_fake_export(tmp_path / "store")


@pytest.fixture(scope="module")
def triton_served(tiny_export, tmp_path_factory):
    """The tiny export as a Python-platform repository, served by tritonserver on 127.0.0.1: (url, server).
    Stopped after the module (its four model processes hold ONNX Runtime sessions)."""
    pytest.importorskip("tritonclient.grpc", reason="the Triton runner needs tritonclient[grpc] (requirements/ci.txt)")
    from sam2edge.contract.serving import default_prefix, model_name
    from sam2edge.scale.triton_config import Serving
    from sam2edge.scale.triton_repo import write_repository
    from tests.scale.triton_server import server_dir, start_triton, venv_dir

    if server_dir(venv_dir()) is None:
        pytest.skip(f"no tritonserver venv in {venv_dir()}: run scripts/triton_venv.sh (.ci/run does)")
    tmp = tmp_path_factory.mktemp("triton")
    t0 = time.perf_counter()
    written = write_repository(tiny_export.onnx_dir, tmp / "repo", "python", Serving(kind="cpu"), threads=2)
    prefix = default_prefix(tiny_export.manifest["variant"])
    server = start_triton(tmp / "repo", tmp / "tritonserver.log", models=tuple(model_name(prefix, w.artifact) for w in written))
    print(f"repository written + tritonserver ready in {time.perf_counter() - t0:.1f} s (server {server.started_s:.1f} s)")
    yield server.url(prefix), server
    server.stop()


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster as the issue sizes it: 2 CPUs, a 256 MB object store, no dashboard, no usage stats.
    Workers import this checkout's sam2edge and run ONNX Runtime with one thread each. Shut down after the
    module: idle workers must not hold memory while the rest of the suite runs."""
    pytest.importorskip("ray", reason="Ray labelling needs ray[data] (requirements/ci.txt)")
    pytest.importorskip("pycocotools", reason="the COCO RLE masks need pycocotools")
    import ray

    from sam2edge.scale.ray_label import Cluster

    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    t0 = time.perf_counter()
    env = {"env_vars": {"PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", "RAY_USAGE_STATS_ENABLED": "0"}}
    Cluster(num_cpus=2, object_store_mb=256, runtime_env=env).connect()
    print(f"ray cluster up in {time.perf_counter() - t0:.1f} s")
    yield ray
    ray.shutdown()


@dataclass
class Labelling:
    """The labelling inputs and what one process makes of them (ONNX Runtime CPU, 1 thread: what each Ray worker runs)."""

    folder: Path
    jobs_file: Path  # JSONL: 2 images, prompts of every kind, one line merged into another, one missing image
    image_jobs: list[dict[str, Any]]
    video_jobs: list[dict[str, Any]]  # one 2-frame clip, 2 objects prompted on its last frame
    request: Any  # ModelRequest
    images: list[dict[str, Any]]  # label_images_local(image_jobs)
    videos: list[dict[str, Any]]  # track_videos_local(video_jobs)


@pytest.fixture(scope="session")
def labelling(tiny_export, tmp_path_factory) -> Labelling:
    pytest.importorskip("pycocotools", reason="the COCO RLE masks need pycocotools")
    from sam2edge.scale.labels import ModelRequest, image_jobs, read_jsonl, video_jobs
    from sam2edge.scale.ray_label import label_images_local, track_videos_local
    from tests.video.clip import make_clip

    root = tmp_path_factory.mktemp("labelling")
    clip = make_clip(num_frames=2, height=120, width=160, seed=7)
    for i, frame in enumerate(clip.frames):
        cv2.imwrite(str(root / f"img{i}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    lines = [
        {"image": "img0.png", "prompts": [{"points": [clip.center(1, 0)], "labels": [1]}, {"box": clip.boxes[2][0]}]},
        {"image": "img1.png", "points": [clip.center(2, 1), [5, 5]], "labels": [1, 0], "category": "square"},
        {"image": "img0.png", "box": clip.boxes[1][0], "points": [clip.center(1, 0)], "labels": [1],
         "category": "disc"},  # merged into the first job
        {"image": "missing.png", "box": [0, 0, 9, 9]},  # fails alone
    ]
    jobs_file = root / "jobs.jsonl"
    jobs_file.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    video = make_clip(num_frames=2, height=96, width=128, seed=9)
    (root / "clip").mkdir()
    for i, frame in enumerate(video.frames):
        cv2.imwrite(str(root / "clip" / f"{i:05d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    rows = [{"video": "clip", "objects": [{"id": 1, "frame": 1, "box": list(video.boxes[1][1])},
                                          {"id": 2, "frame": 1, "points": [list(video.center(2, 1))], "labels": [1]}]}]
    request = ModelRequest(str(tiny_export.onnx_dir), backend="onnxruntime", device="cpu", threads=1, strict=True)
    images, videos = image_jobs(read_jsonl(jobs_file), root), video_jobs(rows, root)
    t0 = time.perf_counter()
    done = Labelling(root, jobs_file, images, videos, request, label_images_local(images, request),
                     track_videos_local(videos, request))
    print(f"single-process reference (2 images, 2 frames) in {time.perf_counter() - t0:.1f} s")
    return done
