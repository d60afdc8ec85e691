"""The frame prefetch of offline propagation: while the networks run on one frame, a background
thread reads and pre-processes the next. What must hold: the read really overlaps the current
frame's work, the source is never read by two threads at once (prompts between results read
it too), a read error is raised on its own frame, closing waits for a read in flight, one-pass
sources are not read ahead, and every result is the same as without the prefetch.

The networks are the cheap runners of tests/video/fakes.py; what is tested is host code.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from sam2edge.errors import InputError, VideoError
from sam2edge.runtime.video import SequenceSource, track
from tests.video.clip import make_clip
from tests.video.fakes import FakeModel

OPTS = {"input_color_format": "rgb", "preprocessing": "opencv"}
MAIN = threading.main_thread().name


@pytest.fixture(scope="module")
def clip():
    return make_clip(8, 48, 64)


class WatchedSource(SequenceSource):
    """Records which thread reads each frame and counts overlapping reads; frame ``broken`` fails;
    frame ``gated`` waits for ``gate`` before it is read."""

    def __init__(self, frames, broken: int | None = None, gated: int | None = None) -> None:
        super().__init__(frames, "rgb")
        self._lock = threading.Lock()
        self.readers: list[tuple[int, str]] = []
        self.started = [threading.Event() for _ in frames]
        self.overlaps = 0
        self.broken, self.gated, self.gate = broken, gated, threading.Event()
        self.log: list[str] = []

    def read(self, idx):
        if not self._lock.acquire(blocking=False):
            self.overlaps += 1
            self._lock.acquire()
        try:
            self.readers.append((idx, threading.current_thread().name))
            if 0 <= idx < len(self.started):
                self.started[idx].set()
            if idx == self.gated:
                assert self.gate.wait(timeout=30), "the gate was never opened"
            time.sleep(0.002)  # decoding takes time: widens any overlap with a read on another thread
            if idx == self.broken:
                raise VideoError(f"frame {idx} is damaged")
            return super().read(idx)
        finally:
            self.log.append(f"read {idx} done")
            self._lock.release()

    def close(self):
        self.log.append("closed")
        super().close()


def _start(clip, source, **kw):
    tracker = track(FakeModel(), source, **OPTS, **kw)
    tracker.add_points(0, 1, points=[clip.center(1, 0)], labels=[1])
    tracker.add_box(0, 2, box=clip.boxes[2][0])
    return tracker


def test_next_frame_is_read_while_the_current_one_is_encoded(clip):
    """The encoder of frame k waits until frame k+1's read has started: it returns at once with
    the prefetch, and would time out without it."""
    source = WatchedSource(clip.frames)
    tracker = _start(clip, source)
    encode, waited = tracker.nets.encode, {}

    def encode_after_next_read_started(frame_idx, image, hw):
        if frame_idx + 1 < len(clip.frames):
            waited[frame_idx] = source.started[frame_idx + 1].wait(timeout=30)
        return encode(frame_idx, image, hw)

    tracker.nets.encode = encode_after_next_read_started
    assert [r.frame_idx for r in tracker.propagate()] == list(range(8))
    # Frame 0 holds only prompted outputs (nothing is encoded), so frame 1 is read when tracked;
    # from then on each frame is read during the previous one.
    assert waited == dict.fromkeys(range(1, 7), True)
    assert [t == MAIN for i, t in source.readers if i >= 1] == [True] + [False] * 6
    assert source.overlaps == 0
    tracker.close()


def _results(clip, source, prefetch):
    """Forward with a prompt added between two results, then backward from the last frame: every
    result. The prompt reads frame 6 while the prefetch's read of frame 4 is held at the gate
    (opened 0.2 s later), so the two reads would overlap if the prompt did not wait for it."""
    tracker = _start(clip, source, prefetch=prefetch)
    out = []
    for r in tracker.propagate():
        out.append(r)
        if r.frame_idx == 3:
            opener = threading.Timer(0.2, source.gate.set)
            opener.start()
            out.append(tracker.add_box(6, 2, box=clip.boxes[2][6]))
            opener.join()
    out.append(tracker.add_points(7, 1, points=[clip.center(1, 7)], labels=[1]))
    out.extend(tracker.propagate(start=7, reverse=True))
    tracker.close()
    return out


def test_prefetch_changes_no_result(clip):
    with_source, without_source = WatchedSource(clip.frames, gated=4), WatchedSource(clip.frames, gated=4)
    ours = _results(clip, with_source, True)
    plain = _results(clip, without_source, False)
    assert len(ours) == len(plain) == 18
    for a, b in zip(ours, plain):
        assert (a.frame_idx, a.obj_ids) == (b.frame_idx, b.obj_ids)
        np.testing.assert_array_equal(a.masks, b.masks)
        np.testing.assert_array_equal(a.low_res_logits, b.low_res_logits)
        np.testing.assert_array_equal(a.object_scores, b.object_scores)
    assert with_source.overlaps == 0
    assert any(t != MAIN for _, t in with_source.readers)
    assert all(t == MAIN for _, t in without_source.readers)


@pytest.mark.parametrize("prefetch", [True, False])
def test_read_error_is_raised_on_its_own_frame(clip, prefetch):
    """Frame 4 cannot be read: frames 0-3 come out first, then the error, with the prefetch as
    without it (the prefetch met it while frame 3 was tracked)."""
    source = WatchedSource(clip.frames, broken=4)
    tracker = _start(clip, source, prefetch=prefetch)
    seen = []
    with pytest.raises(VideoError, match="frame 4 is damaged"):
        for r in tracker.propagate():
            seen.append(r.frame_idx)
    assert seen == [0, 1, 2, 3]
    tracker.close()


def test_close_waits_for_a_read_in_flight(clip):
    """The source is closed only after the background read has finished."""
    source = WatchedSource(clip.frames, gated=3)
    tracker = _start(clip, source)
    results = tracker.propagate()
    assert [next(results).frame_idx for _ in range(3)] == [0, 1, 2]  # frame 3 is being read, held at the gate
    assert source.started[3].wait(timeout=30)
    opener = threading.Timer(0.3, source.gate.set)
    opener.start()
    tracker.close()
    opener.join()
    assert source.log[-2:] == ["read 3 done", "closed"]
    assert source.overlaps == 0


def test_one_pass_sources_are_not_read_ahead(clip):
    threads: list[str] = []

    def camera():
        for frame in clip.frames:
            threads.append(threading.current_thread().name)
            yield frame

    tracker = _start(clip, camera())
    assert len(list(tracker.propagate())) == 8
    assert threads == [MAIN] * 8
    tracker.close()


def test_prefetch_must_be_a_bool(clip):
    with pytest.raises(InputError, match="prefetch must be True or False, got 'yes'"):
        track(FakeModel(), clip.frames, prefetch="yes", **OPTS)
