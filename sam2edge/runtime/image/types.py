"""Result and embedding types of the image API (names follow Roboflow inference_models SAM2)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np


@dataclass
class SAM2ImageEmbeddings:
    """Everything the prompt decoder needs from one encoded image.

    ``embeddings`` [1,256,64,64] (64² features + no_mem_embed), ``high_resolution_features``
    [[1,32,256,256], [1,64,128,128]]; arrays are numpy (float32, or float16 when a cache
    stores them compactly; read-only when they come from a cache). ``image_size_hw`` is the
    original image size; ``model_id`` names the model that made them (variant and checkpoint),
    so a predictor refuses embeddings of another model.
    """

    image_hash: str
    image_size_hw: tuple[int, int]
    embeddings: Any
    high_resolution_features: list[Any] = field(default_factory=list)
    model_id: str | None = None

    @property
    def nbytes(self) -> int:
        return int(sum(getattr(a, "nbytes", 0) for a in (self.embeddings, *self.high_resolution_features)))

    def to(self, device: Any = None, dtype: Any = None) -> SAM2ImageEmbeddings:
        """A copy with arrays cast to ``dtype`` (numpy arrays have no device; kept for API parity)."""
        if dtype is None:
            return self
        cast = lambda a: np.asarray(a).astype(dtype, copy=False)  # noqa: E731
        return replace(self, embeddings=cast(self.embeddings), high_resolution_features=[cast(a) for a in self.high_resolution_features])


@dataclass
class SAM2Prediction:
    """One image's result.

    masks: (num_masks, H, W) bool at the original size (float logits if return_logits),
    or (num_prompts, num_masks, H, W) when the image had several prompts (boxes / point sets).
    scores: (num_masks,) or (num_prompts, num_masks) predicted IoU.
    logits: (num_masks, 256, 256) or (num_prompts, num_masks, 256, 256), clamped to [-32, 32].
    """

    masks: Any
    scores: Any
    logits: Any
