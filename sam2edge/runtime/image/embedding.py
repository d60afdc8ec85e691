"""Images -> embeddings through the image-encoder runner, with the embeddings cache and single flight.

Cache entries are keyed by ``<image hash>@<model id>``, so one cache shared by several models never
hands one model's embeddings to another. Concurrent requests for the same key encode it once: the
first caller encodes, the others wait for its result (or encode themselves if it failed).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sam2edge.backends.base import Runner
from sam2edge.contract.artifacts import Tensor
from sam2edge.errors import InputError
from sam2edge.runtime.image.types import SAM2ImageEmbeddings


def cache_key(image_hash: str, model_id: str) -> str:
    return f"{image_hash}@{model_id}"


@dataclass
class _Flight:
    done: threading.Event = field(default_factory=threading.Event)
    result: SAM2ImageEmbeddings | None = None


class Embedder:
    """Encodes RGB images in batches of ``max_batch_size`` and keeps the cache (see the module docstring)."""

    def __init__(self, runner: Runner, preprocess: Callable[[np.ndarray], np.ndarray], max_batch_size: int,
                 model_id: str) -> None:
        self.runner = runner
        self.preprocess = preprocess
        self.max_batch_size = max_batch_size
        self.model_id = model_id
        self._lock = threading.Lock()
        self._flights: dict[str, _Flight] = {}

    def lookup(self, cache: Any, image_hash: str) -> SAM2ImageEmbeddings | None:
        """The cached embeddings of ``image_hash`` made by this model (float32), or None."""
        if cache is None:
            return None
        hit = cache.retrieve_embeddings(key=cache_key(image_hash, self.model_id))
        return None if hit is None else hit.to(dtype=np.float32)

    def embed(self, rgbs: Sequence[np.ndarray], hashes: Sequence[str], cache: Any) -> list[SAM2ImageEmbeddings]:
        first: dict[str, int] = {}
        for i, h in enumerate(hashes):  # refused before anything is encoded or cached
            j = first.setdefault(h, i)
            if rgbs[j].shape[:2] != rgbs[i].shape[:2]:
                raise InputError(f"image_hashes[{j}] and image_hashes[{i}] are both {h!r} but the images differ in size "
                                 f"({rgbs[j].shape[:2]} vs {rgbs[i].shape[:2]}): one hash must name one image")
        found: dict[int, SAM2ImageEmbeddings] = {}
        for i, h in enumerate(hashes):
            hit = self.lookup(cache, h)
            if hit is not None:
                _check_size(hit, rgbs[i], i)
                found[i] = hit
        waiting: dict[int, _Flight] = {}
        mine: dict[int, str] = {}
        with self._lock:
            for i, h in enumerate(hashes):
                if i in found:
                    continue
                key = cache_key(h, self.model_id)
                if key in self._flights:
                    waiting[i] = self._flights[key]
                elif key not in mine.values():
                    self._flights[key] = _Flight()
                    mine[i] = key
        try:
            self._encode_into(found, [i for i in mine], rgbs, hashes, cache)
        finally:
            with self._lock:
                for i, key in mine.items():
                    flight = self._flights.pop(key)
                    flight.result = found.get(i)
                    flight.done.set()
        for i, flight in waiting.items():
            flight.done.wait()
            if flight.result is None:  # its owner failed: encode it here
                self._encode_into(found, [i], rgbs, hashes, cache)
            else:
                _check_size(flight.result, rgbs[i], i)
                found[i] = flight.result
        for i, h in enumerate(hashes):  # a hash repeated within this call: encoded once, shared
            if i not in found:
                found[i] = found[first[h]]
        return [found[i] for i in range(len(hashes))]

    def _encode_into(self, found: dict[int, SAM2ImageEmbeddings], todo: list[int], rgbs: Sequence[np.ndarray],
                     hashes: Sequence[str], cache: Any) -> None:
        for start in range(0, len(todo), self.max_batch_size):
            chunk = todo[start : start + self.max_batch_size]
            batch = np.concatenate([self.preprocess(rgbs[i]) for i in chunk], axis=0)
            out = self.runner.infer({Tensor.IMAGE: batch})
            for j, i in enumerate(chunk):
                emb = SAM2ImageEmbeddings(
                    image_hash=hashes[i],
                    image_size_hw=(int(rgbs[i].shape[0]), int(rgbs[i].shape[1])),
                    embeddings=out[Tensor.IMAGE_EMBED][j : j + 1],
                    high_resolution_features=[out[Tensor.HIGH_RES_0][j : j + 1], out[Tensor.HIGH_RES_1][j : j + 1]],
                    model_id=self.model_id,
                )
                if cache is not None:  # the cache copies: it never holds a view of this batch
                    cache.save_embeddings(key=cache_key(hashes[i], self.model_id), embeddings=emb)
                found[i] = emb


def _check_size(emb: SAM2ImageEmbeddings, rgb: np.ndarray, idx: int) -> None:
    got = (int(rgb.shape[0]), int(rgb.shape[1]))
    if tuple(emb.image_size_hw) != got:
        raise InputError(
            f"image_hashes[{idx}] {emb.image_hash!r} is cached for an image of {tuple(emb.image_size_hw)} (h, w), "
            f"but images[{idx}] is {got}: one hash must name one image; pass its own hash (or none)"
        )
