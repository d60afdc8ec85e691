"""A thread-safe LRU bounded by entry count and by bytes, and a byte counter for arrays.

``ByteBudgetLRU`` is the storage under both SAM2 caches. Two bounds apply together:
``size_limit`` (entries) and ``max_bytes`` (sum of the entries' sizes). Inserting evicts
least-recently-used entries *before* the new one goes in, so the byte total never exceeds
the budget, not even for an instant. An entry larger than the whole budget is refused
(counted in ``stats()["rejections"]``) and the cache is left as it was.

Neither module-level code nor ``nbytes_of`` imports torch: a torch tensor can only exist
if the caller already imported torch, so ``sys.modules`` tells whether to look for one.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

import numpy as np

from sam2edge.errors import InputError

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


def is_torch_tensor(value: Any) -> bool:
    """True for a ``torch.Tensor``, without importing torch."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def nbytes_of(value: Any) -> int:
    """Bytes held by the arrays inside ``value``.

    Counts numpy arrays (``nbytes``) and torch tensors (``numel * element_size``), found
    inside dicts, lists, tuples (named or not) and dataclass instances, to any depth.
    Other objects (strings, numbers, None) count 0: the budget is about array payloads.
    """
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if is_torch_tensor(value):
        return int(value.numel() * value.element_size())
    if isinstance(value, dict):
        return sum(nbytes_of(v) for v in value.values())
    if isinstance(value, list | tuple):
        return sum(nbytes_of(v) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return sum(nbytes_of(getattr(value, f.name)) for f in dataclasses.fields(value))
    return 0


def _check_limit(value: int | None, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise InputError(f"{name} must be a positive integer or None (unbounded), got {value!r}")
    return int(value)


class ByteBudgetLRU(Generic[K, V]):
    """Least-recently-used mapping bounded by ``size_limit`` entries and ``max_bytes`` bytes.

    Every method holds one re-entrant lock, so the cache is safe to share between threads
    and ``stats()`` is always a consistent snapshot. ``None`` for a bound means unbounded.
    ``sizeof`` measures a value when ``put`` is not told its size (default: ``nbytes_of``).
    """

    def __init__(
        self,
        size_limit: int | None = None,
        max_bytes: int | None = None,
        sizeof: Callable[[Any], int] = nbytes_of,
    ) -> None:
        self._size_limit = _check_limit(size_limit, "size_limit")
        self._max_bytes = _check_limit(max_bytes, "max_bytes")
        self._sizeof = sizeof
        self._data: OrderedDict[K, tuple[V, int]] = OrderedDict()  # least recent first
        self._bytes = 0
        self._hits = self._misses = self._evictions = self._rejections = 0
        self._lock = threading.RLock()

    @property
    def size_limit(self) -> int | None:
        return self._size_limit

    @property
    def max_bytes(self) -> int | None:
        return self._max_bytes

    # -- lookups ---------------------------------------------------------------------
    def get(self, key: K, default: V | None = None) -> V | None:
        """The value for ``key`` (marked most recent; counts a hit) or ``default`` (a miss)."""
        with self._lock:
            item = self._data.get(key)
            if item is None:
                self._misses += 1
                return default
            self._data.move_to_end(key)
            self._hits += 1
            return item[0]

    def peek(self, key: K, default: V | None = None) -> V | None:
        """Like ``get`` but leaves recency and statistics untouched."""
        with self._lock:
            item = self._data.get(key)
            return default if item is None else item[0]

    def best(self, predicate: Callable[[K, V], bool], rank: Callable[[K, V], Any]) -> tuple[K, V] | None:
        """The entry with the highest ``rank`` among those matching ``predicate``.

        Atomic under the lock; the winner becomes most recent and counts a hit, no match
        counts a miss. For lookups that are not by exact key (the mask cache's subset match).
        """
        with self._lock:
            found = [(rank(k, v), k, v) for k, (v, _) in self._data.items() if predicate(k, v)]
            if not found:
                self._misses += 1
                return None
            _, key, value = max(found, key=lambda t: t[0])
            self._data.move_to_end(key)
            self._hits += 1
            return key, value

    def items(self) -> list[tuple[K, V]]:
        """A snapshot of the entries, least recent first (no recency or stats change)."""
        with self._lock:
            return [(k, v) for k, (v, _) in self._data.items()]

    def keys(self) -> list[K]:
        with self._lock:
            return list(self._data)

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._data

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    # -- updates ---------------------------------------------------------------------
    def put(self, key: K, value: V, nbytes: int | None = None) -> bool:
        """Insert or replace ``key``; returns False (and changes nothing) when refused.

        A value larger than ``max_bytes`` is refused. Otherwise least-recent entries are
        evicted until both bounds hold with the new entry, then it is stored as most recent.
        """
        size = int(self._sizeof(value) if nbytes is None else nbytes)
        with self._lock:
            if self._max_bytes is not None and size > self._max_bytes:
                self._rejections += 1
                return False
            old = self._data.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            while self._data and not self._fits(size):
                _, (_, evicted_size) = self._data.popitem(last=False)
                self._bytes -= evicted_size
                self._evictions += 1
            self._data[key] = (value, size)
            self._bytes += size
            return True

    def _fits(self, size: int) -> bool:
        if self._size_limit is not None and len(self._data) + 1 > self._size_limit:
            return False
        return self._max_bytes is None or self._bytes + size <= self._max_bytes

    def touch(self, key: K) -> bool:
        """Mark ``key`` most recent without counting a hit; False when absent."""
        with self._lock:
            if key not in self._data:
                return False
            self._data.move_to_end(key)
            return True

    def pop(self, key: K, default: V | None = None) -> V | None:
        """Remove ``key`` and return its value (not counted as an eviction)."""
        with self._lock:
            item = self._data.pop(key, None)
            if item is None:
                return default
            self._bytes -= item[1]
            return item[0]

    def clear(self) -> None:
        """Drop every entry; the counters (hits, misses, ...) are kept."""
        with self._lock:
            self._data.clear()
            self._bytes = 0

    def stats(self) -> dict[str, int | None]:
        """Consistent snapshot: hits, misses, evictions, rejections, entries, bytes and the bounds."""
        with self._lock:
            return {
                "hits": self._hits,
                "misses": self._misses,
                "evictions": self._evictions,
                "rejections": self._rejections,
                "entries": len(self._data),
                "bytes": self._bytes,
                "max_bytes": self._max_bytes,
                "size_limit": self._size_limit,
            }

    def __repr__(self) -> str:
        s = self.stats()
        bounds = f"size_limit={s['size_limit']}, max_bytes={s['max_bytes']}"
        return f"{type(self).__name__}(entries={s['entries']}, bytes={s['bytes']}, {bounds})"
