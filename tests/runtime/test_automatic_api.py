"""generate_masks without a network: option checks, the pipeline's bookkeeping, output modes, batching.

The fake decoder (tests/video/fakes.py) draws a 32x32 low-res square around each point with
predicted IoUs (0.6, 0.9, 0.7) for the three multimask tokens, so every expectation below can
be worked out by hand; no torch is needed.
"""

from __future__ import annotations

import numpy as np
import pytest

from sam2edge.backends.base import Runner
from sam2edge.contract.artifacts import Artifact
from sam2edge.errors import InputError
from sam2edge.processing import amg
from sam2edge.runtime.image.automatic import AutomaticMaskGenerator
from sam2edge.runtime.image.automatic_options import AutomaticMaskOptions
from sam2edge.runtime.image.predictor import SAM2
from tests.video.fakes import FakeModel

IMAGE = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)


def fake_predictor() -> SAM2:
    fake = FakeModel()
    return SAM2(fake.runners, fake.config, preprocessing="opencv")


@pytest.mark.parametrize("options, name", [
    ({"points_per_side": 0}, "points_per_side"),
    ({"points_per_side": -4}, "points_per_side"),
    ({"points_per_side": 2.5}, "points_per_side"),
    ({"points_per_side": True}, "points_per_side"),
    ({"points_per_batch": 0}, "points_per_batch"),
    ({"pred_iou_thresh": -0.1}, "pred_iou_thresh"),
    ({"pred_iou_thresh": 1.5}, "pred_iou_thresh"),
    ({"stability_score_thresh": float("nan")}, "stability_score_thresh"),
    ({"box_nms_thresh": 2}, "box_nms_thresh"),
    ({"crop_nms_thresh": -1}, "crop_nms_thresh"),
    ({"stability_score_offset": -1.0}, "stability_score_offset"),
    ({"mask_threshold": float("inf")}, "mask_threshold"),
    ({"crop_n_layers": -1}, "crop_n_layers"),
    ({"crop_overlap_ratio": 1.0}, "crop_overlap_ratio"),
    ({"crop_n_points_downscale_factor": 0}, "crop_n_points_downscale_factor"),
    ({"min_mask_region_area": -5}, "min_mask_region_area"),
    ({"output_mode": "png"}, "output_mode"),
    ({"use_m2m": "yes"}, "use_m2m"),
    ({"points_per_side": 32, "point_grids": [np.full((4, 2), 0.5)]}, "points_per_side and point_grids"),
    ({"points_per_side": None}, "points_per_side and point_grids"),
    ({"point_grids": [np.full((4, 3), 0.5)]}, "point_grids\\[0\\]"),
    ({"point_grids": [np.full((4, 2), 1.5)]}, "point_grids\\[0\\]"),
    ({"point_grids": [np.full((4, 2), 0.5)], "crop_n_layers": 1}, "point_grids"),
    ({"points_per_side": 2, "crop_n_layers": 2, "crop_n_points_downscale_factor": 2}, "points_per_side"),
    ({"point_per_side": 16}, "unknown"),
])
def test_bad_options_are_typed_errors_before_any_work(options, name):
    model = fake_predictor()
    with pytest.raises(InputError, match=name):
        model.generate_masks(IMAGE, **options)
    assert all(r.count == 0 for r in model.runners.values())


def test_bad_image_and_list_are_refused():
    model = fake_predictor()
    with pytest.raises(InputError, match="one image"):
        model.generate_masks([IMAGE, IMAGE])
    with pytest.raises(InputError):
        model.generate_masks(IMAGE[..., :2])
    assert all(r.count == 0 for r in model.runners.values())


def test_point_grids_alone_imply_no_points_per_side():
    grid = np.array([[0.25, 0.5], [0.75, 0.5]])
    assert AutomaticMaskOptions.from_kwargs(point_grids=[grid]).points_per_side is None
    recs = fake_predictor().generate_masks(IMAGE, input_color_format="rgb", point_grids=[grid], box_nms_thresh=0.0)
    assert sorted(r["point_coords"][0][0] for r in recs) == [80.0, 240.0]


def test_pipeline_bookkeeping_and_output_modes():
    model = fake_predictor()
    calls: list[tuple[int, int]] = []
    opts = dict(points_per_side=4, points_per_batch=5, box_nms_thresh=0.7)
    recs = model.generate_masks(IMAGE, input_color_format="rgb", progress=lambda d, t: calls.append((d, t)), **opts)
    # 16 points, 5 per decoder call; only token 2 (IoU 0.9) passes pred_iou_thresh=0.8.
    assert calls == [(5, 16), (10, 16), (15, 16), (16, 16)]
    sizes = [c["point_coords"][0] for c in model.runners[Artifact.PROMPT_DECODER].calls]
    assert sizes == [5, 5, 5, 1]
    assert recs and all(r["predicted_iou"] == pytest.approx(0.9) for r in recs)
    for r in recs:
        assert set(r) == {"segmentation", "area", "bbox", "predicted_iou", "point_coords", "stability_score", "crop_box"}
        x, y, w, h = r["bbox"]
        # The fake draws each square around its point, its centre clipped to [20, 200] of 256.
        cx, cy = (np.clip(np.array(r["point_coords"][0]) * 1024 / np.array([320, 240]) / 4, 20, 200) + 0.5) * [1.25, 240 / 256]
        assert abs(x + w / 2 - cx) <= 2 and abs(y + h / 2 - cy) <= 2 and abs(w - 40) <= 2
        assert r["area"] == int(r["segmentation"].sum()) and r["segmentation"].shape == (240, 320)
        assert r["crop_box"] == [0.0, 0.0, 320.0, 240.0] and 0.9 <= r["stability_score"] <= 1.0
    boxes = np.array([[b[0], b[1], b[0] + b[2], b[1] + b[3]] for b in (r["bbox"] for r in recs)])
    assert len(amg.nms(boxes, np.ones(len(boxes)), 0.7)) == len(recs)  # NMS left no overlapping pair
    for mode in ("uncompressed_rle", "coco_rle"):
        other = model.generate_masks(IMAGE, input_color_format="rgb", output_mode=mode, **opts)
        assert [r["bbox"] for r in other] == [r["bbox"] for r in recs]
        for a, b in zip(other, recs):
            assert np.array_equal(amg.segmentation_to_mask(a["segmentation"]), b["segmentation"]) and a["area"] == b["area"]


def test_crops_cover_the_image_and_report_their_box():
    model = fake_predictor()
    recs = model.generate_masks(IMAGE, input_color_format="rgb", points_per_side=4, crop_n_layers=1,
                                crop_n_points_downscale_factor=2)
    crops = {tuple(r["crop_box"]) for r in recs}
    assert (0.0, 0.0, 320.0, 240.0) in crops and len(crops) > 1
    assert model.runners[Artifact.IMAGE_ENCODER].count == 5  # one embedding per crop


class _Engine:
    def profile_max(self, name: str, profile: int = 0) -> tuple[int, ...]:
        assert name == "point_coords"
        return (3, 1, 2)


class _Proxy(Runner):
    """Like runtime/fallback.py's FallbackRunner: forwards to the active backend's own runner."""

    def __init__(self, inner: Runner) -> None:
        super().__init__(inner.spec)
        self.active_runner = inner

    def _infer_impl(self, feeds):
        return self.active_runner.infer(feeds)


@pytest.mark.parametrize("behind_fallback", [False, True])
def test_decoder_batches_respect_an_engine_profile(behind_fallback):
    fake = FakeModel()
    decoder = fake.runners[Artifact.PROMPT_DECODER]
    decoder.engine, decoder.profile = _Engine(), 0  # as a TensorRT runner exposes its profile
    runners = {**fake.runners, Artifact.PROMPT_DECODER: _Proxy(decoder)} if behind_fallback else fake.runners
    gen = AutomaticMaskGenerator(runners, lambda rgb: np.zeros((1, 3, 1024, 1024), np.float32), fake.config,
                                 AutomaticMaskOptions(points_per_side=3, points_per_batch=64))
    gen.generate(IMAGE)
    assert max(c["point_coords"][0] for c in decoder.calls) == 3
    assert gen.counts["decoded"] == 27 and gen.counts["passed_iou"] == 9
    assert set(gen.seconds) >= {"encode", "decode", "filter", "nms", "output"}


def test_single_mask_and_m2m_paths_run():
    model = fake_predictor()
    single = model.generate_masks(IMAGE, input_color_format="rgb", points_per_side=3, multimask_output=False,
                                  pred_iou_thresh=0.4)
    assert single and all(r["predicted_iou"] == pytest.approx(0.5) for r in single)  # token 0 is stable: kept
    refined = model.generate_masks(IMAGE, input_color_format="rgb", points_per_side=3, use_m2m=True,
                                   pred_iou_thresh=0.4)
    calls = list(model.runners[Artifact.PROMPT_DECODER].calls)[-2:]
    assert refined and calls[-1]["mask_input"] == (27, 1, 256, 256)  # 9 points x 3 masks fed back


def test_segmentation_to_mask_rejects_garbage():
    with pytest.raises(InputError, match="size"):
        amg.segmentation_to_mask({"counts": [1]})
    with pytest.raises(InputError, match="H, W"):
        amg.segmentation_to_mask(np.zeros(5))
