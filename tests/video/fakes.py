"""Cheap runners on the real artifact specs, for tests of the tracker's host logic.

They honour the Runner contract (numpy in/out, spec names and shapes, input checks) but
compute almost nothing, so thousands of frames run in seconds. Outputs depend on the inputs
just enough for the tests: the decoder draws a square whose position follows the object's
pointer row, with a one-pixel hole in it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping

import numpy as np

from sam2edge.backends.base import Runner
from sam2edge.config import get_config
from sam2edge.contract.artifacts import ARTIFACTS


class FakeRunner(Runner):
    backend = "fake"

    def __init__(self, name: str) -> None:
        super().__init__(ARTIFACTS[name])
        self.count = 0
        self.calls: deque[dict[str, tuple[int, ...]]] = deque(maxlen=32)  # the last calls' input shapes

    def _infer_impl(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.count += 1
        self.calls.append({k: tuple(v.shape) for k, v in feeds.items()})
        return getattr(self, "_" + self.spec.name)(feeds)

    def _image_encoder(self, feeds):
        b = feeds["image"].shape[0]
        mean = np.float32(feeds["image"][:, :, ::64, ::64].mean())
        return {"image_embed": np.full((b, 256, 64, 64), mean, np.float32),
                "high_res_feats_0": np.zeros((b, 32, 256, 256), np.float32),
                "high_res_feats_1": np.zeros((b, 64, 128, 128), np.float32),
                "vision_features": np.full((b, 256, 64, 64), mean, np.float32)}

    def _prompt_decoder(self, feeds):
        n = feeds["point_coords"].shape[0]
        masks = np.full((n, 4, 256, 256), -8.0, np.float32)
        for i in range(n):
            x, y = np.clip(feeds["point_coords"][i, 0] / 4, 20, 200).astype(int)
            masks[i, :, y - 16 : y + 16, x - 16 : x + 16] = 8.0
            masks[i, :, y, x] = -1.0  # a one-pixel hole
        iou = np.tile(np.array([[0.5, 0.6, 0.9, 0.7]], np.float32), (n, 1))
        tokens = np.ones((n, 4, 256), np.float32)
        return {"masks": masks, "iou_predictions": iou, "object_score_logits": np.ones((n, 1), np.float32),
                "mask_tokens": tokens, "obj_ptr": tokens * 0.5}

    def _memory_attention(self, feeds):
        b = feeds["memory"].shape[0]
        return {"image_embed": np.repeat(feeds["vision_features"], b, axis=0)}

    def _memory_encoder(self, feeds):
        b = feeds["mask_logits"].shape[0]
        return {"maskmem_features": np.full((b, 64, 64, 64), 0.25, np.float32)}


class FakeModel:
    """Stands in for the SAM2 predictor: ``.runners`` and ``.config``."""

    def __init__(self, name: str = "sam2.1_hiera_tiny") -> None:
        self.config = get_config(name)
        self.runners = {n: FakeRunner(n) for n in ARTIFACTS}
        self.host_constants = {"mask_downsample.weight": np.full((1, 1, 4, 4), 1 / 16, np.float32),
                               "mask_downsample.bias": np.zeros((1,), np.float32),
                               "no_obj_ptr": np.zeros((1, 256), np.float32)}
