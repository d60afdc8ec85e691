"""The model behind the server: loaded once, its two caches, its lanes and the click batcher.

Everything that touches the model goes through here, on a lane: image encodes on the
``encode`` lane (with in-flight de-duplication: two requests for one uncached image encode it
once), clicks through the batcher on the ``decode`` lane. Only the public API is used:
``AutoModel.from_pretrained``, ``embed_images``, ``segment_images``, ``track``, ``stream`` and
the ``sam2edge.cache`` classes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from sam2edge.errors import Sam2EdgeError
from sam2edge.server.batching import Click, ClickBatcher, Decoded, decode_clicks
from sam2edge.server.lanes import Lane
from sam2edge.server.problems import Problem, bad_request, busy
from sam2edge.server.settings import ServerSettings

log = logging.getLogger("sam2edge.server")


def make_caches(settings: ServerSettings) -> tuple[Any, Any]:
    """The embeddings cache (entries + bytes, stored as computed: fp32) and the low-res logits cache."""
    from sam2edge.cache import Sam2ImageEmbeddingsInMemoryCache, Sam2LowResolutionMasksInMemoryCache

    embeddings = Sam2ImageEmbeddingsInMemoryCache.init(size_limit=settings.cache_entries, max_bytes=settings.cache_bytes)
    logits = Sam2LowResolutionMasksInMemoryCache.init(size_limit=settings.logits_cache_entries)
    return embeddings, logits


def load_model(settings: ServerSettings, embeddings_cache: Any, logits_cache: Any) -> tuple[Any, bool]:
    """``AutoModel.from_pretrained`` with the video artifacts; without them (image only) when they
    cannot load. Returns (model, video_available)."""
    from sam2edge import AutoModel

    common = {"backend": settings.backend, "device": settings.device, "strict": settings.strict,
              "store_dir": settings.store_dir, "sam2_image_embeddings_cache": embeddings_cache,
              "sam2_low_resolution_masks_cache": logits_cache}
    try:
        return AutoModel.from_pretrained(settings.model, video=True, **common), True
    except Sam2EdgeError as exc:
        log.warning("video artifacts could not load (%s); serving images only", exc)
        return AutoModel.from_pretrained(settings.model, video=False, **common), False


def content_id(rgb: np.ndarray) -> str:
    """A cache key from the pixels (shape + bytes), 24 hex digits of SHA-256."""
    digest = hashlib.sha256(f"{rgb.shape}|".encode())
    digest.update(np.ascontiguousarray(rgb).reshape(-1).view(np.uint8))
    return digest.hexdigest()[:24]


class ModelService:
    """Owns the model once it is loaded; every method that needs it answers 503 before that."""

    def __init__(self, settings: ServerSettings, on_depth: Callable[[str, int], None] | None = None,
                 on_batch: Callable[[int], None] | None = None, caches: tuple[Any, Any] | None = None) -> None:
        self.settings = settings
        self.embeddings_cache, self.logits_cache = caches or make_caches(settings)
        self.model: Any = None
        self.video_available = False
        self.load_error: str | None = None
        self.encode_lane = Lane("encode", settings.encode_queue, settings.retry_after_s, on_depth)
        self.decode_lane = Lane("decode", 1 << 30, settings.retry_after_s, on_depth)
        self.batcher = ClickBatcher(
            self.decode_lane, self._decode, enabled=settings.batching, window_s=settings.batch_window_ms / 1e3,
            max_batch=settings.max_batch_prompts, capacity=settings.click_queue, retry_after_s=settings.retry_after_s,
            on_batch=on_batch, on_depth=(lambda n: on_depth("clicks", n)) if on_depth else None)
        self._inflight: dict[str, asyncio.Future] = {}
        self.ready = threading.Event()

    # -- life cycle ----------------------------------------------------------------------
    def set_model(self, model: Any, video_available: bool) -> None:
        self.model = model
        self.video_available = video_available
        self.ready.set()

    def load(self) -> None:
        """Load the model from the settings (blocking); records a failure instead of raising."""
        try:
            self.set_model(*load_model(self.settings, self.embeddings_cache, self.logits_cache))
        except Exception as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"
            log.error("model could not be loaded: %s", self.load_error)

    def require(self) -> Any:
        if self.model is None:
            if self.load_error:
                raise Problem(503, f"the model failed to load: {self.load_error}")
            raise busy("the model is still loading", 5)
        return self.model

    def close(self) -> None:
        self.encode_lane.close()
        self.decode_lane.close()

    # -- embeddings ------------------------------------------------------------------------
    def cached(self, image_id: str | None) -> Any | None:
        if not image_id:
            return None
        return self.require().cached_embeddings(image_id)

    async def embedding(self, image_id: str | None, decode: Callable[[], np.ndarray] | None) -> tuple[str, Any, bool]:
        """(image_id, embeddings, from_cache). ``decode`` gives the RGB image when it must be encoded."""
        model = self.require()
        hit = self.cached(image_id)
        if hit is not None:
            return image_id, hit, True  # type: ignore[return-value]
        if decode is None:
            raise bad_request(f"image_id {image_id!r} is not cached here (never embedded, or evicted): send the image too")
        if self.encode_lane.depth >= self.encode_lane.capacity:  # refuse before spending time on decoding
            raise busy(f"the encode queue is full ({self.encode_lane.capacity} encodes waiting); retry shortly",
                       self.settings.retry_after_s)
        rgb = await asyncio.to_thread(decode)
        key = image_id or content_id(rgb)
        hit = self.cached(key)
        if hit is not None:
            return key, hit, True
        task = self._inflight.get(key)
        if task is None:  # a task of its own: a request that goes away does not cancel it for the others
            task = asyncio.ensure_future(self.encode_lane.run(self._embed, model, rgb, key))
            self._inflight[key] = task
            task.add_done_callback(lambda t, k=key: self._forget(k, t))
        return key, await asyncio.shield(task), False

    def _forget(self, key: str, task: asyncio.Future) -> None:
        self._inflight.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved: the requests that still wait re-raise it themselves

    @staticmethod
    def _embed(model: Any, rgb: np.ndarray, key: str) -> Any:
        return model.embed_images(rgb, image_hashes=key, input_color_format="rgb")[0]

    # -- clicks ----------------------------------------------------------------------------
    def _decode(self, clicks: list[Click]) -> list[Decoded]:
        return decode_clicks(self.require(), clicks)

    async def decode(self, clicks: list[Click]) -> list[Decoded]:
        self.require()
        return await self.batcher.submit_many(clicks)
