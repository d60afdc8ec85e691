"""The two SAM2 image caches, with the Roboflow ``inference_models`` API plus byte budgets.

* ``Sam2ImageEmbeddingsInMemoryCache`` — image hash -> embeddings (an opaque dataclass or
  dict of arrays). ``init(size_limit, send_to_cpu=True, max_bytes=None, dtype=None)``;
  ``retrieve_embeddings(key)`` / ``save_embeddings(key, embeddings)`` as in inference_models.
* ``Sam2LowResolutionMasksInMemoryCache`` — (image hash, prompt) -> low-resolution mask
  logits, used to refine a prompt: ``retrieve_best_match(image_hash, prompt)`` returns the
  mask of the most recently cached prompt that is a strict subset of the new one (same
  box, fewer clicks). ``save_mask`` / ``retrieve_all_masks_for_image`` as in inference_models.

Both are bounded by entries (``size_limit``) and bytes (``max_bytes``), thread-safe, and can
store arrays as fp16 (``dtype="float16"``, restored to the original dtype on retrieval) and
torch tensors on the CPU (``send_to_cpu``, restored to their device on retrieval).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from sam2edge.errors import InputError
from sam2edge.runtime.image.lru import ByteBudgetLRU, nbytes_of
from sam2edge.runtime.image.packing import ArrayPacker, packed_nbytes

__all__ = [
    "ByteBudgetLRU",
    "PromptKey",
    "Sam2ImageEmbeddingsCache",
    "Sam2ImageEmbeddingsCacheNullObject",
    "Sam2ImageEmbeddingsInMemoryCache",
    "Sam2LowResolutionMasksCache",
    "Sam2LowResolutionMasksCacheNullObject",
    "Sam2LowResolutionMasksInMemoryCache",
    "Sam2MaskCacheEntry",
    "nbytes_of",
]

Point = tuple[float, float, int]  # (x, y, label) in original image pixels


def _check_key(key: Any, name: str = "image_hash") -> str:
    if not isinstance(key, str) or not key:
        raise InputError(f"{name} must be a non-empty string (e.g. from image_hash()), got {key!r}")
    return key


# -- prompts ---------------------------------------------------------------------------
@dataclass(frozen=True)
class PromptKey:
    """One prompt in canonical, hashable form: clicks (rounded, sorted) and an optional box.

    Clicks are compared exactly after rounding to ``decimals`` places, so the same click
    given as 10 or 10.0000001 is the same point; the order of the clicks does not matter
    (the decoder treats prompt tokens as a set).
    """

    points: tuple[Point, ...] = ()
    box: tuple[float, float, float, float] | None = None

    @classmethod
    def from_arrays(
        cls, point_coords: Any = None, point_labels: Any = None, box: Any = None, decimals: int = 3
    ) -> PromptKey:
        """From (P,2) coordinates, (P,) labels and a (4,) box, each optional (None)."""
        points: list[Point] = []
        if point_coords is not None:
            coords = np.asarray(point_coords, dtype=np.float64).reshape(-1, 2)
            labels = np.asarray(point_labels if point_labels is not None else np.ones(len(coords))).reshape(-1)
            if len(labels) != len(coords):
                raise InputError(f"point_labels has {len(labels)} entries for {len(coords)} point_coords")
            points = [(float(x), float(y), int(lab)) for (x, y), lab in zip(coords, labels)]
        b = None if box is None else tuple(np.asarray(box, dtype=np.float64).reshape(-1).tolist())
        return cls._canonical(points, b, decimals)

    @classmethod
    def _canonical(cls, points: Any, box: Any, decimals: int) -> PromptKey:
        pts = tuple(sorted((round(float(x), decimals), round(float(y), decimals), int(lab)) for x, y, lab in points))
        if box is not None:
            box = tuple(round(float(v), decimals) for v in box)
            if len(box) != 4:
                raise InputError(f"a prompt box must have 4 numbers [x_min, y_min, x_max, y_max], got {box!r}")
        return cls(pts, box)

    @classmethod
    def coerce(cls, prompt: Any, decimals: int = 3) -> PromptKey:
        """Accepts a PromptKey, a ``(points, box)`` pair with points as (x, y, label)
        triples, a one-element tuple of such a pair (the predictor's serialised prompt), or
        inference_models' serialised prompt (a one-element list of ``{"points": [{"x", "y",
        "positive"}], "box"}``)."""
        if isinstance(prompt, PromptKey):
            return prompt
        if isinstance(prompt, dict):
            points = [(p["x"], p["y"], p["positive"]) for p in prompt.get("points") or ()]
            return cls._canonical(points, prompt.get("box"), decimals)
        if isinstance(prompt, list | tuple) and len(prompt) == 1:
            return cls.coerce(prompt[0], decimals)
        if isinstance(prompt, list | tuple) and len(prompt) == 2 and (prompt[1] is None or len(prompt[1]) == 4):
            try:
                return cls._canonical(prompt[0], prompt[1], decimals)
            except (TypeError, ValueError) as exc:
                raise InputError(f"prompt points must be (x, y, label) triples, got {prompt[0]!r}") from exc
        raise InputError(
            "prompt must describe ONE prompt: a PromptKey, a (points, box) pair, or a one-element serialised "
            f"prompt; got {type(prompt).__name__} {str(prompt)[:120]}"
        )

    @property
    def is_empty(self) -> bool:
        return not self.points and self.box is None

    def is_strict_subset_of(self, other: PromptKey) -> bool:
        """Same box (or both none) and a proper subset of ``other``'s clicks."""
        return self.box == other.box and set(self.points) < set(other.points)

    @property
    def prompt_hash(self) -> str:
        return hashlib.sha1(json.dumps([self.points, self.box]).encode()).hexdigest()

    def serialize(self) -> list[dict[str, Any]]:
        """inference_models' serialised form: ``[{"points": [{"x", "y", "positive"}], "box"}]``."""
        points = [{"x": x, "y": y, "positive": lab} for x, y, lab in self.points]
        return [{"points": points, "box": None if self.box is None else list(self.box)}]


@dataclass(frozen=True)
class Sam2MaskCacheEntry:
    """inference_models' mask cache entry: prompt hash, serialised prompt, low-res mask."""

    prompt_hash: str
    serialized_prompt: Any
    mask: Any

    def to(self, device: Any = None) -> Sam2MaskCacheEntry:
        """Torch masks moved to ``device``; numpy masks are returned as they are."""
        if device is None or not hasattr(self.mask, "to") or isinstance(self.mask, np.ndarray):
            return self
        return Sam2MaskCacheEntry(self.prompt_hash, self.serialized_prompt, self.mask.to(device=device))


# -- interfaces (as in inference_models) -----------------------------------------------
class Sam2ImageEmbeddingsCache(ABC):
    @abstractmethod
    def retrieve_embeddings(self, key: str) -> Any | None: ...

    @abstractmethod
    def save_embeddings(self, key: str, embeddings: Any) -> None: ...


class Sam2ImageEmbeddingsCacheNullObject(Sam2ImageEmbeddingsCache):
    """A cache that stores nothing (the default when caching is off)."""

    def retrieve_embeddings(self, key: str) -> Any | None:
        return None

    def save_embeddings(self, key: str, embeddings: Any) -> None:
        return None


class Sam2LowResolutionMasksCache(ABC):
    @abstractmethod
    def retrieve_all_masks_for_image(self, key: str) -> list[Any]: ...

    @abstractmethod
    def save_mask(self, key: str, mask: Any) -> None: ...


class Sam2LowResolutionMasksCacheNullObject(Sam2LowResolutionMasksCache):
    """A mask cache that stores nothing."""

    def retrieve_all_masks_for_image(self, key: str) -> list[Any]:
        return []

    def save_mask(self, key: str, mask: Any) -> None:
        return None

    def retrieve_best_match(self, image_hash: str, prompt: Any) -> Any | None:
        return None


# -- common base of the two in-memory caches -------------------------------------------
class _BoundedCache:
    def __init__(self, size_limit: int | None, send_to_cpu: bool, max_bytes: int | None, dtype: Any) -> None:
        self._lru: ByteBudgetLRU[Any, Any] = ByteBudgetLRU(
            size_limit=size_limit, max_bytes=max_bytes, sizeof=packed_nbytes
        )
        self._packer = ArrayPacker(send_to_cpu=send_to_cpu, dtype=dtype)

    @property
    def size_limit(self) -> int | None:
        return self._lru.size_limit

    @property
    def max_bytes(self) -> int | None:
        return self._lru.max_bytes

    @property
    def send_to_cpu(self) -> bool:
        return self._packer.send_to_cpu

    @property
    def dtype(self) -> str | None:
        """The storage dtype: "float16" when arrays are stored as fp16, None when stored as given."""
        return self._packer.dtype

    def stats(self) -> dict[str, int | None]:
        """hits, misses, evictions, rejections, entries, bytes (as stored), max_bytes, size_limit."""
        return self._lru.stats()

    def clear(self) -> None:
        self._lru.clear()

    def __len__(self) -> int:
        return len(self._lru)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.stats()}, send_to_cpu={self.send_to_cpu}, dtype={self.dtype})"


class Sam2ImageEmbeddingsInMemoryCache(_BoundedCache, Sam2ImageEmbeddingsCache):
    """LRU cache of image embeddings keyed by image hash, bounded by entries and bytes."""

    @classmethod
    def init(
        cls, size_limit: int | None, send_to_cpu: bool = True, max_bytes: int | None = None, dtype: Any = None
    ) -> Sam2ImageEmbeddingsInMemoryCache:
        """``size_limit`` entries and ``max_bytes`` bytes (None: unbounded); ``send_to_cpu``
        keeps torch tensors on the CPU (pinned when CUDA is present); ``dtype="float16"``
        stores float arrays as fp16 (half the bytes) and restores them on retrieval."""
        return cls(size_limit=size_limit, send_to_cpu=send_to_cpu, max_bytes=max_bytes, dtype=dtype)

    def __init__(
        self, size_limit: int | None, send_to_cpu: bool = True, max_bytes: int | None = None, dtype: Any = None
    ) -> None:
        super().__init__(size_limit, send_to_cpu, max_bytes, dtype)

    def retrieve_embeddings(self, key: str) -> Any | None:
        """The embeddings for ``key`` (restored dtype/device), or None when absent."""
        packed = self._lru.get(key)
        return None if packed is None else self._packer.unpack(packed)

    def save_embeddings(self, key: str, embeddings: Any) -> None:
        self.put(key, embeddings)

    def put(self, key: str, embeddings: Any) -> bool:
        """Store ``embeddings``; False when larger than ``max_bytes`` (not stored).

        A key already present only becomes most recent: the same image hash means the same
        embeddings, so they are not converted and copied again.
        """
        _check_key(key, "key")
        if self._lru.touch(key):
            return True
        return self._lru.put(key, self._packer.pack(embeddings))

    get = retrieve_embeddings

    def remove(self, key: str) -> bool:
        return self._lru.pop(key) is not None

    def keys(self) -> list[str]:
        """Cached image hashes, least recently used first."""
        return self._lru.keys()

    def __contains__(self, key: object) -> bool:
        return key in self._lru


class _MaskRecord:
    __slots__ = ("image_hash", "prompt", "seq", "entry")

    def __init__(self, image_hash: str, prompt: PromptKey | None, seq: int, entry: Any) -> None:
        self.image_hash = image_hash
        self.prompt = prompt  # None when a foreign entry's prompt could not be parsed
        self.seq = seq  # save order: larger is more recent
        self.entry = entry  # packed Sam2MaskCacheEntry (or inference_models' entry)


class Sam2LowResolutionMasksInMemoryCache(_BoundedCache, Sam2LowResolutionMasksCache):
    """LRU cache of low-resolution mask logits keyed by (image hash, prompt)."""

    @classmethod
    def init(
        cls, size_limit: int | None, send_to_cpu: bool = True, max_bytes: int | None = None, dtype: Any = None
    ) -> Sam2LowResolutionMasksInMemoryCache:
        """Same bounds and storage options as ``Sam2ImageEmbeddingsInMemoryCache.init``."""
        return cls(size_limit=size_limit, send_to_cpu=send_to_cpu, max_bytes=max_bytes, dtype=dtype)

    def __init__(
        self, size_limit: int | None, send_to_cpu: bool = True, max_bytes: int | None = None, dtype: Any = None
    ) -> None:
        super().__init__(size_limit, send_to_cpu, max_bytes, dtype)
        self._seq = itertools.count()

    # -- our API ---------------------------------------------------------------------
    def save(self, image_hash: str, prompt: Any, mask: Any) -> bool:
        """Store ``mask`` (e.g. [1,256,256] logits) for ``prompt`` on ``image_hash``; a
        repeated (image, prompt) is replaced and becomes the most recent. False if too big."""
        p = PromptKey.coerce(prompt)
        entry = Sam2MaskCacheEntry(prompt_hash=p.prompt_hash, serialized_prompt=p.serialize(), mask=mask)
        return self._store(_check_key(image_hash), p, p.prompt_hash, entry)

    def retrieve(self, image_hash: str, prompt: Any) -> Any | None:
        """The mask cached for exactly this prompt, or None."""
        p = PromptKey.coerce(prompt)
        record = self._lru.get((image_hash, p.prompt_hash))
        return None if record is None else self._packer.unpack(record.entry).mask

    def retrieve_best_match(self, image_hash: str, prompt: Any) -> Any | None:
        """The mask of the most recently cached strict-subset prompt (same box, fewer
        clicks) of ``prompt`` on ``image_hash``, or None when nothing matches."""
        p = PromptKey.coerce(prompt)
        if p.is_empty:
            return None

        def matches(key: tuple[str, str], rec: _MaskRecord) -> bool:
            return key[0] == image_hash and rec.prompt is not None and rec.prompt.is_strict_subset_of(p)

        found = self._lru.best(matches, rank=lambda _k, rec: rec.seq)
        return None if found is None else self._packer.unpack(found[1].entry).mask

    def remove_image(self, image_hash: str) -> int:
        """Drop every mask of ``image_hash``; returns how many were dropped."""
        keys = [k for k in self._lru.keys() if k[0] == image_hash]
        return sum(self._lru.pop(k) is not None for k in keys)

    def __contains__(self, item: object) -> bool:
        """``(image_hash, prompt) in cache``."""
        if not (isinstance(item, tuple) and len(item) == 2):
            return False
        try:
            return (item[0], PromptKey.coerce(item[1]).prompt_hash) in self._lru
        except InputError:
            return False

    # -- inference_models API --------------------------------------------------------
    def save_mask(self, key: str, mask: Any) -> None:
        """Store an entry with ``prompt_hash``, ``serialized_prompt`` and ``mask`` attributes."""
        try:
            prompt: PromptKey | None = PromptKey.coerce(mask.serialized_prompt)
        except InputError:
            prompt = None  # kept and listed, but unusable for subset matching
        self._store(_check_key(key, "key"), prompt, prompt.prompt_hash if prompt else mask.prompt_hash, mask)

    def retrieve_all_masks_for_image(self, key: str) -> list[Any]:
        """Every entry of image ``key``, oldest first (restored dtype/device)."""
        records = sorted((rec for k, rec in self._lru.items() if k[0] == key), key=lambda rec: rec.seq)
        return [self._packer.unpack(rec.entry) for rec in records]

    def _store(self, image_hash: str, prompt: PromptKey | None, prompt_key: str, entry: Any) -> bool:
        packed = self._packer.pack(entry)
        record = _MaskRecord(image_hash, prompt, next(self._seq), packed)
        return self._lru.put((image_hash, prompt_key), record, nbytes=packed_nbytes(packed))
