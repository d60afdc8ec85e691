"""Class: the video API refuses what the image API refuses.

Each bad argument is a typed InputError naming the argument, what was expected and what came,
raised before anything is read or recorded. The video is 64 x 48 pixels.
"""

from __future__ import annotations

import numpy as np
import pytest

from sam2edge.errors import InputError
from sam2edge.runtime.video import stream, track
from tests.reliability import media
from tests.video.fakes import FakeModel

OPTS = {"input_color_format": "rgb", "preprocessing": "opencv"}
P, L = [[20, 20]], [1]

BAD_CALLS = {
    # name: (call, argument named in the message)
    "point right of the frame": (lambda t: t.add_points(0, 1, points=[[65, 10]], labels=L), "points"),
    "point above the frame": (lambda t: t.add_points(0, 1, points=[[10, -1]], labels=L), "points"),
    "normalised point > 1": (lambda t: t.add_points(0, 1, points=[[0.5, 1.5]], labels=L, normalize_coords=False), "points"),
    "NaN point": (lambda t: t.add_points(0, 1, points=[[np.nan, 3]], labels=L), "points"),
    "inf point": (lambda t: t.add_points(0, 1, points=[[np.inf, 3]], labels=L), "points"),
    "ragged points": (lambda t: t.add_points(0, 1, points=[[1, 2], [3]], labels=[1, 1]), "points"),
    "string points": (lambda t: t.add_points(0, 1, points=[["1", "2"]], labels=L), "points"),
    "bool points": (lambda t: t.add_points(0, 1, points=[[True, False]], labels=L), "points"),
    "points of 3 numbers": (lambda t: t.add_points(0, 1, points=[[1, 2, 3]], labels=L), "points"),
    "label 2**32+1": (lambda t: t.add_points(0, 1, points=P, labels=[2**32 + 1]), "labels"),
    "label 2**64": (lambda t: t.add_points(0, 1, points=P, labels=[2**64]), "labels"),
    "bool label": (lambda t: t.add_points(0, 1, points=P, labels=[True]), "labels"),
    "label 1.5": (lambda t: t.add_points(0, 1, points=P, labels=[1.5]), "labels"),
    "label 2": (lambda t: t.add_points(0, 1, points=P, labels=[2]), "labels"),
    "labels count": (lambda t: t.add_points(0, 1, points=P, labels=[1, 0]), "labels"),
    "flipped box": (lambda t: t.add_box(0, 1, box=[50, 40, 10, 5]), "box"),
    "box larger than the frame": (lambda t: t.add_box(0, 1, box=[0, 0, 640, 480]), "box"),
    "NaN box": (lambda t: t.add_box(0, 1, box=[0, 0, np.nan, 5]), "box"),
    "box of 3": (lambda t: t.add_box(0, 1, box=[0, 0, 5]), "box"),
    "NaN mask": (lambda t: t.add_mask(0, 1, np.full((48, 64), np.nan, np.float32)), "mask"),
    "mask of 0/255": (lambda t: t.add_mask(0, 1, np.full((48, 64), 255, np.uint8)), "mask"),
    "3-D mask": (lambda t: t.add_mask(0, 1, np.ones((1, 48, 64), bool)), "mask"),
    "string mask": (lambda t: t.add_mask(0, 1, np.full((48, 64), "x")), "mask"),
    "bool frame index": (lambda t: t.add_points(True, 1, points=P, labels=L), "frame_idx"),
    "float frame index": (lambda t: t.add_points(1.0, 1, points=P, labels=L), "frame_idx"),
    "negative frame index": (lambda t: t.add_points(-1, 1, points=P, labels=L), "frame_idx"),
    "frame index past the end": (lambda t: t.add_points(8, 1, points=P, labels=L), "frame_idx"),
    "bool object id": (lambda t: t.add_points(0, True, points=P, labels=L), "obj_id"),
    "string object id": (lambda t: t.add_points(0, "1", points=P, labels=L), "obj_id"),
    "float object id": (lambda t: t.add_points(0, 1.0, points=P, labels=L), "obj_id"),
    "bool object id on clear": (lambda t: t.clear_prompts(0, True), "obj_id"),
    "bool object id on remove": (lambda t: t.remove_object(True), "obj_id"),
}


@pytest.mark.parametrize("name", list(BAD_CALLS))
def test_bad_video_prompt_is_a_typed_error(name):
    call, argument = BAD_CALLS[name]
    tracker = track(FakeModel(), media.clip_frames(8), **OPTS)
    with pytest.raises(InputError) as info:
        call(tracker)
    message = str(info.value)
    assert argument in message, f"{name}: the message should name {argument!r}: {message}"
    assert "expected" in message or "must" in message, f"{name}: the message should say what is expected: {message}"
    assert tracker.obj_ids == []


def test_a_point_on_the_edge_and_a_full_frame_box_are_fine():
    tracker = track(FakeModel(), media.clip_frames(8), **OPTS)
    tracker.add_points(0, 1, points=[[64, 48], [0, 0]], labels=[1, 0])
    tracker.add_box(0, 2, box=[0, 0, 64, 48])
    tracker.add_points(0, 3, points=[[0.5, 1.0]], labels=[np.int64(1)], normalize_coords=False)
    tracker.add_points(0, np.int32(4), points=[30, 20], labels=[1.0])  # one point as [x, y]; integral float label
    tracker.add_mask(0, 5, np.ones((48, 64), np.uint8))
    assert tracker.obj_ids == [1, 2, 3, 4, 5]


def test_stream_prompts_are_checked_too():
    frames = media.clip_frames(3)
    with pytest.raises(InputError, match="box"):
        stream(FakeModel(), frames[0], {1: {"box": [0, 0, 640, 480]}}, **OPTS)
    live = stream(FakeModel(), frames[0], {1: {"box": [0, 0, 30, 30]}}, **OPTS)
    with pytest.raises(InputError, match="labels"):
        live.add_prompt(2, points=[[5, 5]], labels=[2**32 + 1])
    with pytest.raises(InputError, match="obj_id"):
        live.add_prompt(True, points=[[5, 5]], labels=[1])
    assert live.obj_ids == [1]
