"""Coalescing clicks from concurrent clients into one batched decoder call.

The prompt decoder takes K prompts over one image embedding in a single call
(``segment_images`` with point_coordinates [K,P,2]). Clicks that arrive within a short window
(``batch_window_ms``) on the same cached image are decoded together when their results stay
exactly what a call of their own would give. Padding points (label -1) are real tokens to the
decoder, so prompts are never padded to a common length: a batch only holds prompts that agree
on everything the decoder sees as a whole, the group key

    (image, number of points, box or not, mask input or not, multimask, full-size logits or not).

Groups run one after the other on the decode lane; clicks that arrive meanwhile form the next
round, so under load batches grow by themselves and an idle server adds only the window.
With batching off every click is its own call (the per-request loop, for comparison).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from sam2edge.server.lanes import Lane
from sam2edge.server.problems import busy


@dataclass(frozen=True, eq=False)
class Click:
    """One prompt on one cached image.

    coords [P,2] / labels [P] (1 positive, 0 negative) in image pixels, or None; box [4]
    x0, y0, x1, y1 or None; mask_input [1,256,256] low-res logits or None.
    """

    image_id: str
    embeddings: Any
    coords: np.ndarray | None
    labels: np.ndarray | None
    box: np.ndarray | None
    mask_input: np.ndarray | None
    multimask: bool
    logits: bool = False

    def group_key(self) -> tuple:
        n = 0 if self.coords is None else int(self.coords.shape[0])
        return (self.image_id, n, self.box is not None, self.mask_input is not None, self.multimask, self.logits)


@dataclass(frozen=True)
class Decoded:
    """One click's result: masks [M,H,W] (bool, or float32 logits), scores [M], low_res [M,256,256]."""

    masks: np.ndarray
    scores: np.ndarray
    low_res: np.ndarray
    batch_size: int

    @property
    def best(self) -> int:
        return int(np.argmax(self.scores))


def decode_clicks(model: Any, clicks: list[Click]) -> list[Decoded]:
    """Decode clicks that share a group key in ONE ``segment_images`` call (one decoder run)."""
    first = clicks[0]
    kwargs: dict[str, Any] = {}
    if first.coords is not None:
        kwargs["point_coordinates"] = np.stack([c.coords for c in clicks]).astype(np.float32)
        kwargs["point_labels"] = np.stack([c.labels for c in clicks]).astype(np.int32)
    if first.box is not None:
        kwargs["boxes"] = np.stack([c.box for c in clicks]).astype(np.float32)
    if first.mask_input is not None:
        kwargs["mask_input"] = np.stack([c.mask_input for c in clicks]).astype(np.float32)
    pred = model.segment_images(embeddings=first.embeddings, multi_mask_output=first.multimask,
                                return_logits=first.logits, **kwargs)[0]
    masks, scores, low = np.asarray(pred.masks), np.asarray(pred.scores), np.asarray(pred.logits)
    if len(clicks) == 1 and scores.ndim == 1:  # one prompt comes back unbatched
        masks, scores, low = masks[None], scores[None], low[None]
    return [Decoded(masks[i], scores[i], low[i], len(clicks)) for i in range(len(clicks))]


class ClickBatcher:
    """Admits clicks (at most ``capacity`` waiting or running), groups them, runs the groups."""

    def __init__(self, lane: Lane, decode: Callable[[list[Click]], list[Decoded]], enabled: bool = True,
                 window_s: float = 0.003, max_batch: int = 64, capacity: int = 256, retry_after_s: int = 1,
                 on_batch: Callable[[int], None] | None = None, on_depth: Callable[[int], None] | None = None) -> None:
        self.lane = lane
        self.decode = decode
        self.enabled = enabled
        self.window_s = window_s
        self.max_batch = max_batch
        self.capacity = capacity
        self.retry_after_s = retry_after_s
        self._on_batch = on_batch
        self._on_depth = on_depth
        self._pending: list[tuple[Click, asyncio.Future]] = []
        self._count = 0
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    @property
    def depth(self) -> int:
        """Clicks admitted and not answered yet."""
        return self._count

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._run(), name="sam2edge-click-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for _, fut in self._pending:
            if not fut.done():
                fut.set_exception(busy("the server is shutting down", self.retry_after_s))

    async def submit_many(self, clicks: list[Click]) -> list[Decoded]:
        """Admit all clicks of one request or none (503), then wait for their results."""
        if self._wake is None:
            raise RuntimeError("ClickBatcher.start() was not called")
        if self._count + len(clicks) > self.capacity:
            raise busy(f"the click queue is full ({self.capacity} clicks waiting); retry shortly", self.retry_after_s)
        loop = asyncio.get_running_loop()
        futures = [loop.create_future() for _ in clicks]
        self._pending.extend(zip(clicks, futures))
        self._set_count(self._count + len(clicks))
        self._wake.set()
        return list(await asyncio.gather(*futures))

    def _set_count(self, n: int) -> None:
        self._count = n
        if self._on_depth is not None:
            self._on_depth(n)

    def _groups(self, items: list[tuple[Click, asyncio.Future]]) -> list[list[tuple[Click, asyncio.Future]]]:
        if not self.enabled:
            return [[item] for item in items]
        groups: dict[tuple, list[tuple[Click, asyncio.Future]]] = {}
        for item in items:
            groups.setdefault(item[0].group_key(), []).append(item)
        out = []
        for group in groups.values():
            out.extend(group[i : i + self.max_batch] for i in range(0, len(group), self.max_batch))
        return out

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            if self.enabled and self.window_s > 0:
                await asyncio.sleep(self.window_s)  # let the other clients' clicks arrive
            items, self._pending = self._pending, []
            self._wake.clear()
            for group in self._groups(items):
                live = [(c, f) for c, f in group if not f.done()]  # drop clicks whose request went away
                try:
                    if live:
                        await self._decode_group(live)
                finally:
                    self._set_count(self._count - len(group))

    async def _decode_group(self, group: list[tuple[Click, asyncio.Future]]) -> None:
        clicks = [c for c, _ in group]
        try:
            results = await self.lane.run(self.decode, clicks, check=False)
        except Exception as exc:  # answered per request; the batcher keeps running
            for _, fut in group:
                if not fut.done():
                    fut.set_exception(exc)
            return
        if self._on_batch is not None:
            self._on_batch(len(clicks))
        for (_, fut), result in zip(group, results):
            if not fut.done():
                fut.set_result(result)
