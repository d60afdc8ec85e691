"""Verification figures: pure comparisons, and a real chained run (PyTorch against itself)."""

from __future__ import annotations

import numpy as np
import pytest

from sam2edge.contract.parity import compare_outputs, mask_iou, merge_figures
from sam2edge.engines.verify import point_grid, verification_feeds, verify


def test_mask_iou_and_figures():
    a = np.full((2, 4, 8, 8), -1.0, np.float32)
    b = a.copy()
    a[0, 0, :4] = 1.0  # 32 px
    b[0, 0, :2] = 1.0  # 16 px, inside
    iou = mask_iou(a, b)
    assert iou[0, 0] == pytest.approx(0.5) and (iou.reshape(-1)[1:] == 1.0).all()  # empty vs empty counts as equal
    fig = compare_outputs({"masks": a, "iou_predictions": np.zeros((2, 4))},
                          {"masks": b, "iou_predictions": np.full((2, 4), 0.01)})
    assert fig["masks"]["mask_iou_min"] == pytest.approx(0.5) and fig["masks"]["max_abs_diff"] == 2.0
    assert fig["iou_predictions"]["max_abs_diff"] == pytest.approx(0.01)
    merged = merge_figures([fig, compare_outputs({"masks": a}, {"masks": a})])
    assert merged["masks"]["mask_iou_min"] == pytest.approx(0.5)
    assert merged["masks"]["mask_iou_mean"] == pytest.approx((iou.mean() + 1.0) / 2)
    shape = compare_outputs({"masks": a}, {"masks": a[:1]})["masks"]  # a wrong shape fails every bound
    assert shape["max_abs_diff"] == float("inf") and shape["mask_iou_min"] == 0.0
    nan = compare_outputs({"masks": a}, {"masks": np.full_like(a, np.nan)})["masks"]
    assert nan["max_abs_diff"] == float("inf")


def test_point_grid_is_deterministic_and_valid():
    c1, l1 = point_grid(3, 2, seed=5)
    c2, _ = point_grid(3, 2, seed=5)
    assert c1.dtype == np.float32 and l1.dtype == np.int32 and (c1 == c2).all()
    assert c1.min() >= 0 and c1.max() <= 1024 and (l1 == 1).all()


def test_chained_verification_runs_every_artifact():
    torch = pytest.importorskip("torch", reason="the reference runners here are PyTorch")
    from sam2edge.backends.torch_runner import make_torch_runners
    from sam2edge.model import build_model
    from sam2edge.model.testing import randomize_parameters

    torch.set_num_threads(2)
    model = build_model("sam2.1_hiera_tiny").eval()
    randomize_parameters(model, 0)
    runners = make_torch_runners(model, "cpu")
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (300, 400, 3), dtype=np.uint8)
    # memory_attention at its opt profile (7 frames) takes minutes on 2 CPU cores: its feeds are
    # checked against the spec, the three others run.
    jobs = verification_feeds([image], runners, list(runners))
    assert [n for n, _, _ in jobs] == ["image_encoder", "prompt_decoder", "memory_attention", "memory_encoder"]
    for name, feeds, _ in jobs:
        runners[name].spec.check_inputs(feeds)
    run = [j for j in jobs if j[0] != "memory_attention"]
    figures = verify(runners, runners, [image], [], jobs=run)
    print(figures)
    assert set(figures) == {"image_encoder", "prompt_decoder", "memory_encoder"}
    assert figures["prompt_decoder"]["masks"]["mask_iou_min"] == 1.0
    assert all(f["max_abs_diff"] == 0.0 for outs in figures.values() for f in outs.values())
