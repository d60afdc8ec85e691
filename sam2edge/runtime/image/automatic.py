"""Automatic mask generation ("segment everything") on the runner contract.

The same masks as sam2 1.1.0's ``SAM2AutomaticMaskGenerator``, computed with less work. For
every crop (the whole image, then the crop layers): encode it once, prompt the decoder with
a grid of single positive points, keep the good masks, remove duplicates; then remove
duplicates between crops. It runs on any ``image_encoder`` / ``prompt_decoder`` runner pair
(PyTorch, ONNX Runtime, TensorRT), with numpy/OpenCV on the host.

Where the work goes, in the order the filters apply (each is exact, i.e. it keeps precisely
the masks the official generator keeps):

1. Predicted IoU is known as soon as the decoder returns, so the IoU filter runs first and
   nothing else is computed for a rejected mask (the official upsamples all 3 x 64 masks of a
   batch to full resolution before filtering).
2. Each remaining mask is upsampled on its own into one reused full-resolution buffer, which
   gives the stability score (two counts); only masks that pass get their binary mask and
   box, read from the same buffer while it is in cache.
3. Surviving masks keep only their 256x256 logits (256 KB) until NMS; the full-resolution
   mask is made again, and encoded, only for the masks that are returned (the official
   run-length-encodes every candidate before NMS).

The upsampled logits agree with torch's ``F.interpolate`` to float rounding, so a pixel whose
logit lies within ~1e-6 of a cut-off may land on the other side; stability scores then differ
by about one pixel in a million.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sam2edge.backends.base import Runner
from sam2edge.config import ModelConfig
from sam2edge.contract.artifacts import LOW_RES, Artifact, Tensor
from sam2edge.processing import amg
from sam2edge.processing.masks import choose_mask_tokens
from sam2edge.processing.postprocess import fill_holes_and_sprinkles
from sam2edge.runtime.image.automatic_options import AutomaticMaskOptions

Progress = Callable[[int, int], None]  # (grid points decoded so far, total grid points)
LOGIT_CLAMP = 32.0  # the predictor clamps low-res logits before feeding them back (m2m)
HOLE_FILL_THRESHOLD = 0.0  # sam2's image predictor fills holes around ITS threshold (0), not the generator's
ENC_OUT = (Tensor.IMAGE_EMBED, Tensor.HIGH_RES_0, Tensor.HIGH_RES_1)
DEC_IN = (Tensor.IMAGE_EMBED, Tensor.HIGH_RES_0, Tensor.HIGH_RES_1, Tensor.POINT_COORDS, Tensor.POINT_LABELS,
          Tensor.MASK_INPUT, Tensor.HAS_MASK_INPUT)
# The official generator's record keys (public API names; "point_coords" is also a tensor name).
RECORD_KEYS = ("segmentation", "area", "bbox", "predicted_iou", "point_coords", "stability_score", "crop_box")  # names: api


@dataclass
class _Found:
    """Masks kept so far in one crop: one entry per mask, boxes in crop coordinates."""

    logits: list[np.ndarray] = field(default_factory=list)  # [256, 256] float32, holes already filled
    iou: list[np.float32] = field(default_factory=list)
    stability: list[np.float32] = field(default_factory=list)
    points: list[np.ndarray] = field(default_factory=list)  # (x, y) float32 crop pixels
    boxes: list[np.ndarray] = field(default_factory=list)  # xyxy int64, inclusive

    def take(self, keep: np.ndarray) -> _Found:
        pick = [int(i) for i in keep]
        return _Found(*([getattr(self, f)[i] for i in pick] for f in ("logits", "iou", "stability", "points", "boxes")))


@dataclass
class _CropResult:
    crop_box: list[int]
    found: _Found


class AutomaticMaskGenerator:
    """``generate(rgb) -> list of records`` with the official generator's keys.

    runners: ``{Artifact.IMAGE_ENCODER: Runner, Artifact.PROMPT_DECODER: Runner, ...}``.
    preprocess: RGB uint8 [h, w, 3] -> encoder input [1, 3, 1024, 1024] float32.
    config: the model's config (image size, single-mask stability fallback).
    """

    def __init__(self, runners: dict[str, Runner], preprocess: Callable[[np.ndarray], np.ndarray],
                 config: ModelConfig, options: AutomaticMaskOptions | None = None) -> None:
        self.encoder = runners[Artifact.IMAGE_ENCODER]
        self.decoder = runners[Artifact.PROMPT_DECODER]
        self.preprocess = preprocess
        self.config = config
        self.options = options or AutomaticMaskOptions()
        o = self.options
        self.grids = list(o.point_grids) if o.point_grids is not None else amg.build_layer_point_grids(
            o.points_per_side, o.crop_n_layers, o.crop_n_points_downscale_factor)  # type: ignore[arg-type]
        self._planes: dict[tuple[int, int], amg.FullResolutionPlane] = {}
        self._capacity: int | None = None
        self.seconds: Counter[str] = Counter()  # where the last generate() spent its time, by stage
        self.counts: Counter[str] = Counter()  # masks left after each filter of the last generate()

    @contextmanager
    def _stage(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - t0

    # -- the whole image ------------------------------------------------------------------
    def generate(self, rgb: np.ndarray, progress: Progress | None = None) -> list[dict[str, Any]]:
        """RGB uint8 [H, W, 3] -> records: segmentation, area, bbox (XYWH), predicted_iou,
        point_coords, stability_score, crop_box (XYWH)."""
        o = self.options
        self.seconds.clear()
        self.counts.clear()
        image_hw = (int(rgb.shape[0]), int(rgb.shape[1]))
        crop_boxes, layers = amg.generate_crop_boxes(image_hw, o.crop_n_layers, o.crop_overlap_ratio)
        counter = _Counter(sum(len(self.grids[layer]) for layer in layers), progress)
        crops = [self._process_crop(rgb, box, layer, image_hw, counter) for box, layer in zip(crop_boxes, layers)]
        rows = [(c, i) for c in crops for i in range(len(c.found.iou))]
        if len(crop_boxes) > 1 and rows:
            with self._stage("nms"):
                # Between crops the smaller crop wins: score 1 / crop area (float32, as torch divides ints).
                boxes = np.stack([c.found.boxes[i] for c, i in rows])
                scores = np.array([np.float32(1) / np.float32(amg.box_area(np.array([c.crop_box]))[0]) for c, _ in rows])
                rows = [rows[k] for k in amg.nms(boxes, scores, o.crop_nms_thresh)]
        with self._stage("output"):
            records = [self._record(c, i, image_hw) for c, i in rows]
        self.counts["returned"] = len(records)
        self._planes.clear()
        return records

    # -- one crop -------------------------------------------------------------------------
    def _process_crop(self, rgb: np.ndarray, crop_box: list[int], layer: int, image_hw: tuple[int, int],
                      counter: _Counter) -> _CropResult:
        x0, y0, x1, y1 = crop_box
        crop = np.ascontiguousarray(rgb[y0:y1, x0:x1])
        crop_hw = (int(crop.shape[0]), int(crop.shape[1]))
        with self._stage("encode"):
            features = self.encoder.infer({Tensor.IMAGE: self.preprocess(crop)})
        points = (self.grids[layer] * np.array([crop_hw[1], crop_hw[0]])).astype(np.float32)
        found = _Found()
        step = self._batch_size()
        for start in range(0, len(points), step):
            batch = points[start : start + step]
            with self._stage("decode"):
                logits, iou, point_of = self._predict(features, batch, crop_hw)
            with self._stage("filter"):
                self._keep_good(logits, iou, batch[point_of], crop_box, crop_hw, image_hw, found)
            counter.add(len(batch))
        with self._stage("nms"):
            kept = found.take(amg.nms(np.array(found.boxes).reshape(-1, 4), np.array(found.iou, dtype=np.float32),
                                      self.options.box_nms_thresh))
        self.counts["after_crop_nms"] += len(kept.iou)
        shift = np.array([x0, y0], dtype=np.int64)
        kept.boxes = [b + np.tile(shift, 2) for b in kept.boxes]
        kept.points = [p + shift.astype(np.float32) for p in kept.points]
        return _CropResult(crop_box, kept)

    def _batch_size(self) -> int:
        """points_per_batch, capped by the decoder's capacity (a TensorRT profile's maximum)."""
        if self._capacity is None:
            self._capacity = _decoder_capacity(self.decoder)
        return max(1, min(self.options.points_per_batch, self._capacity))

    def _predict(self, features: dict[str, np.ndarray], points: np.ndarray, crop_hw: tuple[int, int]
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """points [K, 2] crop pixels -> low-res logits [R, 256, 256], predicted IoU [R] and the point of
        each row [R] (R = K masks per point, point-major)."""
        o, cfg = self.options, self.config
        coords = amg.points_to_model(points, crop_hw, cfg.image_size)
        masks, iou = self._decode(features, coords)
        low, scores, _ = choose_mask_tokens(masks, iou, o.multimask_output, cfg.dynamic_multimask_via_stability,
                                      cfg.dynamic_multimask_stability_delta, cfg.dynamic_multimask_stability_thresh)
        k, m = scores.shape
        low, scores = low.reshape(k * m, LOW_RES, LOW_RES), scores.reshape(k * m)
        point_of = np.repeat(np.arange(k), m)
        if o.use_m2m:
            low, scores = self._refine(features, coords[point_of], low)
        return low, scores, point_of

    def _refine(self, features: dict[str, np.ndarray], coords: np.ndarray, low: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One mask-to-mask step: each mask's clamped logits go back in with its point, single-mask output."""
        cfg, step = self.config, self._batch_size()
        out_low, out_iou = [], []
        for start in range(0, len(low), step):
            prior = np.clip(low[start : start + step], -LOGIT_CLAMP, LOGIT_CLAMP)[:, None]
            masks, iou = self._decode(features, coords[start : start + step], prior)
            sel, scores, _ = choose_mask_tokens(masks, iou, False, cfg.dynamic_multimask_via_stability,
                                          cfg.dynamic_multimask_stability_delta, cfg.dynamic_multimask_stability_thresh)
            out_low.append(sel[:, 0])
            out_iou.append(scores[:, 0])
        return np.concatenate(out_low), np.concatenate(out_iou)

    def _decode(self, features: dict[str, np.ndarray], coords: np.ndarray, mask_input: np.ndarray | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
        k = len(coords)
        has_mask = np.full((k,), 0.0 if mask_input is None else 1.0, dtype=np.float32)
        if mask_input is None:
            mask_input = np.zeros((k, 1, LOW_RES, LOW_RES), dtype=np.float32)
        feeds = dict(zip(DEC_IN, (
            features[ENC_OUT[0]], features[ENC_OUT[1]], features[ENC_OUT[2]], coords,
            np.ones((k, 1), dtype=np.int32), mask_input.astype(np.float32, copy=False), has_mask)))
        out = self.decoder.infer(feeds)
        return out[Tensor.MASKS], out[Tensor.IOU_PREDICTIONS]

    def _keep_good(self, logits: np.ndarray, iou: np.ndarray, points: np.ndarray, crop_box: list[int],
                   crop_hw: tuple[int, int], image_hw: tuple[int, int], found: _Found) -> None:
        """Apply the IoU, stability and crop-edge filters to one decoder batch, cheapest first."""
        o = self.options
        rows = np.flatnonzero(iou > np.float32(o.pred_iou_thresh)) if o.pred_iou_thresh > 0 else range(len(iou))
        self.counts["decoded"] += len(iou)
        self.counts["passed_iou"] += len(rows)
        high, low = amg.stability_thresholds(o.mask_threshold, o.stability_score_offset)
        min_stability = np.float32(o.stability_score_thresh)
        plane = self._plane(crop_hw)
        image_box = [0, 0, image_hw[1], image_hw[0]]
        for r in rows:
            mask_logits = self._clean(logits[r])
            stability = plane.load(mask_logits).stability(high, low)
            if o.stability_score_thresh > 0 and not stability >= min_stability:
                continue
            self.counts["passed_stability"] += 1
            box = amg.mask_to_box(plane.mask(o.mask_threshold))
            if amg.box_near_crop_edge(box[None], crop_box, image_box)[0]:
                continue
            found.logits.append(np.array(mask_logits, dtype=np.float32))  # a copy: frees the decoder's batch
            found.iou.append(np.float32(iou[r]))
            found.stability.append(np.float32(stability))
            found.points.append(points[r])
            found.boxes.append(box)

    def _clean(self, logits: np.ndarray) -> np.ndarray:
        """min_mask_region_area: small holes and islands of the 256x256 mask removed before upsampling."""
        area = self.options.min_mask_region_area
        if area <= 0:
            return logits
        return fill_holes_and_sprinkles(logits[None, None], area, area, HOLE_FILL_THRESHOLD)[0, 0]

    def _plane(self, crop_hw: tuple[int, int]) -> amg.FullResolutionPlane:
        if crop_hw not in self._planes:
            self._planes[crop_hw] = amg.FullResolutionPlane(*crop_hw)
        return self._planes[crop_hw]

    # -- output ---------------------------------------------------------------------------
    def _record(self, crop: _CropResult, i: int, image_hw: tuple[int, int]) -> dict[str, Any]:
        o, f = self.options, crop.found
        x0, y0, x1, y1 = crop.crop_box
        mask = self._plane((y1 - y0, x1 - x0)).load(f.logits[i]).mask(o.mask_threshold)
        if o.output_mode == "binary_mask":
            segmentation: Any = np.zeros(image_hw, dtype=bool)
            segmentation[y0:y1, x0:x1] = mask
            area = int(np.count_nonzero(mask))
        else:
            segmentation = amg.crop_mask_to_rle(mask, crop.crop_box, image_hw)
            area = amg.rle_area(segmentation)
            if o.output_mode == "coco_rle":
                segmentation = amg.rle_to_coco(segmentation)
        return dict(zip(RECORD_KEYS, (
            segmentation, area, amg.xyxy_to_xywh(f.boxes[i]), float(f.iou[i]), [[float(v) for v in f.points[i]]],
            float(f.stability[i]), amg.xyxy_to_xywh(np.array(crop.crop_box)))))


def _decoder_capacity(runner: Runner) -> int:
    """The most prompts one decoder call takes: a TensorRT engine's profile maximum, else unbounded.

    A fallback proxy (runtime/fallback.py) is looked through to the active backend's own runner.
    """
    runner = getattr(runner, "active_runner", None) or runner
    if not hasattr(runner, "engine"):  # ONNX Runtime and PyTorch take any number of prompts
        return 1 << 30
    runner.activate()  # TensorRT deserialises its engine on activation
    engine = runner.engine
    if engine is None or not hasattr(engine, "profile_max"):
        return 1 << 30
    return int(engine.profile_max(Tensor.POINT_COORDS, getattr(runner, "profile", 0))[0])


class _Counter:
    def __init__(self, total: int, progress: Progress | None) -> None:
        self.done, self.total, self.progress = 0, total, progress

    def add(self, n: int) -> None:
        self.done += n
        if self.progress is not None:
            self.progress(self.done, self.total)
