"""Caches: LRU and byte bounds, thread safety, fp16 storage, CPU offload, subset-prompt lookup."""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

import numpy as np
import pytest

from sam2edge.cache import (
    PromptKey,
    Sam2ImageEmbeddingsInMemoryCache,
    Sam2LowResolutionMasksInMemoryCache,
    Sam2MaskCacheEntry,
)
from sam2edge.errors import InputError
from sam2edge.runtime.image.caches import ByteBudgetLRU, nbytes_of


def arr(nbytes: int, value: float = 1.0) -> np.ndarray:
    return np.full(nbytes // 4, value, dtype=np.float32)


@dataclass(frozen=True)
class Embeddings:
    """Shaped like the predictor's embeddings (small), frozen, with a validating __post_init__."""

    image_hash: str
    image_size_hw: tuple[int, int]
    embeddings: np.ndarray
    high_resolution_features: list = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.embeddings.ndim != 4:
            raise ValueError("embeddings must be 4-D")


def make_embeddings(seed: int = 0, scale: float = 1.0) -> Embeddings:
    rng = np.random.default_rng(seed)
    return Embeddings(
        "h",
        (480, 640),
        (rng.standard_normal((1, 16, 8, 8)) * scale).astype(np.float32),
        [
            rng.standard_normal((1, 4, 32, 32)).astype(np.float32),
            rng.standard_normal((1, 8, 16, 16)).astype(np.float32),
        ],
    )


# -- ByteBudgetLRU ---------------------------------------------------------------------
def test_lru_entry_bound_evicts_least_recent_and_get_refreshes():
    lru = ByteBudgetLRU(size_limit=3)
    for k in "abc":
        assert lru.put(k, arr(40))
    assert lru.get("a") is not None  # a becomes most recent; b is now the oldest
    lru.put("d", arr(40))
    assert lru.keys() == ["c", "a", "d"]
    assert "b" not in lru and len(lru) == 3
    assert lru.get("b") is None
    s = lru.stats()
    assert (s["hits"], s["misses"], s["evictions"], s["entries"], s["bytes"]) == (1, 1, 1, 3, 120)


def test_lru_byte_bound_and_rejection():
    lru = ByteBudgetLRU(size_limit=None, max_bytes=100)
    assert lru.put("a", arr(40)) and lru.put("b", arr(40))
    assert lru.put("c", arr(40))  # 120 > 100: evicts a
    assert lru.keys() == ["b", "c"] and lru.stats()["bytes"] == 80
    assert not lru.put("huge", arr(104))  # larger than the whole budget: refused, nothing evicted
    s = lru.stats()
    assert s["rejections"] == 1 and s["entries"] == 2 and s["bytes"] == 80 and "huge" not in lru
    assert lru.put("b", arr(100))  # replacing b with a bigger value evicts c, not b
    assert lru.keys() == ["b"] and lru.stats()["bytes"] == 100


def test_lru_pop_clear_peek_and_invalid_limits():
    lru = ByteBudgetLRU(size_limit=2, max_bytes=1000)
    lru.put("a", arr(8))
    assert lru.peek("a") is not None and lru.stats()["hits"] == 0  # peek counts nothing
    assert lru.pop("a") is not None and lru.pop("a") is None
    lru.put("b", arr(8))
    lru.clear()
    assert len(lru) == 0 and lru.stats()["bytes"] == 0
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InputError, match="size_limit"):
            ByteBudgetLRU(size_limit=bad)
    with pytest.raises(InputError, match="max_bytes"):
        ByteBudgetLRU(max_bytes=0)


def test_nbytes_of_nested_structures():
    emb = make_embeddings()
    expected = emb.embeddings.nbytes + sum(a.nbytes for a in emb.high_resolution_features)
    assert nbytes_of(emb) == expected
    assert nbytes_of({"x": (arr(40), [arr(8)]), "name": "text", "n": 3}) == 48


def test_lru_concurrent_byte_budget_never_exceeded():
    """8 threads insert and read; an observer samples stats() the whole time."""
    lru: ByteBudgetLRU = ByteBudgetLRU(size_limit=20, max_bytes=4000)
    gets = [0] * 8
    stored = [0] * 8
    violations: list[dict] = []
    stop = threading.Event()

    def worker(tid: int) -> None:
        rng = random.Random(tid)
        for i in range(400):
            if rng.random() < 0.5:
                stored[tid] += lru.put((tid, i), arr(4 * rng.randint(1, 300)))  # up to 1200 bytes
            else:
                lru.get((rng.randrange(8), max(i - rng.randint(1, 6), 0)))  # recent keys: hits and misses
                gets[tid] += 1

    def observer() -> None:
        while not stop.is_set():
            s = lru.stats()
            if s["bytes"] > 4000 or s["entries"] > 20:
                violations.append(s)

    watch = threading.Thread(target=observer)
    watch.start()
    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    watch.join()
    s = lru.stats()
    print(f"\nconcurrent LRU: {s}, puts stored={sum(stored)}, gets={sum(gets)}")
    assert not violations, violations[:3]
    assert s["hits"] + s["misses"] == sum(gets)
    assert sum(stored) - s["evictions"] == s["entries"] == len(lru)  # unique keys: no replacements
    assert s["bytes"] == sum(v.nbytes for _, v in lru.items()) <= 4000


# -- embeddings cache ------------------------------------------------------------------
def test_embeddings_cache_concurrent_fp16():
    """8 threads save and retrieve through the fp16 embeddings cache under a byte budget."""
    one = nbytes_of(make_embeddings()) // 2  # stored as fp16
    cache = Sam2ImageEmbeddingsInMemoryCache.init(size_limit=50, max_bytes=3 * one, dtype="float16")
    peak, errors = [0], []

    def worker(tid: int) -> None:
        rng = random.Random(tid)
        for _ in range(60):
            key = f"k{rng.randrange(5)}"  # 5 images shared by all threads, room for 3
            got = cache.retrieve_embeddings(key)
            if got is None:
                cache.save_embeddings(key, make_embeddings())
            elif got.embeddings.dtype != np.float32 or got.image_size_hw != (480, 640):
                errors.append(key)
            peak[0] = max(peak[0], cache.stats()["bytes"])

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    s = cache.stats()
    print(f"\nconcurrent embeddings cache: peak bytes {peak[0]} <= {s['max_bytes']}; {s}")
    assert not errors and peak[0] <= 3 * one and s["entries"] <= 3
    assert s["hits"] + s["misses"] == 8 * 60 and s["bytes"] == s["entries"] * one


def test_embeddings_cache_inference_models_api_and_lru():
    cache = Sam2ImageEmbeddingsInMemoryCache.init(size_limit=2, send_to_cpu=True)
    assert cache.retrieve_embeddings("missing") is None
    for k in ("a", "b", "c"):
        cache.save_embeddings(key=k, embeddings=make_embeddings())
    assert cache.retrieve_embeddings("a") is None and len(cache) == 2
    got = cache.retrieve_embeddings(key="c")
    assert isinstance(got, Embeddings) and got.image_size_hw == (480, 640)
    np.testing.assert_array_equal(got.embeddings, make_embeddings().embeddings)
    assert not got.embeddings.flags.writeable  # stored by reference, handed back read-only
    s = cache.stats()
    assert s["entries"] == 2 and s["evictions"] == 1 and s["hits"] == 1 and s["misses"] == 2
    assert "c" in cache and cache.remove("c") and "c" not in cache
    cache.clear()
    assert len(cache) == 0


def test_embeddings_cache_fp16_halves_bytes_and_restores_fp32():
    emb = make_embeddings(scale=10.0)
    full = Sam2ImageEmbeddingsInMemoryCache.init(size_limit=4)
    half = Sam2ImageEmbeddingsInMemoryCache.init(size_limit=4, dtype="float16")
    full.save_embeddings("k", emb)
    half.save_embeddings("k", emb)
    assert half.stats()["bytes"] * 2 == full.stats()["bytes"] == nbytes_of(emb)
    got = half.retrieve_embeddings("k")
    assert got.embeddings.dtype == np.float32
    err = float(np.abs(got.embeddings - emb.embeddings).max())
    print(f"\nfp16 storage round-trip max abs error (values ~N(0,10)): {err:.2e}")
    assert 0 < err <= np.abs(emb.embeddings).max() * 2**-11  # fp16 rounding, nothing worse


def test_embeddings_cache_fp16_keeps_out_of_range_and_non_float_arrays():
    cache = Sam2ImageEmbeddingsInMemoryCache.init(size_limit=4, dtype="float16")
    value = {"big": np.full(8, 1e6, np.float32), "ints": np.arange(8, dtype=np.int64), "ok": np.ones(8, np.float32)}
    cache.save_embeddings("k", value)
    assert cache.stats()["bytes"] == 32 + 64 + 16
    got = cache.retrieve_embeddings("k")
    np.testing.assert_array_equal(got["big"], value["big"])  # would be inf in fp16
    assert got["ints"].dtype == np.int64 and got["ok"].dtype == np.float32
    with pytest.raises(InputError, match="dtype"):
        Sam2ImageEmbeddingsInMemoryCache.init(size_limit=1, dtype="int8")


def test_embeddings_cache_byte_budget_and_oversize_rejection():
    one = nbytes_of(make_embeddings())
    cache = Sam2ImageEmbeddingsInMemoryCache.init(size_limit=None, max_bytes=2 * one + 10)
    for k in "abc":
        cache.save_embeddings(k, make_embeddings())
    assert cache.keys() == ["b", "c"] and cache.stats()["bytes"] == 2 * one
    tiny = Sam2ImageEmbeddingsInMemoryCache.init(size_limit=5, max_bytes=one - 1)
    assert tiny.put("a", make_embeddings()) is False
    assert tiny.stats()["rejections"] == 1 and len(tiny) == 0
    with pytest.raises(InputError, match="size_limit"):
        Sam2ImageEmbeddingsInMemoryCache.init(size_limit=0)


def test_embeddings_cache_torch_tensors():
    torch = pytest.importorskip("torch", reason="torch not installed: tensor storage not tested")
    value = {"feat": torch.randn(1, 8, 16, 16), "pos": torch.arange(4)}
    cache = Sam2ImageEmbeddingsInMemoryCache.init(size_limit=2, send_to_cpu=True, dtype="float16")
    cache.save_embeddings("k", value)
    assert cache.stats()["bytes"] == 8 * 16 * 16 * 2 + 4 * 8
    got = cache.retrieve_embeddings("k")
    assert got["feat"].dtype == torch.float32 and got["feat"].device.type == "cpu"
    assert torch.equal(got["pos"], value["pos"])
    assert float((got["feat"] - value["feat"]).abs().max()) < 4e-3


def test_embeddings_cache_send_to_cpu_restores_cuda_device():
    torch = pytest.importorskip("torch", reason="torch not installed")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: CPU offload and device restore need a GPU")
    value = {"feat": torch.randn(1, 8, 16, 16, device="cuda")}
    cache = Sam2ImageEmbeddingsInMemoryCache.init(size_limit=2, send_to_cpu=True)
    cache.save_embeddings("k", value)
    stored = cache._lru.peek("k")["feat"].data
    assert stored.device.type == "cpu" and stored.is_pinned()
    got = cache.retrieve_embeddings("k")
    assert got["feat"].device == value["feat"].device and torch.equal(got["feat"], value["feat"])


# -- low-resolution mask cache ---------------------------------------------------------
def mask(v: float) -> np.ndarray:
    return np.full((1, 256, 256), v, np.float32)


P1, P2, P3 = (10.0, 20.0, 1), (30.0, 40.0, 0), (50.0, 60.0, 1)
BOX = (1.0, 2.0, 100.0, 120.0)


def prompt(*points, box=None):
    return (tuple(points), box)


def test_mask_cache_strict_subset_lookup_returns_most_recent():
    cache = Sam2LowResolutionMasksInMemoryCache.init(size_limit=10)
    cache.save("img", prompt(P1), mask(1))
    cache.save("img", prompt(P1, P2), mask(2))
    assert cache.retrieve_best_match("img", prompt(P1, P2, P3))[0, 0, 0] == 2
    cache.save("img", prompt(P1), mask(3))  # re-saving {P1} makes it the most recent subset
    assert cache.retrieve_best_match("img", prompt(P1, P2, P3))[0, 0, 0] == 3
    # The same prompt is not a strict subset of itself; the exact lookup finds it.
    assert cache.retrieve_best_match("img", prompt(P1)) is None
    assert cache.retrieve("img", prompt(P1))[0, 0, 0] == 3
    assert cache.retrieve_best_match("other-image", prompt(P1, P2)) is None


def test_mask_cache_box_must_match_and_no_match_is_none():
    cache = Sam2LowResolutionMasksInMemoryCache.init(size_limit=10)
    cache.save("img", prompt(box=BOX), mask(1))
    cache.save("img", prompt(P1, box=BOX), mask(2))
    assert cache.retrieve_best_match("img", prompt(P1, P2, box=BOX))[0, 0, 0] == 2
    assert cache.retrieve_best_match("img", prompt(P2, box=BOX))[0, 0, 0] == 1  # box-only is a subset
    assert cache.retrieve_best_match("img", prompt(P1, P2)) is None  # cached prompts have a box, this one not
    assert cache.retrieve_best_match("img", prompt(P1, P2, box=(0.0, 0.0, 5.0, 5.0))) is None
    assert cache.retrieve_best_match("img", prompt()) is None  # empty prompt
    s = cache.stats()
    assert s["hits"] == 2 and s["misses"] == 2  # the empty prompt is not a lookup


def test_mask_cache_points_compared_after_rounding_and_order_free():
    cache = Sam2LowResolutionMasksInMemoryCache.init(size_limit=10)
    cache.save("img", prompt((10.00004, 20.0, 1), P2), mask(5))
    assert cache.retrieve_best_match("img", prompt(P3, P2, P1))[0, 0, 0] == 5
    assert cache.retrieve_best_match("img", prompt((10.01, 20.0, 1), P2, P3)) is None
    assert cache.retrieve_best_match("img", prompt((10.0, 20.0, 0), P2, P3)) is None  # label differs
    assert ("img", prompt(P2, P1)) in cache
    # The predictor's serialised form (a one-element tuple) and PromptKey are accepted too.
    assert cache.retrieve_best_match("img", (prompt(P1, P2, P3),))[0, 0, 0] == 5
    mp = PromptKey.from_arrays(np.array([[10, 20], [30, 40], [50, 60]]), np.array([1, 0, 1]))
    assert cache.retrieve_best_match("img", mp)[0, 0, 0] == 5
    with pytest.raises(InputError, match="ONE prompt"):
        cache.retrieve_best_match("img", (prompt(P1), prompt(P2)))


def test_mask_cache_bounds_and_remove_image():
    cache = Sam2LowResolutionMasksInMemoryCache.init(size_limit=None, max_bytes=2 * mask(0).nbytes, dtype=None)
    cache.save("img", prompt(P1), mask(1))
    cache.save("img", prompt(P2), mask(2))
    cache.save("img", prompt(P3), mask(3))
    assert len(cache) == 2 and cache.retrieve("img", prompt(P1)) is None
    assert cache.stats()["evictions"] == 1
    half = Sam2LowResolutionMasksInMemoryCache.init(size_limit=8, dtype="float16")
    half.save("img", prompt(P1), mask(1.5))
    assert half.stats()["bytes"] == mask(0).nbytes // 2
    got = half.retrieve("img", prompt(P1))
    assert got.dtype == np.float32 and got[0, 0, 0] == 1.5
    assert cache.remove_image("img") == 2 and len(cache) == 0


@dataclass(frozen=True)
class ForeignEntry:
    """Shaped like inference_models' SAM2MaskCacheEntry."""

    prompt_hash: str
    serialized_prompt: list
    mask: np.ndarray


def test_mask_cache_inference_models_api():
    cache = Sam2LowResolutionMasksInMemoryCache.init(size_limit=10, send_to_cpu=True)
    ser = [{"points": [{"x": 10.0, "y": 20.0, "positive": True}], "box": None}]
    cache.save_mask(key="img", mask=ForeignEntry("their-hash", ser, mask(7)))
    cache.save("img", prompt(P1, P2), mask(8))
    entries = cache.retrieve_all_masks_for_image(key="img")
    assert [type(e) for e in entries] == [ForeignEntry, Sam2MaskCacheEntry]  # oldest first
    assert entries[0].prompt_hash == "their-hash" and entries[0].mask[0, 0, 0] == 7
    assert entries[1].serialized_prompt == PromptKey.coerce(prompt(P1, P2)).serialize()
    assert cache.retrieve_all_masks_for_image(key="nothing") == []
    # A foreign entry takes part in subset matching through its serialised prompt.
    cache2 = Sam2LowResolutionMasksInMemoryCache.init(size_limit=10)
    cache2.save_mask("img", ForeignEntry("h", ser, mask(7)))
    assert cache2.retrieve_best_match("img", prompt(P1, P3))[0, 0, 0] == 7
