"""Validation and normalisation of image prompts (points, labels, boxes, mask inputs).

Accepts the seed API's shapes — one prompt ``(P,2)`` points / ``(4,)`` box, or a batch of
K prompts ``(K,P,2)`` / ``(K,4)`` — as numpy arrays, lists or torch tensors, per image or
as a list per image. Everything is checked before any model or cache is touched, and each
failure raises :class:`~sam2edge.errors.InputError` naming the argument, what was expected
and what came.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sam2edge.errors import InputError

MASK_SIZE = 256
BOX_TOP_LEFT, BOX_BOTTOM_RIGHT = 2, 3


@dataclass(frozen=True)
class ImagePrompts:
    """The prompts of one image, ready for the prompt decoder.

    coords [K,P,2] float32 in model-input pixels (x*S/W, y*S/H), box corners first;
    labels [K,P] int32 (0 neg, 1 pos, 2/3 box corners); mask_input [K,1,256,256] or None;
    ``serialized`` is the JSON-able prompt used by the low-resolution mask cache.
    """

    coords: np.ndarray
    labels: np.ndarray
    mask_input: np.ndarray | None
    serialized: tuple
    single: bool  # True when there is one prompt (results are squeezed, as in the seed)

    @property
    def num_prompts(self) -> int:
        return int(self.coords.shape[0])


def to_numpy(value: Any, name: str) -> np.ndarray:
    """Array-like (numpy, list, torch tensor) -> numeric numpy array, or InputError."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value)
    except Exception as exc:  # ragged lists and friends
        raise InputError(f"{name} must be an array of numbers, got {type(value).__name__} ({exc})") from exc
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InputError(f"{name} must hold integers or floats, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise InputError(f"{name} contains NaN or inf values")
    return arr


def per_image(value: Any, num_images: int, name: str) -> list[Any] | None:
    """The seed's batching rule: a list is one entry per image (length 1 broadcasts)."""
    if value is None:
        return None
    items = list(value) if isinstance(value, list | tuple) and not _is_flat_numbers(value) else [value]
    if len(items) == num_images:
        return items
    if len(items) == 1:
        return items * num_images
    raise InputError(f"{name} has {len(items)} entries for {num_images} images; expected 1 (broadcast) or {num_images}")


def _is_flat_numbers(value: Any) -> bool:
    """[x, y] or [x0, y0, x1, y1] given as a plain list means one prompt, not one per image."""
    return all(isinstance(v, int | float | np.number) for v in value)


def _points(coords: Any, labels: Any, idx: int) -> tuple[np.ndarray, np.ndarray, bool]:
    c = to_numpy(coords, f"point_coordinates[{idx}]").astype(np.float32)
    lab = to_numpy(labels, f"point_labels[{idx}]")
    single = c.ndim == 2
    if c.ndim == 2:
        c, lab = c[None], lab[None] if lab.ndim == 1 else lab
    if c.ndim != 3 or c.shape[-1] != 2 or c.shape[1] == 0:
        raise InputError(f"point_coordinates[{idx}] must have shape (P, 2) or (K, P, 2) with P >= 1, got {tuple(np.shape(coords))}")
    if lab.shape != c.shape[:2]:
        raise InputError(
            f"point_labels[{idx}] must have shape {c.shape[:2] if not single else c.shape[1:2]} to match "
            f"point_coordinates[{idx}] {tuple(np.shape(coords))}, got {tuple(np.shape(labels))}"
        )
    if np.issubdtype(lab.dtype, np.floating) and not np.all(lab == np.round(lab)):
        raise InputError(f"point_labels[{idx}] must be integers 0 (background) or 1 (foreground)")
    bad = sorted(set(np.unique(lab).tolist()) - {0, 1})  # before any cast: 2**32 + 1 must not wrap to 1
    if bad:
        raise InputError(f"point_labels[{idx}] must be 0 (background) or 1 (foreground), got values {bad[:5]}")
    return c, lab.astype(np.int32), single


def _boxes(box: Any, idx: int) -> tuple[np.ndarray, bool]:
    b = to_numpy(box, f"boxes[{idx}]").astype(np.float32)
    single = b.ndim == 1
    if single:
        b = b[None]
    if b.ndim != 2 or b.shape[1] != 4 or b.shape[0] == 0:
        raise InputError(f"boxes[{idx}] must have shape (4,) or (K, 4) as [x_min, y_min, x_max, y_max], got {tuple(np.shape(box))}")
    flipped = np.nonzero((b[:, 2] < b[:, 0]) | (b[:, 3] < b[:, 1]))[0]
    if flipped.size:
        raise InputError(f"boxes[{idx}][{int(flipped[0])}] = {b[flipped[0]].tolist()} has x_max < x_min or y_max < y_min")
    return b, single


def _check_inside(xy: np.ndarray, hw: tuple[int, int], name: str) -> None:
    h, w = hw
    outside = (xy[..., 0] < 0) | (xy[..., 0] > w) | (xy[..., 1] < 0) | (xy[..., 1] > h)
    if np.any(outside):
        first = xy[outside][0].tolist()
        raise InputError(f"{name} has a point {first} outside the image (x in [0, {w}], y in [0, {h}])")


def _mask(mask: Any, num_prompts: int, idx: int) -> np.ndarray:
    m = to_numpy(mask, f"mask_input[{idx}]").astype(np.float32)
    if m.ndim == 2:
        m = m[None, None]
    elif m.ndim == 3:
        m = m[:, None]
    if m.ndim != 4 or m.shape[1:] != (1, MASK_SIZE, MASK_SIZE):
        raise InputError(
            f"mask_input[{idx}] must be low-resolution logits of shape (256, 256), (K, 256, 256) or (K, 1, 256, 256), "
            f"got {tuple(np.shape(mask))}"
        )
    if m.shape[0] not in (1, num_prompts):
        raise InputError(f"mask_input[{idx}] has {m.shape[0]} masks for {num_prompts} prompts; expected 1 or {num_prompts}")
    return np.ascontiguousarray(np.broadcast_to(m, (num_prompts, 1, MASK_SIZE, MASK_SIZE)))


def _broadcast(a: np.ndarray, k: int) -> np.ndarray:
    return a if a.shape[0] == k else np.repeat(a, k, axis=0)


def build_image_prompts(
    coords: Any, labels: Any, box: Any, mask: Any, image_hw: tuple[int, int], input_size: int, idx: int = 0
) -> ImagePrompts:
    """Check and normalise one image's prompts (see module docstring)."""
    if (coords is None) != (labels is None):
        given, missing = ("point_coordinates", "point_labels") if labels is None else ("point_labels", "point_coordinates")
        raise InputError(f"{given} given for image {idx} without {missing}; pass both or neither")
    if coords is None and box is None:
        raise InputError(f"image {idx} has no prompt: give point_coordinates + point_labels and/or boxes")
    parts_c, parts_l, counts, singles = [], [], [], []
    box_arr = None
    if box is not None:
        box_arr, single = _boxes(box, idx)
        _check_inside(box_arr.reshape(-1, 2, 2), image_hw, f"boxes[{idx}]")
        counts.append(box_arr.shape[0])
        singles.append(single)
    pts = None
    if coords is not None:
        c, lab, single = _points(coords, labels, idx)
        _check_inside(c, image_hw, f"point_coordinates[{idx}]")
        pts = (c, lab)
        counts.append(c.shape[0])
        singles.append(single)
    k = max(counts)
    if any(n not in (1, k) for n in counts):
        raise InputError(f"image {idx}: {counts[0]} boxes and {counts[1]} point sets; expected equal counts or one of them 1")
    h, w = image_hw
    scale = np.array([input_size / w, input_size / h], dtype=np.float32)
    if box_arr is not None:
        parts_c.append(_broadcast(box_arr.reshape(-1, 2, 2), k))
        parts_l.append(np.tile(np.array([[BOX_TOP_LEFT, BOX_BOTTOM_RIGHT]], np.int32), (k, 1)))
    if pts is not None:
        parts_c.append(_broadcast(pts[0], k))
        parts_l.append(_broadcast(pts[1], k))
    all_c = np.concatenate(parts_c, axis=1) * scale
    all_l = np.concatenate(parts_l, axis=1)
    mask_arr = None if mask is None else _mask(mask, k, idx)
    serialized = serialize_prompts(
        None if pts is None else _broadcast(pts[0], k),
        None if pts is None else _broadcast(pts[1], k),
        None if box_arr is None else _broadcast(box_arr, k),
    )
    # Like the seed: one prompt (also given as (1, 4) / (1, P, 2)) gives unbatched results.
    return ImagePrompts(all_c.astype(np.float32), all_l, mask_arr, serialized, single=k == 1)


def serialize_prompts(coords: np.ndarray | None, labels: np.ndarray | None, boxes: np.ndarray | None) -> tuple:
    """Hashable description of K prompts in original pixels: ((points, box), ...)."""
    k = next(a.shape[0] for a in (coords, boxes) if a is not None)
    out = []
    for i in range(k):
        points = () if coords is None else tuple(
            (round(float(x), 3), round(float(y), 3), int(lab)) for (x, y), lab in zip(coords[i], labels[i])
        )
        box = None if boxes is None else tuple(round(float(v), 3) for v in boxes[i])
        out.append((points, box))
    return tuple(out)
