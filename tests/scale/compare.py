"""Labelling results (COCO RLE records) compared with the single-process reference, mask by mask."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sam2edge.scale.labels import decode_rle


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def rle_iou(a: Mapping[str, Any] | None, b: Mapping[str, Any] | None) -> float:
    if a is None or b is None:
        assert a is b, "one side has a mask where the other has none"
        return 1.0
    assert list(a["size"]) == list(b["size"])
    return 1.0 if a["counts"] == b["counts"] else iou(decode_rle(a), decode_rle(b))


def compare_images(got: Sequence[Mapping[str, Any]], want: Sequence[Mapping[str, Any]]) -> tuple[float, float]:
    """Same jobs, same failures, same annotations (prompt, category, box); returns (worst mask IoU, worst score diff)."""
    assert [r["id"] for r in got] == [r["id"] for r in want]
    worst_iou, worst_score = 1.0, 0.0
    for a, b in zip(got, want):
        assert ("error" in a) == ("error" in b), (a.get("error"), b.get("error"))
        if "error" in b:
            continue
        assert (a["height"], a["width"]) == (b["height"], b["width"])
        assert [(x["prompt"], x["category"]) for x in a["annotations"]] == [(x["prompt"], x["category"]) for x in b["annotations"]]
        for x, y in zip(a["annotations"], b["annotations"]):
            worst_iou = min(worst_iou, rle_iou(x["segmentation"], y["segmentation"]))
            worst_score = max(worst_score, abs(x["score"] - y["score"]))
    return worst_iou, worst_score


def compare_videos(got: Sequence[Mapping[str, Any]], want: Sequence[Mapping[str, Any]]) -> float:
    """Same videos, objects and tracked frames; returns the worst per-frame mask IoU."""
    worst = 1.0
    assert [(v["id"], v["length"], [o["id"] for o in v["objects"]]) for v in got] == \
        [(v["id"], v["length"], [o["id"] for o in v["objects"]]) for v in want]
    for a, b in zip(got, want):
        for x, y in zip(a["objects"], b["objects"]):
            worst = min([worst] + [rle_iou(s, t) for s, t in zip(x["segmentations"], y["segmentations"])])
    return worst
