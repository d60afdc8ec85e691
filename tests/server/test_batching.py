"""The click batcher without a model: what may share a decoder call, admission, failures, batching off."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from sam2edge.server.batching import Click, ClickBatcher, Decoded
from sam2edge.server.lanes import Lane
from sam2edge.server.problems import Problem


def click(image: str = "a", points: int = 1, box: bool = False, mask: bool = False, multimask: bool = True) -> Click:
    coords = np.zeros((points, 2), np.float32) if points else None
    labels = np.ones((points,), np.int32) if points else None
    return Click(image, None, coords, labels, np.zeros(4, np.float32) if box else None,
                 np.zeros((1, 256, 256), np.float32) if mask else None, multimask)


def run(batcher_kwargs: dict, clicks: list[list[Click]], decode=None, hold: threading.Event | None = None):
    calls: list[list[Click]] = []

    def fake(group: list[Click]) -> list[Decoded]:
        calls.append(group)
        keys = {c.group_key() for c in group}
        assert len(keys) == 1, "a decoder call mixed prompts that change each other's results"
        return [Decoded(np.zeros((1, 2, 2), bool), np.array([float(id(c) % 97)]), np.zeros((1, 2, 2)), len(group))
                for c in group]

    async def main():
        lane = Lane("decode", 1 << 20)
        if hold is not None:
            lane.post(hold.wait)
        b = ClickBatcher(lane, decode or fake, **batcher_kwargs)
        b.start()
        try:
            tasks = [asyncio.create_task(b.submit_many(cs)) for cs in clicks]
            await asyncio.sleep(0.05)
            if hold is not None:
                hold.set()
            return await asyncio.gather(*tasks, return_exceptions=True), b.depth
        finally:
            await b.stop()
            lane.close()

    results, depth = asyncio.run(main())
    return calls, results, depth


def test_only_identical_shapes_share_a_call():
    mix = [[click()], [click()], [click(points=2)], [click(box=True, points=0)], [click(box=True)], [click(mask=True)],
           [click(multimask=False)], [click(image="b")], [click(), click()]]
    calls, results, depth = run({"window_s": 0.01}, mix, hold=threading.Event())
    sizes = sorted(len(c) for c in calls)
    assert sizes == [1, 1, 1, 1, 1, 1, 4], sizes  # the four 1-point clicks on image "a" share one call
    assert all(len(r) == len(cs) for r, cs in zip(results, mix)) and depth == 0
    for r, cs in zip(results, mix):  # each request gets its own clicks' results back, in order
        assert [float(d.scores[0]) for d in r] == [float(id(c) % 97) for c in cs]


def test_max_batch_and_batching_off():
    many = [[click()] for _ in range(10)]
    calls, _, _ = run({"window_s": 0.01, "max_batch": 4}, many, hold=threading.Event())
    assert max(len(c) for c in calls) == 4 and sum(len(c) for c in calls) == 10
    calls, _, _ = run({"enabled": False}, many, hold=threading.Event())
    assert [len(c) for c in calls] == [1] * 10


def test_admission_is_all_or_nothing_and_failures_reach_only_their_request():
    calls, results, depth = run({"capacity": 3, "window_s": 0.0}, [[click(), click()], [click(), click()]],
                                hold=threading.Event())
    assert isinstance(results[1], Problem) and results[1].status == 503 and len(results[0]) == 2 and depth == 0

    def boom(group):
        if group[0].image_id == "bad":
            raise ValueError("decoder failed")
        return [Decoded(np.zeros((1, 1, 1), bool), np.zeros(1), np.zeros((1, 1, 1)), 1) for _ in group]

    _, results, depth = run({"window_s": 0.0}, [[click(image="bad")], [click()]], decode=boom)
    assert isinstance(results[0], ValueError) and isinstance(results[1], list) and depth == 0


def test_lane_refuses_beyond_capacity():
    lane, gate = Lane("encode", 2), threading.Event()

    async def main():
        lane.post(gate.wait)
        first = asyncio.ensure_future(lane.run(lambda: 1))
        await asyncio.sleep(0)
        with pytest.raises(Problem) as err:
            await lane.run(lambda: 2)
        gate.set()
        return await first, err.value

    value, problem = asyncio.run(main())
    assert value == 1 and problem.status == 503 and problem.headers["Retry-After"] == "1" and lane.depth == 0
    lane.close()


def test_lane_slot_comes_back_when_a_queued_job_is_cancelled():
    # A streaming client that disconnects cancels the await of a job still queued behind another:
    # the job never runs, and its slot must still be given back (it leaked once, found in CI).
    lane, gate = Lane("encode", 4), threading.Event()

    async def main():
        lane.post(gate.wait)
        queued = asyncio.ensure_future(lane.run(lambda: 1))
        await asyncio.sleep(0)
        assert lane.depth == 2
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        gate.set()

    asyncio.run(main())
    deadline = time.monotonic() + 10
    while lane.depth and time.monotonic() < deadline:
        time.sleep(0.01)
    assert lane.depth == 0
    lane.close()
