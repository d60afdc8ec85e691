"""EdgeTAM through the apps, on the session's export (tests/edgetam/conftest.py ``edgetam_export``).

- ``sam2edge segment`` and ``sam2edge track`` with ``--model edgetam`` (the checkpoint in
  $SAM2EDGE_MODELS_DIR, the export found in the store by its sha256) on ONNX Runtime, in a
  process where torch and onnx cannot be imported: the runtime path is torch-free.
- The torch-free mask equals our PyTorch networks' on the same click.
- ``sam2edge serve``'s model options accept it, and the server segments with it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

CLIP_FRAMES = 4

NO_TORCH_CLI = textwrap.dedent("""
    import json, sys

    # As if not installed: `import torch` raises ImportError, importlib.util.find_spec("torch") is None.
    for name in ("torch", "torchvision", "onnx", "onnxscript", "sam2", "timm"):
        sys.modules[name] = None
    from sam2edge.cli.main import main

    for argv in json.loads(sys.argv[1]):
        code = main(argv)
        assert code == 0, (argv, code)
    assert sys.modules["torch"] is None and sys.modules["onnx"] is None, "a heavy module was imported"
    print("TORCH-FREE-OK")
""")


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A photograph-like still (the first clip frame, upscaled) and a 4-frame MJPG clip of two moving objects."""
    from tests.video.clip import make_clip

    folder = tmp_path_factory.mktemp("edgetam_media")
    clip = make_clip(num_frames=CLIP_FRAMES)
    video = folder / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (128, 96))
    for frame in clip.frames:
        writer.write(np.ascontiguousarray(frame[:, :, ::-1]))
    writer.release()
    image = folder / "still.png"
    cv2.imwrite(str(image), cv2.resize(clip.frames[0][:, :, ::-1], (256, 192), interpolation=cv2.INTER_NEAREST))
    return {"video": video, "image": image, "clip": clip, "folder": folder}


def _track_args(media: dict, out: Path) -> list[str]:
    x0, y0, x1, y1 = (int(v) for v in media["clip"].boxes[1][0])
    cx, cy = (int(v) for v in media["clip"].center(2, 0))
    return ["track", str(media["video"]), "--obj", "1", "--box", f"{x0},{y0},{x1},{y1}", "--obj", "2",
            "--point", f"{cx},{cy}", "--out", str(out), "--json"]


def _masks(folder: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(folder)): cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) > 0 for p in sorted(folder.rglob("*.png"))}


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


@pytest.fixture(scope="module")
def torch_free_run(edgetam_export, media) -> Path:
    """segment + track with ``--model edgetam`` on ONNX Runtime, torch and onnx blocked; the output folder."""
    store = edgetam_export.onnx_dir.parent.parent
    out = media["folder"] / "ort"
    model = ["--model", "edgetam", "--store", str(store), "--backend", "onnxruntime"]
    commands = [
        ["segment", str(media["image"]), "--point", "60,80", "--out", str(out / "still.png"), "--json", *model],
        [*_track_args(media, out / "track"), *model],
    ]
    env = {**os.environ, "SAM2EDGE_MODELS_DIR": str(edgetam_export.checkpoint.parent), "OMP_NUM_THREADS": "2"}
    assert edgetam_export.checkpoint.name == "edgetam.pt"
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-c", NO_TORCH_CLI, json.dumps(commands)], capture_output=True, text=True,
                         timeout=900, env=env)
    print(f"[edgetam apps] torch-free segment + track in {time.perf_counter() - t0:.1f}s")
    assert res.returncode == 0 and "TORCH-FREE-OK" in res.stdout, res.stdout[-2000:] + res.stderr[-4000:]
    reports = [json.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    assert len(reports) == 2 and all(r["backend"].startswith("onnxruntime") for r in reports), reports
    return out


def test_segment_and_track_torch_free_on_onnxruntime(torch_free_run):
    still = cv2.imread(str(torch_free_run / "still.png"), cv2.IMREAD_GRAYSCALE)
    assert still is not None and still.shape == (192, 256) and set(np.unique(still)) <= {0, 255}
    masks = _masks(torch_free_run / "track")
    assert sorted(masks) == [f"{o}/{i:05d}.png" for o in (1, 2) for i in range(CLIP_FRAMES)]
    assert all(m.shape == (96, 128) for m in masks.values())


def test_segment_matches_the_pytorch_backend(torch_free_run, edgetam_model, media):
    """The torch-free ONNX Runtime mask vs our PyTorch networks on the same image, click and (OpenCV)
    pre-processing: the exported chain agrees with the model, not only each artifact. (The video path's
    chain: each memory artifact is verified at export and at other shapes, and our tracker on PyTorch
    matches the official one in test_edgetam_video_oracle.py.)"""
    from sam2edge.backends.torch_runner import make_torch_runners
    from sam2edge.runtime.image.predictor import SAM2

    ort = cv2.imread(str(torch_free_run / "still.png"), cv2.IMREAD_GRAYSCALE) > 0
    model = SAM2(make_torch_runners(edgetam_model, artifacts=("image_encoder", "prompt_decoder")), edgetam_model.cfg,
                 preprocessing="opencv")
    image = cv2.imread(str(media["image"]), cv2.IMREAD_COLOR)
    pred = model.segment_images(image, point_coordinates=np.array([[60.0, 80.0]]), point_labels=np.array([1]),
                                multi_mask_output=False)[0]
    ours = np.asarray(pred.masks)[int(np.argmax(pred.scores))] > 0
    iou = _iou(ours, ort)
    print(f"[edgetam apps] segment torch vs torch-free onnxruntime: mask IoU {iou:.6f} ({int(ort.sum())} pixels)")
    assert ort.sum() > 0 and iou >= 0.99


def test_serve_accepts_edgetam_and_segments(edgetam_export, tmp_path):
    """``sam2edge serve --model edgetam`` parses into the server's settings; a server on the EdgeTAM export
    reports it and answers a Roboflow-format click."""
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    httpx = pytest.importorskip("httpx")
    from sam2edge.cli.main import build_parser
    from sam2edge.server.app import create_app
    from sam2edge.server.command import settings_from_args
    from sam2edge.server.settings import ServerSettings
    from tests.server.conftest import png_b64, start

    parsed = settings_from_args(build_parser().parse_args(["serve", "--model", "edgetam", "--backend", "onnxruntime"]))
    assert (parsed.model, parsed.backend) == ("edgetam", "onnxruntime")
    settings = ServerSettings(model=str(edgetam_export.onnx_dir), backend="onnxruntime", media_dir=tmp_path)
    running = start(create_app(settings), settings)
    try:
        with httpx.Client(base_url=running.url, timeout=300) as c:
            deadline = time.monotonic() + 300
            while c.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline, running.service.load_error
                time.sleep(0.2)
            info = c.get("/info").json()
            assert info["model"] == str(edgetam_export.onnx_dir), info
            image = np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8)
            r = c.post("/sam2/segment_image", json={"image": {"type": "base64", "value": png_b64(image)},
                                                    "prompts": [{"points": [{"x": 80, "y": 60, "positive": True}]}],
                                                    "format": "rle"})
            assert r.status_code == 200, r.text
            (pred,) = r.json()["predictions"]
            assert pred["masks"]["size"] == [120, 160]
        assert running.service.model.config.name == "edgetam"
    finally:
        running.stop()
