"""One pre-processing choice for still images and video frames (see :mod:`sam2edge.processing.preprocess`).

``make_preprocess(mode, video)`` returns RGB uint8 [H,W,3] -> [1,3,size,size] float32: the
official image predictor's pipeline (``video=False``) or the official video loader's
(``video=True``), with the same mode names for both: ``"auto" | "exact" | "opencv"``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

from sam2edge.backends import lazy
from sam2edge.processing.preprocess import INPUT_SIZE, parse_mode, preprocess_opencv, preprocess_pil

Preprocess = Callable[[np.ndarray], np.ndarray]


def exact_needs(video: bool) -> str:
    """The library that ``"exact"`` pre-processing needs: Pillow for video frames, torch for images."""
    return "PIL" if video else "torch"


def resolve_mode(mode: str, video: bool) -> str:
    """The concrete mode, ``"exact"`` or ``"opencv"``; ``"auto"`` is exact where its library is installed."""
    mode = parse_mode(mode)
    if mode == "auto":
        return "exact" if lazy.available(exact_needs(video)) else "opencv"
    return mode


def make_preprocess(mode: str, video: bool, size: int = INPUT_SIZE) -> Preprocess:
    """RGB uint8 [H,W,3] -> [1,3,size,size] float32, per ``mode`` (see the module docstring)."""
    concrete = resolve_mode(mode, video)
    if concrete == "opencv":
        return partial(preprocess_opencv, size=size)
    if video:
        return partial(preprocess_pil, size=size)
    lazy.import_torch("preprocessing='exact' for images")
    from sam2edge.model.preprocess import preprocess_torch_numpy  # torch: imported only on this path

    return partial(preprocess_torch_numpy, size=size)
