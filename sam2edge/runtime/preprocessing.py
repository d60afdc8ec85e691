"""One pre-processing choice for still images and video frames (see :mod:`sam2edge.processing.preprocess`).

``make_preprocess(mode, kind)`` returns RGB uint8 [H,W,3] -> [1,3,size,size] float32 for
``kind="image"`` (the official image predictor's pipeline) or ``kind="video"`` (the official
video loader's), with the same mode names for both: ``"auto" | "exact" | "opencv"``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Literal

import numpy as np

from sam2edge.backends import lazy
from sam2edge.errors import InputError
from sam2edge.processing.preprocess import INPUT_SIZE, parse_mode, preprocess_opencv, preprocess_pil

Kind = Literal["image", "video"]
Preprocess = Callable[[np.ndarray], np.ndarray]
# The library "exact" needs for each kind.
EXACT_NEEDS = {"image": "torch", "video": "PIL"}


def resolve_mode(mode: str, kind: Kind) -> str:
    """The concrete mode, ``"exact"`` or ``"opencv"``; ``"auto"`` is exact where its library is installed."""
    if kind not in EXACT_NEEDS:
        raise InputError(f"kind must be 'image' or 'video', got {kind!r}")
    mode = parse_mode(mode)
    if mode == "auto":
        return "exact" if lazy.available(EXACT_NEEDS[kind]) else "opencv"
    return mode


def make_preprocess(mode: str, kind: Kind, size: int = INPUT_SIZE) -> Preprocess:
    """RGB uint8 [H,W,3] -> [1,3,size,size] float32 for ``kind``, per ``mode`` (see module docstring)."""
    concrete = resolve_mode(mode, kind)
    if concrete == "opencv":
        return partial(preprocess_opencv, size=size)
    if kind == "video":
        return partial(preprocess_pil, size=size)
    lazy.import_torch("preprocessing='exact' for images")
    from sam2edge.model.preprocess import preprocess_torch_numpy  # torch: imported only on this path

    return partial(preprocess_torch_numpy, size=size)
