"""Checking and placing the prompts of the video API: the image API's rules, per object and frame.

``parse_clicks`` checks what can be checked without the frame (types, shapes, labels, box order);
``place`` then checks the positions against the frame's size and scales them to the model input.
Both run before the tracker reads, computes or records anything.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sam2edge.errors import InputError
from sam2edge.processing import validate
from sam2edge.runtime.video.state import PointPrompt

BOX_LABELS = (2, 3)  # the prompt encoder's labels of a box's top-left and bottom-right corners
POINT_LABELS = "1 (on the object) or 0 (background)"


def parse_clicks(points: Any, labels: Any, box: Any) -> tuple[np.ndarray, np.ndarray]:
    """-> coords [P,2] float64 (box corners first, in the caller's units) and labels [P] int32."""
    if (points is None) != (labels is None):
        given, missing = ("points", "labels") if labels is None else ("labels", "points")
        raise InputError(f"points and labels must be given together (points [P,2], labels [P]); got {given} without {missing}")
    if points is None and box is None:
        raise InputError("a prompt needs points with labels, a box, or both; got none")
    coords = np.zeros((0, 2), np.float64)
    labs = np.zeros((0,), np.int32)
    if points is not None:
        arr = validate.as_numbers(points, "points", "[P,2] numbers (x, y)")
        if arr.ndim == 1 and arr.shape == (2,):  # one point given as [x, y]
            arr = arr[None]
        if arr.ndim == 3 and arr.shape[0] == 1:  # [1,P,2], the official predictor's batch of one
            arr = arr[0]
        if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] == 0:
            raise InputError(f"points must be [P,2] numbers (x, y) with P >= 1; got shape {arr.shape}")
        labs = validate.as_labels(labels, "labels", (0, 1), POINT_LABELS).reshape(-1)
        if labs.shape[0] != arr.shape[0]:
            raise InputError(f"labels must have one label per point ({arr.shape[0]}); got {labs.shape[0]}")
        coords = arr.astype(np.float64)
    if box is not None:
        b = validate.as_numbers(box, "box", "(x0, y0, x1, y1) numbers")
        if b.size != 4 or b.ndim > 2:
            raise InputError(f"box must be (x0, y0, x1, y1): 4 numbers; got shape {b.shape}")
        b = b.reshape(4).astype(np.float64)
        validate.check_boxes(b, "box")
        coords = np.concatenate([b.reshape(2, 2), coords])
        labs = np.concatenate([np.array(BOX_LABELS, np.int32), labs])
    return coords, labs


def place(coords: np.ndarray, labels: np.ndarray, hw: tuple[int, int], size: int, normalized: bool) -> PointPrompt:
    """Check coords against the frame (pixels, or [0,1] when ``normalized``) and scale them to the model input."""
    h, w = hw
    for name, sel in (("box", labels >= BOX_LABELS[0]), ("points", labels < BOX_LABELS[0])):
        if normalized:
            validate.check_inside(coords[sel], 1.0, 1.0, name, "normalised to [0, 1] (normalize_coords=False)")
        else:
            validate.check_inside(coords[sel], w, h, name, f"pixels of the {w}x{h} video")
    c = coords.astype(np.float32)
    if not normalized:  # the official order of float32 operations: x / W * 1024
        c = c / np.array([w, h], np.float32)
    return PointPrompt((c * np.float32(size)).astype(np.float32), labels.astype(np.int32))


def merged(old: Any, new: PointPrompt) -> PointPrompt:
    """The clicks already on a frame followed by ``new`` (``clear_old_points=False``)."""
    if not isinstance(old, PointPrompt):
        return new
    return PointPrompt(np.concatenate([old.coords, new.coords]), np.concatenate([old.labels, new.labels]))
