"""The command line as a person uses it: `sam2edge segment` writes a mask, an overlay and scores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.oracle import test_images

pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")
ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "sam2edge", *args], capture_output=True, text=True, env=env, timeout=900)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from sam2edge.model.checkpoint import write_random_checkpoint

    return write_random_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.pt", "sam2.1_hiera_tiny", seed=5)


def test_segment_writes_mask_overlay_and_json(tmp_path, ckpt):
    img = test_images()["chelsea"][:, :, ::-1]
    cv2.imwrite(str(tmp_path / "cat.png"), img)
    out, overlay = tmp_path / "out" / "mask.png", tmp_path / "overlay.png"
    proc = _run("segment", str(tmp_path / "cat.png"), "--point", "200,150", "--point", "50,40:0", "--box", "100,50,400,290",
                "--model", str(ckpt), "--out", str(out), "--overlay", str(overlay), "--json",
                env_extra={"SAM2EDGE_ENGINES": str(tmp_path / "engines")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    mask = cv2.imread(str(out), cv2.IMREAD_GRAYSCALE)
    assert mask.shape == img.shape[:2] and set(np.unique(mask)) <= {0, 255}
    assert report["mask_area"] == int((mask == 255).sum()) and len(report["scores"]) == 1
    assert report["backend"] == "torch-cpu"
    pic = cv2.imread(str(overlay))
    assert pic.shape == img.shape and not np.array_equal(pic, img)


@pytest.mark.parametrize("args, needle", [
    (["segment", "missing.jpg", "--point", "1,1", "--out", "m.png"], "could not be read"),
    (["segment", "IMG", "--out", "m.png"], "at least one --point"),
    (["segment", "IMG", "--point", "1;2", "--out", "m.png"], "--point expects X,Y"),
    (["segment", "IMG", "--box", "1,2,3", "--out", "m.png"], "--box expects X0,Y0,X1,Y1"),
])
def test_segment_bad_arguments_fail_clearly(tmp_path, args, needle):
    cv2.imwrite(str(tmp_path / "img.png"), np.zeros((20, 30, 3), np.uint8))
    args = [str(tmp_path / "img.png") if a == "IMG" else a for a in args]
    proc = _run(*args)
    assert proc.returncode != 0 and needle in proc.stderr, proc.stderr[-2000:]


def test_track_runs_the_real_model_from_a_checkpoint(tmp_path, ckpt):
    """`sam2edge track` on a 3-frame video with a random-weight checkpoint (PyTorch backend, all four
    networks for real): one mask per frame at the video's size and an overlay with every frame.
    (The tracker's host logic and the CLI's options are covered with cheap runners in tests/video.)"""
    frames = [np.roll(test_images()["coffee"][:96, :128], 4 * i, axis=1)[:, :, ::-1].copy() for i in range(3)]
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (128, 96))
    for f in frames:
        writer.write(f)
    writer.release()
    proc = _run("track", str(path), "--box", "20,10,90,80", "--point", "50,40", "--model", str(ckpt),
                "--backend", "torch", "--out", str(tmp_path / "masks"), "--overlay", str(tmp_path / "overlay.avi"),
                "--json", env_extra={"SAM2EDGE_ENGINES": str(tmp_path / "engines")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["frames"] == 3 and report["backend"] == "torch-cpu", report
    masks = sorted((tmp_path / "masks").glob("*.png"))
    assert [m.name for m in masks] == ["00000.png", "00001.png", "00002.png"]
    for m in masks:
        pic = cv2.imread(str(m), cv2.IMREAD_GRAYSCALE)
        assert pic.shape == (96, 128) and set(np.unique(pic)) <= {0, 255}
    cap, n = cv2.VideoCapture(str(tmp_path / "overlay.avi")), 0
    while cap.read()[0]:
        n += 1
    assert n == 3
