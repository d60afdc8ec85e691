"""Argument checks shared by the image and video APIs: numbers, indices, labels, boxes, positions.

Each check raises :class:`~sam2edge.errors.InputError` naming the argument, what was expected and
what came, and returns the value converted (numpy, Python int). Everything is checked in the
argument's own type before any cast, so nothing wraps around (a label of ``2**32 + 1`` is not 1)
and nothing is silently truthy (``True`` is not frame 1).
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable
from typing import Any

import numpy as np

from sam2edge.errors import InputError


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def as_numbers(value: Any, name: str, expected: str, allow_bool: bool = False) -> np.ndarray:
    """Array-like (numpy, nested lists, torch tensor) -> a numeric numpy array with finite values.

    Ragged nesting, strings, objects, booleans (unless ``allow_bool``), NaN and inf are refused.
    """
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError, OverflowError) as exc:  # ragged nesting, huge integers
        raise InputError(f"{name} must be {expected}; got {_short(value)} ({exc.__class__.__name__}: ragged or mixed)") from None
    if arr.dtype == bool:
        if allow_bool:
            return arr
        raise InputError(f"{name} must be {expected}; got booleans {_short(value)}")
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InputError(f"{name} must be {expected}; got {_short(value)} (dtype {arr.dtype})")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise InputError(f"{name} must be {expected} with finite values; got NaN or inf in {_short(value)}")
    return arr


def as_index(value: Any, name: str, low: int | None = 0, high: int | None = None, where: str = "") -> int:
    """An integer (Python or numpy, never a bool) in ``[low, high)`` (either bound may be None);
    ``where`` names the range in the message (e.g. "outside the video (frames 0..9)")."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral):
        raise InputError(f"{name} must be an integer, got {_short(value)} ({type(value).__name__})")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value >= high):
        lo = "" if low is None else f"{low} <= "
        hi = "" if high is None else f" < {high}"
        context = f"{name} {value} is {where}: " if where else ""
        raise InputError(f"{context}{name} must be {lo}{name}{hi}, got {value}")
    return value


def as_labels(value: Any, name: str, allowed: Iterable[int], meaning: str) -> np.ndarray:
    """Integer labels (integral floats accepted) whose every value is in ``allowed`` -> int32."""
    allowed = tuple(allowed)
    arr = as_numbers(value, name, f"integers {meaning}")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(arr == np.round(arr)):
        raise InputError(f"{name} must be integers {meaning}; got {_short(value)}")
    bad = sorted({v for v in arr.reshape(-1).tolist() if v not in allowed})
    if bad:
        raise InputError(f"{name} must be {meaning}; got values {bad[:5]}")
    return arr.astype(np.int32)


def check_boxes(boxes: np.ndarray, name: str) -> None:
    """boxes [..., 4] as (x_min, y_min, x_max, y_max): refuse x_max < x_min or y_max < y_min."""
    flat = boxes.reshape(-1, 4)
    flipped = np.nonzero((flat[:, 2] < flat[:, 0]) | (flat[:, 3] < flat[:, 1]))[0]
    if flipped.size:
        raise InputError(f"{name} must be (x_min, y_min, x_max, y_max) with x_max >= x_min and y_max >= y_min; "
                         f"got {flat[flipped[0]].tolist()}")


def check_inside(xy: np.ndarray, width: float, height: float, name: str, unit: str = "pixels of the image") -> None:
    """xy [..., 2] as (x, y) within ``[0, width] x [0, height]`` (edges included)."""
    outside = (xy[..., 0] < 0) | (xy[..., 0] > width) | (xy[..., 1] < 0) | (xy[..., 1] > height)
    if np.any(outside):
        first = xy[outside][0].tolist()
        raise InputError(f"{name} must lie inside the frame (x in [0, {width:g}], y in [0, {height:g}], {unit}); "
                         f"got the point {first}")
