"""Lanes: one worker thread per kind of accelerator work, each with a bounded queue.

The accelerator does one thing at a time well; threads racing for it only add contention.
The server therefore runs

* the ``encode`` lane: image encodes and video work (frame encodes, memory), in order;
* the ``decode`` lane: batched prompt decoding (clicks), so a click never waits behind an encode.

``submit`` refuses a job when ``capacity`` jobs are already waiting or running (a 503 with
``Retry-After``): a full queue answers at once instead of piling requests up.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from sam2edge.server.problems import busy

T = TypeVar("T")


class Lane:
    """A single worker thread with at most ``capacity`` jobs queued or running."""

    def __init__(self, name: str, capacity: int, retry_after_s: int = 1,
                 on_depth: Callable[[str, int], None] | None = None) -> None:
        self.name = name
        self.capacity = capacity
        self.retry_after_s = retry_after_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sam2edge-{name}")
        self._depth = 0
        self._lock = threading.Lock()
        self._on_depth = on_depth

    @property
    def depth(self) -> int:
        return self._depth

    def _change(self, delta: int) -> None:
        with self._lock:
            self._depth += delta
            depth = self._depth
        if self._on_depth is not None:
            self._on_depth(self.name, depth)

    def reserve(self, what: str = "job") -> None:
        """Count one job in, or raise a 503 Problem when the lane is full."""
        with self._lock:
            if self._depth >= self.capacity:
                raise busy(f"the {self.name} queue is full ({self.capacity} {what}s waiting); retry shortly",
                           self.retry_after_s)
            self._depth += 1
            depth = self._depth
        if self._on_depth is not None:
            self._on_depth(self.name, depth)

    async def run(self, fn: Callable[..., T], *args: Any, check: bool = True) -> T:
        """Run ``fn(*args)`` on the lane's thread; 503 when full (``check=False``: admitted anyway,
        for work whose callers were admitted elsewhere, e.g. a batch of admitted clicks).

        The slot is released when the job ends, even when the awaiting request went away.
        """
        if check:
            self.reserve()
        else:
            self._change(+1)
        return await asyncio.wrap_future(self._submit(fn, *args))

    def post(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue ``fn(*args)`` behind the lane's current work without waiting (clean-up jobs)."""
        self._change(+1)
        self._submit(fn, *args)

    def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run on the lane's thread from another thread, waiting for the result (counts as a job)."""
        self.reserve()
        return self._submit(fn, *args).result()

    def _submit(self, fn: Callable[..., T], *args: Any) -> Future:
        # The slot is given back when the future is done in any way: run, failed, or cancelled
        # before it started (an awaiting request that goes away cancels a job still queued).
        try:
            future = self._executor.submit(fn, *args)
        except RuntimeError:  # shut down
            self._change(-1)
            raise busy(f"the {self.name} lane is shutting down", self.retry_after_s) from None
        future.add_done_callback(lambda _: self._change(-1))
        return future

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
