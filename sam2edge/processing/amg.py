"""Host operations of automatic mask generation ("segment everything"), numpy + OpenCV only.

Each function reproduces one step of the official generator (sam2 1.1.0) on the CPU,
including its float32 rounding where a threshold could flip on it:

* point grids: cell centres of an ``n x n`` grid in [0, 1]^2, x varying fastest; crop layer
  ``i`` uses ``int(n / downscale**i)`` points per side.
* crop boxes: the whole image, then ``(2**i)**2`` overlapping crops in layer ``i``.
* stability score: ``|logits > t + offset| / |logits > t - offset|`` in float32 (the two
  thresholds rounded to float32, as torch compares a float32 tensor with a Python float).
* box NMS: greedy, scores in descending order with ties kept in input order (torchvision's
  CPU kernel sorts stably), IoU in float32 without the +1 pixel convention, a box suppressed
  when its IoU with a kept one is strictly above the threshold.
* boxes are inclusive pixel bounds ``[x0, y0, x1, y1]`` of the True pixels, all zero for an
  empty mask; a box is dropped when it lies within 20 px of a crop edge that is not an
  image edge.
* RLE: column-major (Fortran order) run lengths starting with a run of False pixels, the
  uncompressed form pycocotools reads; ``rle_to_coco`` writes pycocotools' compressed
  string byte for byte (LEB128-like 5-bit groups, counts after the second stored as the
  difference to the count two places before).
"""

from __future__ import annotations

import math
from itertools import product
from typing import Any

import cv2
import numpy as np

from sam2edge.errors import InputError
from sam2edge.processing.resize import resize_linear

EDGE_TOLERANCE = 20.0  # px: a box this close to an inner crop edge is cut off by the crop


# -- prompts and crops ------------------------------------------------------------------
def build_point_grid(n_per_side: int) -> np.ndarray:
    """Centres of an n x n grid over [0, 1]^2 -> [n*n, 2] float64 (x, y), x varying fastest."""
    if n_per_side < 1:
        raise InputError(f"n_per_side must be >= 1, got {n_per_side}")
    half = 1.0 / (2 * n_per_side)
    side = np.linspace(half, 1.0 - half, n_per_side)
    xs, ys = np.meshgrid(side, side)
    return np.stack([xs.ravel(), ys.ravel()], axis=-1)


def build_layer_point_grids(n_per_side: int, n_layers: int, downscale: int) -> list[np.ndarray]:
    """One grid per crop layer 0..n_layers; layer i has int(n_per_side / downscale**i) points per side."""
    return [build_point_grid(int(n_per_side / downscale**i)) for i in range(n_layers + 1)]


def generate_crop_boxes(image_hw: tuple[int, int], n_layers: int, overlap_ratio: float) -> tuple[list[list[int]], list[int]]:
    """Crop boxes [x0, y0, x1, y1] (x1/y1 exclusive) and their layer index.

    Layer 0 is the whole image; layer i >= 1 tiles it with 2**i x 2**i crops that overlap by
    ``int(overlap_ratio * short_side * 2 / 2**i)`` pixels, listed column by column.
    """
    height, width = (int(v) for v in image_hw)
    boxes, layers = [[0, 0, width, height]], [0]
    short = min(height, width)
    for layer in range(1, n_layers + 1):
        per_side = 2**layer
        overlap = int(overlap_ratio * short * (2 / per_side))
        crop_w = int(math.ceil((overlap * (per_side - 1) + width) / per_side))
        crop_h = int(math.ceil((overlap * (per_side - 1) + height) / per_side))
        x0s = [int((crop_w - overlap) * i) for i in range(per_side)]
        y0s = [int((crop_h - overlap) * i) for i in range(per_side)]
        for x0, y0 in product(x0s, y0s):
            boxes.append([x0, y0, min(x0 + crop_w, width), min(y0 + crop_h, height)])
            layers.append(layer)
    return boxes, layers


def points_to_model(points: np.ndarray, crop_hw: tuple[int, int], image_size: int = 1024) -> np.ndarray:
    """Crop-pixel points [K, 2] -> decoder coordinates [K, 1, 2] float32: (x/w, y/h) * image_size,
    each step in float32 like the official transform."""
    pts = np.asarray(points, dtype=np.float32)
    scale = np.array([crop_hw[1], crop_hw[0]], dtype=np.float32)
    return ((pts / scale) * np.float32(image_size))[:, None, :]


# -- scores -----------------------------------------------------------------------------
def stability_thresholds(mask_threshold: float, offset: float) -> tuple[np.float32, np.float32]:
    """The (high, low) cut-offs of the stability score, rounded to float32."""
    return np.float32(mask_threshold + offset), np.float32(mask_threshold - offset)


def stability_score(logits: np.ndarray, mask_threshold: float, offset: float) -> np.ndarray:
    """logits [..., H, W] -> [...] float32: |logits > t+offset| / |logits > t-offset| (NaN if empty)."""
    high, low = stability_thresholds(mask_threshold, offset)
    flat = np.asarray(logits).reshape(*np.shape(logits)[:-2], -1)
    inter = np.count_nonzero(flat > high, axis=-1).astype(np.float32)
    union = np.count_nonzero(flat > low, axis=-1).astype(np.float32)
    with np.errstate(invalid="ignore", divide="ignore"):
        return inter / union


class FullResolutionPlane:
    """One mask at a time at full (crop) resolution, in buffers reused from mask to mask.

    ``load`` upsamples [256, 256] logits (bilinear, align_corners=False, like torch) into a
    float32 [H, W] buffer; stability and the binary mask are then read from that buffer
    while it is still in cache, so no stack of full-size masks is ever held.
    """

    def __init__(self, height: int, width: int) -> None:
        self.logits = np.empty((height, width), dtype=np.float32)
        self.binary = np.empty((height, width), dtype=bool)

    def load(self, low_res: np.ndarray) -> FullResolutionPlane:
        resize_linear(np.ascontiguousarray(low_res, dtype=np.float32), *self.logits.shape, out=self.logits)
        return self

    def count_above(self, threshold: np.float32) -> int:
        return int(np.count_nonzero(np.greater(self.logits, threshold, out=self.binary)))

    def stability(self, high: np.float32, low: np.float32) -> np.float32:
        inter, union = np.float32(self.count_above(high)), np.float32(self.count_above(low))
        with np.errstate(invalid="ignore", divide="ignore"):
            return inter / union

    def mask(self, mask_threshold: float) -> np.ndarray:
        """The binary mask (the reused buffer: copy it to keep it)."""
        return np.greater(self.logits, np.float32(mask_threshold), out=self.binary)


# -- boxes ------------------------------------------------------------------------------
def mask_to_box(mask: np.ndarray) -> np.ndarray:
    """[H, W] bool -> [x0, y0, x1, y1] int64, inclusive bounds of the True pixels; zeros if none."""
    x, y, w, h = cv2.boundingRect(np.ascontiguousarray(mask).view(np.uint8))
    if w == 0 or h == 0:
        return np.zeros(4, dtype=np.int64)
    return np.array([x, y, x + w - 1, y + h - 1], dtype=np.int64)


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """[N, H, W] bool -> [N, 4] int64 boxes (see ``mask_to_box``)."""
    return np.stack([mask_to_box(m) for m in masks]) if len(masks) else np.zeros((0, 4), dtype=np.int64)


def box_near_crop_edge(boxes: np.ndarray, crop_box: list[int], orig_box: list[int], atol: float = EDGE_TOLERANCE) -> np.ndarray:
    """Boxes [N, 4] in crop coordinates -> [N] bool: within ``atol`` of a crop edge that is not an image edge."""
    shifted = np.asarray(boxes, dtype=np.float32) + np.array(crop_box[:2] * 2, dtype=np.float32)
    near_crop = np.abs(shifted - np.asarray(crop_box, dtype=np.float32)) <= atol
    near_image = np.abs(shifted - np.asarray(orig_box, dtype=np.float32)) <= atol
    return np.any(near_crop & ~near_image, axis=1)


def box_area(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes)
    return (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression -> kept indices int64, highest score first.

    boxes [N, 4] xyxy, scores [N]; both are taken as float32. Equal scores keep input order.
    """
    b = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    s = np.asarray(scores, dtype=np.float32).reshape(-1)
    if len(b) != len(s):
        raise InputError(f"boxes and scores must have the same length, got {len(b)} and {len(s)}")
    order = np.argsort(-s, kind="stable")
    x0, y0, x1, y1 = (np.ascontiguousarray(b[order, i]) for i in range(4))
    areas = (x1 - x0) * (y1 - y0)
    suppressed = np.zeros(len(order), dtype=bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(order[i])
        rest = slice(i + 1, None)
        w = np.maximum(np.float32(0), np.minimum(x1[i], x1[rest]) - np.maximum(x0[i], x0[rest]))
        h = np.maximum(np.float32(0), np.minimum(y1[i], y1[rest]) - np.maximum(y0[i], y0[rest]))
        inter = w * h
        with np.errstate(invalid="ignore", divide="ignore"):
            iou = inter / (areas[i] + areas[rest] - inter)
        suppressed[rest] |= iou.astype(np.float64) > iou_threshold  # NaN (two empty boxes) never suppresses
    return np.asarray(keep, dtype=np.int64)


def xyxy_to_xywh(box: np.ndarray) -> list[float]:
    x0, y0, x1, y1 = (float(v) for v in np.asarray(box, dtype=np.float32))
    return [x0, y0, x1 - x0, y1 - y0]


# -- run-length encoding ------------------------------------------------------------------
def column_runs(mask: np.ndarray) -> np.ndarray:
    """[H, W] bool -> COCO run lengths (uint32) down the columns, the first one a background run
    (0 when the first pixel is set).

    The column-major pixels come from OpenCV's blocked transpose: ``ravel(order="F")`` is a strided
    copy, 2-3x slower on a 1280x720 mask.
    """
    m = np.ascontiguousarray(mask, dtype=bool)
    if m.ndim == 2 and m.shape[0] > 1 and m.shape[1] > 1:
        flat = cv2.transpose(m.view(np.uint8)).ravel()
    else:  # one row or one column (or empty) is already in column order
        flat = m.ravel(order="F")
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    counts = np.diff(np.concatenate(([0], changes, [flat.size]))).astype(np.uint32)
    if flat.size and flat[0]:
        counts = np.concatenate((np.zeros(1, np.uint32), counts))
    return counts


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """[H, W] bool -> uncompressed RLE {"size": [H, W], "counts": [int, ...]} in column-major order."""
    m = np.asarray(mask, dtype=bool)
    return {"size": [int(m.shape[0]), int(m.shape[1])], "counts": column_runs(m).tolist()}


def crop_mask_to_rle(mask: np.ndarray, crop_box: list[int], image_hw: tuple[int, int]) -> dict[str, Any]:
    """RLE of a crop's [h, w] mask placed at ``crop_box`` in an all-False image of ``image_hw``."""
    height, width = image_hw
    x0, y0, x1, y1 = crop_box
    if (x0, y0, x1, y1) == (0, 0, width, height):
        return mask_to_rle(mask)
    full = np.zeros((height, width), dtype=bool)
    full[y0:y1, x0:x1] = mask
    return mask_to_rle(full)


def rle_to_mask(rle: dict[str, Any]) -> np.ndarray:
    """Uncompressed RLE -> [H, W] bool (C order)."""
    height, width = (int(v) for v in rle["size"])
    counts = np.asarray(rle["counts"], dtype=np.int64)
    if counts.sum() != height * width:
        raise InputError(f"rle counts must sum to H*W={height * width}, got {int(counts.sum())}")
    values = np.arange(len(counts)) % 2 == 1
    flat = np.repeat(values, counts)
    return np.ascontiguousarray(flat.reshape(width, height).T)


def rle_area(rle: dict[str, Any]) -> int:
    return int(sum(rle["counts"][1::2]))


def rle_to_coco(rle: dict[str, Any]) -> dict[str, Any]:
    """Uncompressed RLE -> COCO's compressed RLE {"size": [H, W], "counts": str}, as pycocotools writes it."""
    counts = [int(c) for c in rle["counts"]]
    out = bytearray()
    for i, count in enumerate(counts):
        x = count - counts[i - 2] if i > 2 else count
        while True:
            group = x & 0x1F
            x >>= 5
            more = x != -1 if group & 0x10 else x != 0
            out.append(group + 48 + (0x20 if more else 0))
            if not more:
                break
    return {"size": [int(v) for v in rle["size"]], "counts": out.decode("ascii")}


def coco_to_rle(coco: dict[str, Any]) -> dict[str, Any]:
    """COCO compressed RLE (str or bytes counts) -> uncompressed RLE."""
    data = coco["counts"].encode("ascii") if isinstance(coco["counts"], str) else bytes(coco["counts"])
    counts: list[int] = []
    pos = 0
    while pos < len(data):
        x, shift = 0, 0
        while True:
            group = data[pos] - 48
            pos += 1
            x |= (group & 0x1F) << shift
            shift += 5
            if not group & 0x20:
                if group & 0x10:
                    x -= 1 << shift  # sign-extend
                break
        if len(counts) > 2:
            x += counts[-2]
        counts.append(x)
    return {"size": [int(v) for v in coco["size"]], "counts": counts}


def segmentation_to_mask(segmentation: Any) -> np.ndarray:
    """A record's ``segmentation`` in any output mode (H x W array, uncompressed or COCO RLE) -> [H, W] bool."""
    if isinstance(segmentation, dict):
        if "counts" not in segmentation or "size" not in segmentation:
            raise InputError(f"an RLE segmentation needs 'size' and 'counts', got keys {sorted(segmentation)}")
        rle = coco_to_rle(segmentation) if isinstance(segmentation["counts"], str | bytes) else segmentation
        return rle_to_mask(rle)
    mask = np.asarray(segmentation)
    if mask.ndim != 2 or mask.size == 0:
        raise InputError(f"a segmentation mask must be a non-empty [H, W] array, got shape {mask.shape}")
    return mask.astype(bool, copy=False)
