"""Seeding a tracker from generated masks: segment everything on frame 0, then track them all."""

from __future__ import annotations

import numpy as np
import pytest

from sam2edge.errors import InputError
from sam2edge.processing.amg import mask_to_rle, rle_to_coco
from sam2edge.runtime.image.predictor import SAM2
from sam2edge.runtime.video import track
from tests.video.clip import make_clip
from tests.video.fakes import FakeModel

OPTS = {"input_color_format": "rgb", "preprocessing": "numpy"}


def test_generate_then_track_is_two_calls():
    clip = make_clip(6, 48, 64)
    model = FakeModel()
    records = SAM2(model.runners, model.config, preprocessing="opencv").generate_masks(
        clip.frames[0], input_color_format="rgb", points_per_side=2, box_nms_thresh=0.0)
    assert len(records) >= 2
    tracker = track(model, clip.frames, **OPTS)
    first = tracker.add_masks(0, records)
    assert first.obj_ids == tuple(range(1, len(records) + 1))
    for got, rec in zip(first.masks, records):
        assert abs(int(got.sum()) - rec["area"]) <= 0.15 * rec["area"]
    frames = list(tracker.propagate())
    assert len(frames) == 6 and all(f.obj_ids == first.obj_ids for f in frames)


def test_records_in_every_output_mode_and_explicit_ids():
    clip = make_clip(3, 48, 64)
    mask = np.zeros((48, 64), bool)
    mask[8:20, 10:30] = True
    rle = mask_to_rle(mask)
    tracker = track(FakeModel(), clip.frames, **OPTS)
    tracker.add_points(0, 7, points=[[5, 5]], labels=[1])
    res = tracker.add_masks(0, [{"segmentation": mask}, {"segmentation": rle}, {"segmentation": rle_to_coco(rle)}, mask])
    assert res.obj_ids == (7, 8, 9, 10, 11)  # new ids count up from the largest in use
    assert all(np.array_equal(m, res.masks[1]) for m in res.masks[2:])
    res = tracker.add_masks(1, [mask], obj_ids=[42])
    assert 42 in res.obj_ids


def test_add_masks_is_all_or_nothing(monkeypatch):
    """Ids in use are refused up front; a failure on the k-th mask removes the objects added before it."""
    clip = make_clip(2, 48, 64)
    tracker = track(FakeModel(), clip.frames, **OPTS)
    tracker.add_points(0, 3, points=[[5, 5]], labels=[1])
    mask = np.zeros((48, 64), bool)
    mask[8:20, 10:30] = True
    with pytest.raises(InputError, match="not in use"):
        tracker.add_masks(0, [mask, mask], obj_ids=[4, 3])
    real, calls = tracker.add_mask, []

    def fail_second(frame_idx, obj_id, m):
        calls.append(obj_id)
        if len(calls) == 2:
            raise RuntimeError("backend failed")
        return real(frame_idx, obj_id, m)

    monkeypatch.setattr(tracker, "add_mask", fail_second)
    with pytest.raises(RuntimeError, match="backend failed"):
        tracker.add_masks(0, [mask, mask, mask])
    assert calls == [4, 5] and tracker.obj_ids == [3]


@pytest.mark.parametrize("records, ids, match", [
    ([], None, "non-empty list"),
    ({"segmentation": np.ones((4, 4))}, None, "non-empty list"),
    ([{"segmentation": {"counts": [3]}}], None, "size"),
    ([np.ones((4, 4), bool)] * 2, [1, 1], "distinct"),
    ([np.ones((4, 4), bool)] * 2, [1], "one id per record"),
    ([np.ones((4, 4), bool)], ["a"], "integer"),
    ([np.ones((4, 4), bool)], [True], "integer"),
    ([np.zeros((0, 4), bool)], None, "non-empty"),
])
def test_bad_records_change_nothing(records, ids, match):
    tracker = track(FakeModel(), make_clip(2, 48, 64).frames, **OPTS)
    with pytest.raises(InputError, match=match):
        tracker.add_masks(0, records, obj_ids=ids)
    assert tracker.obj_ids == []
