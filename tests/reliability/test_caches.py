"""Caches that cannot be corrupted or overrun (issue 13).

Probes that failed on the earlier main: writing into what embed_images returned, or into an array
after saving it, changed the cached entry; batched embeddings were views of the whole batch (the
budget counted 16 MiB while 48 MiB stayed alive); one cache shared by two models served one model's
embeddings to the other; a reused image hash with a differently sized image gave masks of the wrong
size; concurrent misses on one image encoded it once per thread.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from sam2edge.cache import Sam2ImageEmbeddingsInMemoryCache, Sam2LowResolutionMasksInMemoryCache
from sam2edge.errors import InputError
from tests.reliability.fakes import fake_model

RNG = np.random.default_rng(0)


def _img(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _cached(model, image_hash):
    return model._embedder.lookup(model._sam2_image_embeddings_cache, image_hash)


def test_writing_into_returned_or_saved_arrays_does_not_change_the_cache():
    model = fake_model(sam2_image_embeddings_cache=Sam2ImageEmbeddingsInMemoryCache.init(size_limit=4))
    emb = model.embed_images(_img(), image_hashes="a")[0]
    before = _cached(model, "a").embeddings.copy()
    emb.embeddings[...] = 1234.0  # the caller owns what a miss returns
    np.testing.assert_array_equal(_cached(model, "a").embeddings, before)
    hit = model.embed_images(_img(), image_hashes="a")[0]
    with pytest.raises(ValueError, match="read-only"):  # a hit is the cache's own copy: writing raises
        hit.embeddings[0, 0, 0, 0] = 1.0
    cache = Sam2ImageEmbeddingsInMemoryCache.init(size_limit=2)
    arr = np.ones((4, 4), np.float32)
    cache.save_embeddings("k", {"x": arr})
    arr[...] = 7.0  # written after saving
    assert float(cache.retrieve_embeddings("k")["x"].max()) == 1.0


def test_torch_tensors_are_copied_in_and_out():
    torch = pytest.importorskip("torch")
    for send_to_cpu in (True, False):
        cache = Sam2ImageEmbeddingsInMemoryCache.init(size_limit=2, send_to_cpu=send_to_cpu)
        t = torch.ones(3)
        cache.save_embeddings("k", {"t": t})
        t.add_(5)
        out = cache.retrieve_embeddings("k")["t"]
        out.add_(100)
        assert cache.retrieve_embeddings("k")["t"].tolist() == [1.0, 1.0, 1.0], send_to_cpu


def test_batched_entries_hold_only_their_own_bytes():
    cache = Sam2ImageEmbeddingsInMemoryCache.init(size_limit=8)
    model = fake_model(sam2_image_embeddings_cache=cache)
    embs = model.embed_images([_img(seed=i) for i in range(3)])
    one = sum(a.nbytes for a in (embs[0].embeddings, *embs[0].high_resolution_features))
    assert cache.stats()["bytes"] == 3 * one
    for e in embs:
        held = _cached(model, e.image_hash)
        for a, b in zip((held.embeddings, *held.high_resolution_features), (e.embeddings, *e.high_resolution_features)):
            assert a.base is None or a.base.nbytes == a.nbytes, "a cached array keeps a larger buffer alive"
            assert not np.shares_memory(a, b)


def test_a_shared_cache_never_serves_one_models_embeddings_to_another():
    cache = Sam2ImageEmbeddingsInMemoryCache.init(size_limit=8)
    masks = Sam2LowResolutionMasksInMemoryCache.init(size_limit=8)
    a = fake_model("sam2.1_hiera_tiny:aaaa", sam2_image_embeddings_cache=cache, sam2_low_resolution_masks_cache=masks)
    b = fake_model("sam2.1_hiera_tiny:bbbb", sam2_image_embeddings_cache=cache, sam2_low_resolution_masks_cache=masks)
    img = _img()
    ea = a.embed_images(img, image_hashes="same")[0]
    b.embed_images(img, image_hashes="same")
    assert b.runners["image_encoder"].calls == 1, "model b must encode for itself, not take model a's entry"
    assert ea.model_id == "sam2.1_hiera_tiny:aaaa"
    with pytest.raises(InputError, match="made by model sam2.1_hiera_tiny:aaaa"):
        b.segment_images(embeddings=ea, point_coordinates=np.array([[10, 10]]), point_labels=np.array([1]))
    a.segment_images(image_hashes="same", point_coordinates=np.array([[10, 10]]), point_labels=np.array([1]), save_to_mask_input_cache=True)
    keys = [k for k, _ in masks._lru.items()]
    assert keys and all(k[0].endswith("@sam2.1_hiera_tiny:aaaa") for k in keys)


def test_a_reused_hash_with_another_image_size_is_refused_and_changes_nothing():
    model = fake_model(sam2_image_embeddings_cache=Sam2ImageEmbeddingsInMemoryCache.init(size_limit=4))
    model.embed_images(_img(48, 64), image_hashes="k")
    before = model._sam2_image_embeddings_cache.stats()["entries"]
    with pytest.raises(InputError, match=r"cached for an image of \(48, 64\)"):
        model.segment_images(_img(40, 40), image_hashes="k", point_coordinates=np.array([[5, 5]]), point_labels=np.array([1]))
    with pytest.raises(InputError, match="one hash must name one image"):
        model.embed_images([_img(48, 64, 1), _img(30, 30, 2)], image_hashes=["new", "new"])
    assert model._sam2_image_embeddings_cache.stats()["entries"] == before
    strict = fake_model(allow_client_image_hashes=False)
    with pytest.raises(InputError, match="allow_client_image_hashes"):
        strict.embed_images(_img(), image_hashes="x")


def test_concurrent_misses_on_one_image_encode_it_once():
    model = fake_model(delay=0.3, sam2_image_embeddings_cache=Sam2ImageEmbeddingsInMemoryCache.init(size_limit=4))
    img = _img()
    results, errors = [], []
    barrier = threading.Barrier(8)

    def worker() -> None:
        try:
            barrier.wait()
            results.append(model.embed_images(img)[0])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 8
    assert model.runners["image_encoder"].images == 1, f"encoded {model.runners['image_encoder'].images} times"
    assert len({float(r.embeddings.mean()) for r in results}) == 1
