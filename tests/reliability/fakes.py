"""Cheap runners on the real artifact specs, for the predictor's cache and input logic (no network runs).

The fake encoder's outputs are a deterministic function of the image (its per-channel means), so
two different images get different embeddings and a cache mix-up is visible; it counts its calls
and can be slowed down to widen race windows. The fake decoder returns logits from the clicks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping

import numpy as np

from sam2edge.backends.base import Runner
from sam2edge.config import get_config
from sam2edge.contract.artifacts import IMAGE_ENCODER, PROMPT_DECODER, Artifact, Tensor
from sam2edge.runtime.image.predictor import SAM2


class FakeEncoder(Runner):
    backend = "fake"
    thread_safe = True

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__(IMAGE_ENCODER)
        self.delay = delay
        self.calls = 0
        self.images = 0
        self._count = threading.Lock()

    def _infer_impl(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        with self._count:
            self.calls += 1
            self.images += feeds[Tensor.IMAGE].shape[0]
        time.sleep(self.delay)
        x = feeds[Tensor.IMAGE]
        b = x.shape[0]
        level = x.mean(axis=(2, 3))[:, :1, None, None]  # [B,1,1,1]
        return {
            Tensor.IMAGE_EMBED: np.broadcast_to(level, (b, 256, 64, 64)).astype(np.float32),
            Tensor.HIGH_RES_0: np.broadcast_to(level, (b, 32, 256, 256)).astype(np.float32),
            Tensor.HIGH_RES_1: np.broadcast_to(level, (b, 64, 128, 128)).astype(np.float32),
            Tensor.VISION_FEATURES: np.broadcast_to(level, (b, 256, 64, 64)).astype(np.float32),
        }


class FakeDecoder(Runner):
    backend = "fake"
    thread_safe = True

    def __init__(self) -> None:
        super().__init__(PROMPT_DECODER)

    def _infer_impl(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        k = feeds[Tensor.POINT_COORDS].shape[0]
        level = float(feeds[Tensor.IMAGE_EMBED].mean())
        yy, xx = np.mgrid[0:256, 0:256].astype(np.float32)
        masks = np.empty((k, 4, 256, 256), np.float32)
        for i in range(k):
            cx, cy = feeds[Tensor.POINT_COORDS][i, 0] / 4
            masks[i] = (40.0 - np.hypot(xx - cx, yy - cy))[None] + level
        iou = np.tile(np.array([[0.5, 0.6, 0.7, 0.8]], np.float32), (k, 1))
        return {Tensor.MASKS: masks, Tensor.IOU_PREDICTIONS: iou, Tensor.OBJECT_SCORE_LOGITS: np.ones((k, 1), np.float32),
                Tensor.MASK_TOKENS: np.zeros((k, 4, 256), np.float32), Tensor.OBJ_PTR: np.zeros((k, 4, 256), np.float32)}


def fake_model(model_id: str = "sam2.1_hiera_tiny:fake", delay: float = 0.0, **kwargs) -> SAM2:
    runners = {Artifact.IMAGE_ENCODER: FakeEncoder(delay), Artifact.PROMPT_DECODER: FakeDecoder()}
    kwargs.setdefault("preprocessing", "opencv")
    return SAM2(runners, get_config("sam2.1_hiera_tiny"), model_id=model_id, **kwargs)
