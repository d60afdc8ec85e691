"""Public import path of the SAM2 caches (as ``inference_models`` users expect to find them).

Example::

    from sam2edge.cache import Sam2ImageEmbeddingsInMemoryCache

    cache = Sam2ImageEmbeddingsInMemoryCache.init(size_limit=64, max_bytes=2 << 30, dtype="float16")
"""

from __future__ import annotations

from sam2edge.runtime.image.caches import (
    PromptKey,
    Sam2ImageEmbeddingsCacheNullObject,
    Sam2ImageEmbeddingsInMemoryCache,
    Sam2LowResolutionMasksCacheNullObject,
    Sam2LowResolutionMasksInMemoryCache,
    Sam2MaskCacheEntry,
)

__all__ = [
    "PromptKey",
    "Sam2ImageEmbeddingsCacheNullObject",
    "Sam2ImageEmbeddingsInMemoryCache",
    "Sam2LowResolutionMasksCacheNullObject",
    "Sam2LowResolutionMasksInMemoryCache",
    "Sam2MaskCacheEntry",
]
