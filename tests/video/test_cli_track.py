"""`sam2edge track` end to end with cheap runners: masks per frame, an overlay video, errors."""

from __future__ import annotations

import argparse

import cv2
import numpy as np
import pytest

from sam2edge.cli.track import add_arguments, track_with
from sam2edge.errors import InputError
from tests.video.clip import make_clip
from tests.video.fakes import FakeModel


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


@pytest.fixture()
def video(tmp_path):
    clip = make_clip(10, 48, 64)
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (64, 48))
    for f in clip.frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return path, clip


def test_track_writes_masks_and_overlay(video, tmp_path, capsys):
    path, clip = video
    x0, y0, x1, y1 = clip.boxes[1][4]
    args = _args(str(path), "--obj", "3", "--frame", "4", "--box", f"{x0},{y0},{x1},{y1}", "--point", "30,20",
                 "--out", str(tmp_path / "masks"), "--overlay", str(tmp_path / "overlay.avi"), "--json")
    assert track_with(FakeModel(), args) == 0
    report = __import__("json").loads(capsys.readouterr().out)
    assert report["frames"] == 10 and report["backend"] == "fake"
    masks = sorted((tmp_path / "masks").glob("*.png"))
    assert [m.name for m in masks] == [f"{i:05d}.png" for i in range(10)], "forward then backward from frame 4"
    first = cv2.imread(str(masks[0]), cv2.IMREAD_GRAYSCALE)
    assert first.shape == (48, 64) and set(np.unique(first)) <= {0, 255} and first.max() == 255
    cap = cv2.VideoCapture(str(tmp_path / "overlay.avi"))
    n = 0
    while cap.read()[0]:
        n += 1
    assert n == 10, "the overlay has every frame, in order"


def test_track_needs_a_prompt(video, tmp_path):
    path, _ = video
    with pytest.raises(InputError, match="--box"):
        track_with(FakeModel(), _args(str(path), "--out", str(tmp_path / "m")))


def test_cli_lists_track():
    from sam2edge.cli import build_parser

    help_text = build_parser().format_help()
    assert "track" in help_text
