"""Host operations of automatic mask generation against the official sam2.utils.amg and pycocotools."""

from __future__ import annotations

import numpy as np
import pytest

from sam2edge.errors import InputError
from sam2edge.processing import amg

RNG = np.random.default_rng(0)


def _official_amg():
    pytest.importorskip("torch")
    try:
        from sam2.utils import amg as official
    except Exception:  # pragma: no cover - depends on the environment
        pytest.skip("official sam2==1.1.0 not installed (the oracle for these host operations)")
    return official


def blob_masks(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    """Random blobby boolean masks, some empty, some touching the borders."""
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((n, 6, 6)).astype(np.float32)
    import cv2

    out = np.stack([cv2.resize(c, (w, h), interpolation=cv2.INTER_CUBIC) > 0.8 for c in coarse])
    out[0] = False
    out[1] = True
    return out


@pytest.mark.parametrize("n", [1, 2, 7, 32])
def test_point_grids_equal_official(n):
    official = _official_amg()
    assert np.array_equal(amg.build_point_grid(n), official.build_point_grid(n))
    for layers, scale in ((0, 1), (2, 2), (1, 3)):
        ours = amg.build_layer_point_grids(n * 4, layers, scale)
        ref = official.build_all_layer_point_grids(n * 4, layers, scale)
        assert len(ours) == len(ref) and all(np.array_equal(a, b) for a, b in zip(ours, ref))


@pytest.mark.parametrize("hw", [(1080, 1920), (240, 320), (513, 511), (64, 1000)])
@pytest.mark.parametrize("layers", [0, 1, 2])
def test_crop_boxes_equal_official(hw, layers):
    official = _official_amg()
    for ratio in (512 / 1500, 0.0, 0.5):
        assert amg.generate_crop_boxes(hw, layers, ratio) == official.generate_crop_boxes(hw, layers, ratio)


def test_stability_and_boxes_equal_official():
    official = _official_amg()
    import torch

    logits = RNG.standard_normal((6, 50, 70)).astype(np.float32) * 3
    for thr, off in ((0.0, 1.0), (0.3, 0.5), (-1.0, 2.0)):
        ref = official.calculate_stability_score(torch.from_numpy(logits), thr, off).numpy()
        ours = amg.stability_score(logits, thr, off)
        assert np.array_equal(ours, ref)
        plane = amg.FullResolutionPlane(50, 70)
        for i in range(len(logits)):
            plane.logits[...] = logits[i]
            assert plane.stability(*amg.stability_thresholds(thr, off)) == ref[i]
    masks = blob_masks(9, 37, 53)
    ref_boxes = official.batched_mask_to_box(torch.from_numpy(masks)).numpy()
    assert np.array_equal(amg.masks_to_boxes(masks), ref_boxes)


def test_crop_edge_filter_equals_official():
    official = _official_amg()
    import torch

    boxes = RNG.integers(0, 300, (200, 4))
    boxes[:, 2:] += boxes[:, :2]
    for crop in ([0, 0, 600, 400], [100, 50, 400, 300], [0, 120, 330, 400]):
        ref = official.is_box_near_crop_edge(torch.from_numpy(boxes), crop, [0, 0, 600, 400]).numpy()
        assert np.array_equal(amg.box_near_crop_edge(boxes, crop, [0, 0, 600, 400]), ref)


@pytest.mark.parametrize("hw", [(1, 1), (5, 4), (37, 53), (240, 320)])
def test_rle_round_trip_and_official_encoding(hw):
    official = _official_amg()
    import torch

    masks = blob_masks(6, *hw, seed=hw[0])
    ref = official.mask_to_rle_pytorch(torch.from_numpy(masks))
    for m, r in zip(masks, ref):
        rle = amg.mask_to_rle(m)
        assert rle == r
        assert np.array_equal(amg.rle_to_mask(rle), m)
        assert amg.rle_area(rle) == official.area_from_rle(r) == int(m.sum())


def test_coco_rle_is_byte_compatible_with_pycocotools():
    mask_utils = pytest.importorskip("pycocotools.mask", reason="pycocotools (requirements/ci.txt) is the reference")
    for hw in ((1, 1), (7, 3), (240, 320), (1080, 1920)):
        for m in blob_masks(4, *hw, seed=sum(hw)):
            rle = amg.mask_to_rle(m)
            coco = amg.rle_to_coco(rle)
            ref = mask_utils.frPyObjects(rle, *hw)
            assert coco["counts"].encode() == ref["counts"] and coco["size"] == list(ref["size"])
            assert amg.coco_to_rle(coco) == rle
            assert np.array_equal(mask_utils.decode(ref).astype(bool), m)
    # Counts far apart exercise negative differences and multi-byte groups.
    rle = {"size": [1000, 1000], "counts": [0, 1, 999_990, 3, 6]}
    assert amg.rle_to_coco(rle)["counts"].encode() == mask_utils.frPyObjects(rle, 1000, 1000)["counts"]


def test_nms_equals_torchvision_semantics():
    pytest.importorskip("torch")
    import torch

    from tests.amg_shims import batched_nms

    for seed in range(5):
        rng = np.random.default_rng(seed)
        xy = rng.integers(0, 200, (300, 2))
        wh = rng.integers(0, 80, (300, 2))
        boxes = np.concatenate([xy, xy + wh], axis=1)
        scores = np.round(rng.uniform(0, 1, 300), 1).astype(np.float32)  # many ties
        for thr in (0.0, 0.3, 0.7, 1.0):
            ref = batched_nms(torch.from_numpy(boxes).float(), torch.from_numpy(scores), torch.zeros(300), thr).numpy()
            assert np.array_equal(amg.nms(boxes, scores, thr), ref)
    assert amg.nms(np.zeros((0, 4)), np.zeros(0), 0.5).shape == (0,)
    with pytest.raises(InputError, match="same length"):
        amg.nms(np.zeros((3, 4)), np.zeros(2), 0.5)


def test_upsampled_plane_matches_torch_interpolate():
    pytest.importorskip("torch")
    import torch
    from torch.nn import functional as F

    low = RNG.standard_normal((256, 256)).astype(np.float32) * 8
    plane = amg.FullResolutionPlane(240, 320).load(low)
    ref = F.interpolate(torch.from_numpy(low)[None, None], (240, 320), mode="bilinear", align_corners=False)[0, 0].numpy()
    assert np.abs(plane.logits - ref).max() < 1e-4
    assert np.array_equal(plane.mask(0.0), plane.logits > 0)


def test_points_to_model_rounds_like_torch():
    torch = pytest.importorskip("torch")
    pts = (amg.build_point_grid(32) * np.array([1537, 911])).astype(np.float32)
    t = torch.from_numpy(pts).clone()
    t[:, 0] = t[:, 0] / 1537
    t[:, 1] = t[:, 1] / 911
    assert np.array_equal(amg.points_to_model(pts, (911, 1537))[:, 0], (t * 1024).numpy())


def test_rle_to_mask_rejects_wrong_counts():
    with pytest.raises(InputError, match="sum to H\\*W"):
        amg.rle_to_mask({"size": [2, 2], "counts": [1, 2]})
