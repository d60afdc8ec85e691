"""Class: a failed prompt leaves the tracker exactly as it was.

Every prompt computes first (frame, features, decoder) and records last, so an unreadable
frame, a backend error or a bad argument leaves no ghost object, no prompt recorded beside the
old output, and the pending outputs untouched. One-pass sources are never consumed by a prompt
they cannot reach.
"""

from __future__ import annotations

import numpy as np
import pytest

from sam2edge.errors import BackendRuntimeError, InputError, Sam2EdgeError, VideoError
from sam2edge.runtime.video import stream as open_stream
from sam2edge.runtime.video import track
from tests.reliability import media
from tests.video.fakes import FakeModel

OPTS = {"input_color_format": "rgb", "preprocessing": "opencv"}


def snapshot(tracker) -> dict:
    """Everything a prompt may change, by identity where objects are kept."""
    out = {"ids": tuple(tracker.obj_ids)}
    for oid in tracker.obj_ids:
        m = tracker.memory(oid)
        out[oid] = (
            {f: (p, id(p)) for f, p in m.prompts.items()},
            {k: {f: id(e) for f, e in d.items()} for k, d in m.pending.items()},
            {f: id(e) for f, e in m.cond.items()},
            {f: id(e) for f, e in m.non_cond.items()},
            list(m.corrected),
        )
    return out


def _fail_next(model: FakeModel, artifact: str) -> None:
    runner = model.runners[artifact]
    original = runner._infer_impl

    def once(feeds):
        runner._infer_impl = original
        raise BackendRuntimeError(f"{artifact}: device lost (injected)")

    runner._infer_impl = once


@pytest.fixture()
def frames():
    return media.clip_frames(8)


@pytest.mark.parametrize("artifact", ["prompt_decoder", "memory_attention"])
def test_backend_error_during_a_correction_changes_nothing(frames, artifact):
    """A correction on a tracked frame (memory attention + decoder) fails: before, the new clicks were
    recorded as the frame's prompt while its output stayed the old one."""
    model = FakeModel()
    tracker = track(model, frames, **OPTS)
    tracker.add_points(0, 1, points=[[20, 20]], labels=[1])
    for _ in tracker.propagate(max_frames=4):
        pass
    tracker.add_points(2, 1, points=[[30, 20]], labels=[1])  # pending correction on frame 2
    before = snapshot(tracker)
    _fail_next(model, artifact)
    with pytest.raises(BackendRuntimeError):
        tracker.add_points(3, 1, points=[[40, 30]], labels=[1])
    assert snapshot(tracker) == before
    res = tracker.add_points(3, 1, points=[[40, 30]], labels=[1])  # the same call works once the backend does
    assert res.masks[0].any()


def test_backend_error_on_a_new_object_leaves_no_ghost(frames):
    model = FakeModel()
    tracker = track(model, frames, **OPTS)
    tracker.add_points(0, 1, points=[[20, 20]], labels=[1])
    before = snapshot(tracker)
    _fail_next(model, "prompt_decoder")
    with pytest.raises(BackendRuntimeError):
        tracker.add_box(0, 2, box=[30, 10, 60, 40])
    assert snapshot(tracker) == before and tracker.obj_ids == [1]
    _fail_next(model, "prompt_decoder")
    with pytest.raises(BackendRuntimeError):  # a re-click of object 1 keeps its first clicks and output
        tracker.add_points(0, 1, points=[[25, 25]], labels=[0], clear_old_points=False)
    assert snapshot(tracker) == before
    assert [r.frame_idx for r in tracker.propagate(max_frames=2)] == [0, 1, 2]


def test_unreadable_frame_leaves_no_ghost(tmp_path):
    paths = media.write_folder(tmp_path / "frames", media.clip_frames(6))
    paths[3].write_bytes(b"not an image")
    tracker = track(FakeModel(), tmp_path / "frames", **OPTS)
    tracker.add_points(0, 1, points=[[20, 20]], labels=[1])
    before = snapshot(tracker)
    for call in (lambda: tracker.add_points(3, 7, points=[[20, 20]], labels=[1]),
                 lambda: tracker.add_mask(3, 8, np.ones((48, 64), bool)),
                 lambda: tracker.add_points(3, 1, points=[[20, 20]], labels=[1])):
        with pytest.raises(VideoError, match="frame 3"):
            call()
        assert snapshot(tracker) == before
    assert tracker.obj_ids == [1]


@pytest.mark.parametrize("call", [
    lambda t: t.add_points(1, 5, points=[[20, 20]], labels=[7]),
    lambda t: t.add_points(1, 5, points=[[20, 20], [1, 2, 3]], labels=[1, 1]),
    lambda t: t.add_box(1, 5, box=[50, 40, 10, 5]),
    lambda t: t.add_mask(1, 5, np.full((48, 64), np.nan)),
    lambda t: t.add_points(1, 1, points=[[20, 20]], labels=[1], box=[0, 0, 5, 5], clear_old_points=False),
])
def test_bad_input_changes_nothing(frames, call):
    tracker = track(FakeModel(), frames, **OPTS)
    tracker.add_points(0, 1, points=[[20, 20]], labels=[1])
    before = snapshot(tracker)
    with pytest.raises(InputError):
        call(tracker)
    assert snapshot(tracker) == before


def test_failed_commit_or_step_changes_nothing(tmp_path):
    """propagate() first encodes the memory of every pending prompt and commits all objects; a backend error
    there commits none. A frame that cannot be read during tracking leaves no output behind for it."""
    paths = media.write_folder(tmp_path / "frames", media.clip_frames(6))
    model = FakeModel()
    tracker = track(model, tmp_path / "frames", **OPTS)
    tracker.add_points(0, 1, points=[[20, 20]], labels=[1])
    tracker.add_points(0, 2, points=[[40, 20]], labels=[1])
    before = snapshot(tracker)
    _fail_next(model, "memory_encoder")
    with pytest.raises(BackendRuntimeError):
        next(tracker.propagate())
    assert snapshot(tracker) == before
    paths[3].write_bytes(b"gone")
    with pytest.raises(VideoError, match="frame 3"):
        for _ in tracker.propagate():
            pass
    for oid in (1, 2):
        memory = tracker.memory(oid)
        assert memory.tracked.get(2) is False and memory.tracked.get(3) is None and 3 not in memory.non_cond


def test_prompt_beyond_a_one_pass_iterable_does_not_consume_it(frames):
    """Before: a prompt on frame 50 of a 10-frame generator read (and dropped) all 10 frames, then failed."""
    consumed = []

    def gen():
        for i, f in enumerate(frames):
            consumed.append(i)
            yield f

    tracker = track(FakeModel(), gen(), **OPTS)
    with pytest.raises(VideoError, match="one-pass") as info:
        tracker.add_points(50, 1, points=[[20, 20]], labels=[1])
    assert "list" in str(info.value) and "islice" in str(info.value), info.value
    assert consumed == [] and tracker.obj_ids == []
    with pytest.raises(VideoError, match="one-pass"):
        tracker.add_points(3, 1, points=[[20, 20]], labels=[1])
    tracker.add_points(0, 1, points=[[20, 20]], labels=[1])
    assert [r.frame_idx for r in tracker.propagate()] == list(range(8))


def test_stream_failure_changes_nothing(frames):
    model = FakeModel()
    stream = open_stream(model, frames[0], {1: {"box": [10, 10, 40, 40]}}, **OPTS)
    stream.track(frames[1])
    before, idx = snapshot(stream.tracker), stream.frame_idx
    with pytest.raises(VideoError, match="size"):
        stream.track(frames[2][:20])  # a frame of another size
    with pytest.raises(Sam2EdgeError):
        stream.track(np.zeros((48, 64), np.uint8))  # grayscale
    _fail_next(model, "image_encoder")
    with pytest.raises(BackendRuntimeError):
        stream.track(frames[2])
    assert stream.frame_idx == idx and snapshot(stream.tracker) == before
    _fail_next(model, "prompt_decoder")
    with pytest.raises(BackendRuntimeError):
        stream.add_prompt(2, box=[5, 5, 30, 30])
    assert stream.obj_ids == [1] and snapshot(stream.tracker) == before
    res = stream.track(frames[2])  # the stream goes on where it was
    assert res.frame_idx == idx + 1 and res.masks.shape == (1, 48, 64)
