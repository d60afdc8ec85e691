"""Stand-ins for the two pieces the official ``SAM2AutomaticMaskGenerator`` needs beyond torch.

1. ``torchvision.ops.boxes.batched_nms`` / ``box_area``. torchvision has no CPU wheel on this
   project's package index. The stand-in follows torchvision's CPU kernel (``nms_kernel.cpp``)
   step by step, written in torch: scores sorted descending with a *stable* sort, IoU in the
   boxes' dtype as ``inter / (area_i + area_j - inter)`` without the +1 pixel convention, a box
   suppressed when its IoU with a kept box is strictly greater than the threshold (compared in
   double), kept indices in sorted order. ``batched_nms`` dispatches like torchvision: the
   coordinate-offset trick for up to 4000 box coordinates, else one NMS per category with the
   result re-sorted by score.
2. ``sam2._C.get_connected_componnets`` (the CUDA extension the image predictor uses for
   ``max_hole_area`` / ``max_sprinkle_area``, i.e. the generator's ``min_mask_region_area``):
   8-connected components of each [1, H, W] plane, returning per-pixel labels (0 = background)
   and per-pixel component areas, computed with ``scipy.ndimage.label`` (independent of the
   OpenCV code sam2edge uses). Without it the official predictor skips the step with a warning.

Each is installed only where the real one cannot be imported, and ``install`` says which.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import torch


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64)
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1) * (y2 - y1)
    order = scores.sort(stable=True, descending=True)[1]
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for pos in range(len(order)):
        i = int(order[pos])
        if suppressed[i]:
            continue
        keep.append(i)
        # The kernel visits the later boxes one by one; suppression only ever grows, so computing the
        # overlap with all of them at once (in the boxes' dtype) and OR-ing gives the same flags.
        rest = order[pos + 1 :]
        w = torch.clamp(torch.minimum(x2[i], x2[rest]) - torch.maximum(x1[i], x1[rest]), min=0)
        h = torch.clamp(torch.minimum(y2[i], y2[rest]) - torch.maximum(y1[i], y1[rest]), min=0)
        inter = w * h
        ovr = inter / (areas[i] + areas[rest] - inter)
        suppressed[rest] |= ovr.double() > iou_threshold
    return torch.tensor(keep, dtype=torch.int64)


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    if boxes.numel() > 4000:
        keep_mask = torch.zeros_like(scores, dtype=torch.bool)
        for class_id in torch.unique(idxs):
            curr = torch.where(idxs == class_id)[0]
            keep_mask[curr[nms(boxes[curr], scores[curr], iou_threshold)]] = True
        keep = torch.where(keep_mask)[0]
        return keep[scores[keep].sort(stable=True, descending=True)[1]]
    if boxes.numel() == 0:
        return torch.empty((0,), dtype=torch.int64)
    offsets = idxs.to(boxes) * (boxes.max() + torch.tensor(1).to(boxes))
    return nms(boxes + offsets[:, None], scores, iou_threshold)


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def get_connected_componnets(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """mask [N, 1, H, W] uint8 -> (labels, areas) [N, 1, H, W] int32, 8-connectivity."""
    from scipy import ndimage

    arr = mask.cpu().numpy().astype(bool)
    labels = np.zeros(arr.shape, dtype=np.int32)
    areas = np.zeros(arr.shape, dtype=np.int32)
    for n in range(arr.shape[0]):
        lab, count = ndimage.label(arr[n, 0], structure=np.ones((3, 3), dtype=int))
        sizes = np.bincount(lab.ravel(), minlength=count + 1)
        sizes[0] = 0
        labels[n, 0] = lab
        areas[n, 0] = sizes[lab]
    return torch.from_numpy(labels), torch.from_numpy(areas)


def install() -> list[str]:
    """Make the official generator importable and its hole filling run; returns what is used."""
    from tests.torchvision_shim import install as install_transforms

    used = [f"transforms: {install_transforms()}"]
    try:
        from torchvision.ops.boxes import batched_nms as _real  # noqa: F401

        used.append("batched_nms: torchvision")
    except Exception:
        tv = sys.modules["torchvision"]
        ops = types.ModuleType("torchvision.ops")
        boxes = types.ModuleType("torchvision.ops.boxes")
        boxes.batched_nms, boxes.box_area, boxes.nms = batched_nms, box_area, nms
        ops.boxes, tv.ops = boxes, ops
        sys.modules["torchvision.ops"], sys.modules["torchvision.ops.boxes"] = ops, boxes
        used.append("batched_nms: tests/amg_shims.py (torch port of torchvision's CPU NMS, stable sort)")
    try:
        from sam2 import _C  # noqa: F401

        used.append("connected components: sam2._C (CUDA extension)")
    except Exception:
        import sam2

        ext = types.ModuleType("sam2._C")
        ext.get_connected_componnets = get_connected_componnets
        sys.modules["sam2._C"], sam2._C = ext, ext
        used.append("connected components: tests/amg_shims.py (scipy.ndimage.label, 8-connectivity)")
    return used
