"""The official image pre-processing in torch (bit-exact with ``SAM2ImagePredictor`` on CPU).

The numpy/OpenCV reproduction and the mode names live in :mod:`sam2edge.processing.preprocess`;
this is ``preprocessing="exact"`` for still images.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from sam2edge.errors import InputError
from sam2edge.processing.preprocess import IMAGENET_MEAN, IMAGENET_STD, INPUT_SIZE, check_hwc_uint8


def preprocess_torch(rgb: Any, device: Any = "cpu", size: int = INPUT_SIZE) -> torch.Tensor:
    """HWC RGB uint8 (numpy or torch) -> [1,3,size,size] float32 torch tensor on ``device``.

    The official operations, in order: /255, ``F.interpolate(bilinear, antialias=True)``,
    (x - mean) / std. The uint8 image is moved to ``device`` first, so a GPU does the
    arithmetic (rounding may differ there).
    """
    t = rgb if isinstance(rgb, torch.Tensor) else torch.from_numpy(check_hwc_uint8(np.asarray(rgb), "rgb"))
    if t.ndim != 3 or t.shape[2] != 3 or t.dtype != torch.uint8:
        raise InputError(f"rgb must be an HxWx3 uint8 tensor, got shape {tuple(t.shape)} dtype {t.dtype}")
    x = t.to(device).permute(2, 0, 1).float().div(255.0)[None]
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


def preprocess_torch_numpy(rgb: np.ndarray, size: int = INPUT_SIZE) -> np.ndarray:
    """:func:`preprocess_torch` on the CPU, as a numpy array (what the runners take)."""
    return preprocess_torch(rgb, "cpu", size).numpy()
