"""Automatic mask generation: the same masks as the official ``SAM2AutomaticMaskGenerator``.

Both generators get the same checkpoint (every tensor randomised, then the localising scheme
below) and the same image; the mask sets must match one to one (each pair IoU >= 0.99,
predicted IoU and stability score within 1e-3, equal bbox and crop box), with crops off and
on, with ``min_mask_region_area > 0``, and with mask-to-mask refinement of single masks.

What the official generator needs beyond torch comes from tests/amg_shims.py where the real
one is missing: torchvision's ``batched_nms`` (a torch port of its CPU kernel) and the CUDA
extension's connected components (scipy), which ``min_mask_region_area`` uses; the test
output says which were used.

The weights: every tensor randomised, then ``tests.amg_weights.localising_weights``, which
makes each mask a region around its point (with plain random weights every grid point gives
nearly the same mask and NMS leaves one or two; see that module for the scheme and why).
With 12 x 12 points on a 320 x 240 photograph this leaves a few dozen masks after the IoU
(> 0.5), stability (>= 0.9) and NMS (0.8) filters.
"""

from __future__ import annotations

import time
import warnings

import cv2
import numpy as np
import pytest

from tests.amg_weights import localising_weights
from tests.oracle import official_config_file, requires_oracle, test_images

torch = pytest.importorskip("torch")
pytest.importorskip("scipy")
pytestmark = [requires_oracle, pytest.mark.oracle]

NAME = "sam2.1_hiera_tiny"
BASE = dict(points_per_side=12, pred_iou_thresh=0.5, stability_score_thresh=0.9, box_nms_thresh=0.8)
CASES = {
    "crops off": dict(BASE, output_mode="binary_mask"),
    "crops on, min_mask_region_area=40": dict(BASE, points_per_side=8, crop_n_layers=1, crop_n_points_downscale_factor=2,
                                              min_mask_region_area=40, output_mode="coco_rle"),
    # Refined single masks carry token 0's IoU prediction, which this scheme keeps low (0.1..0.4).
    "use_m2m, single mask": dict(BASE, points_per_side=7, use_m2m=True, multimask_output=False, pred_iou_thresh=0.1,
                                 output_mode="uncompressed_rle"),
}
MIN_MASKS = {"use_m2m, single mask": 3}  # one mask per point: fewer survive


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    from tests.amg_shims import install

    print("\nofficial generator's helpers: " + "; ".join(install()))
    from sam2.build_sam import build_sam2

    from sam2edge import AutoModel
    from sam2edge.model.testing import randomize_parameters

    torch.set_num_threads(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        official = build_sam2(official_config_file(NAME), ckpt_path=None, device="cpu", mode="eval")
    randomize_parameters(official, seed=0)
    localising_weights(official)
    ckpt = tmp_path_factory.mktemp("amg") / f"{NAME}.pt"
    torch.save({"model": official.state_dict()}, ckpt)
    ours = AutoModel.from_pretrained(str(ckpt), preprocessing="exact", backend="torch")
    image = cv2.resize(test_images()["astronaut"], (320, 240), interpolation=cv2.INTER_AREA)
    return official.eval(), ours, image


@pytest.mark.parametrize("case", list(CASES))
def test_same_masks_as_official_generator(pair, case):
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    official, ours, image = pair
    options = CASES[case]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        ref = SAM2AutomaticMaskGenerator(official, **options).generate(image)
        t1 = time.perf_counter()
    got = ours.generate_masks(image, input_color_format="rgb", **options)
    t2 = time.perf_counter()
    worst = compare_records(got, ref, image.shape[:2])
    print(f"{case}: {len(ref)} masks (320x240, random localising weights); min IoU {worst['iou']:.5f}, "
          f"max |d predicted_iou| {worst['pred']:.1e}, max |d stability| {worst['stab']:.1e}; "
          f"official {t1 - t0:.1f}s, ours {t2 - t1:.1f}s")
    assert len(ref) >= MIN_MASKS.get(case, 12), f"{case}: the scheme should leave a few dozen masks, got {len(ref)}"


def compare_records(got: list[dict], ref: list[dict], image_hw: tuple[int, int]) -> dict[str, float]:
    """One-to-one match by mask IoU; asserts the issue's agreement and returns the worst figures."""
    from scipy.optimize import linear_sum_assignment

    assert len(got) == len(ref), f"{len(got)} masks vs the official {len(ref)}"
    if not ref:
        return {"iou": 1.0, "pred": 0.0, "stab": 0.0}
    a = np.stack([_mask(r["segmentation"]) for r in got]).reshape(len(got), -1).astype(np.float32)
    b = np.stack([_mask(r["segmentation"]) for r in ref]).reshape(len(ref), -1).astype(np.float32)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None] - inter
    iou = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
    rows, cols = linear_sum_assignment(-iou)
    worst = {"iou": float(iou[rows, cols].min()), "pred": 0.0, "stab": 0.0}
    for i, j in zip(rows, cols):
        g, r = got[i], ref[j]
        assert iou[i, j] >= 0.99, f"mask {j} of the official set: best match IoU {iou[i, j]:.4f}"
        worst["pred"] = max(worst["pred"], abs(g["predicted_iou"] - r["predicted_iou"]))
        worst["stab"] = max(worst["stab"], abs(g["stability_score"] - r["stability_score"]))
        assert g["bbox"] == r["bbox"], f"bbox {g['bbox']} vs {r['bbox']}"
        assert g["crop_box"] == r["crop_box"] and g["point_coords"] == r["point_coords"]
        assert abs(g["area"] - r["area"]) <= 0.01 * r["area"] + 1
        assert set(g) == set(r)
    assert worst["pred"] <= 1e-3 and worst["stab"] <= 1e-3, worst
    return worst


def _mask(segmentation) -> np.ndarray:
    from sam2edge.processing.amg import coco_to_rle, rle_to_mask

    if isinstance(segmentation, np.ndarray):
        return segmentation.astype(bool)
    if isinstance(segmentation["counts"], str | bytes):
        segmentation = coco_to_rle(segmentation)
    return rle_to_mask(segmentation)
