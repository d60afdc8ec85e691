"""Options of automatic mask generation: the official generator's names and defaults, checked.

Every option is validated when the options are built, before any image is encoded, and a
bad value raises :class:`~sam2edge.errors.InputError` naming the option, what it accepts
and what came.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sam2edge.errors import InputError

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")


@dataclass(frozen=True)
class AutomaticMaskOptions:
    """What ``generate_masks`` computes; defaults are sam2 1.1.0's ``SAM2AutomaticMaskGenerator``.

    points_per_side: grid points per image side (``None`` when ``point_grids`` is given).
    points_per_batch: prompts per decoder call (memory vs. call overhead; results do not depend on it).
    pred_iou_thresh: keep masks whose predicted IoU is strictly above this (0 turns the filter off).
    stability_score_thresh / stability_score_offset: keep masks whose stability score (IoU of the
        mask cut at mask_threshold +- offset) is at least this (0 turns the filter off).
    mask_threshold: logit cut-off of the binary masks.
    box_nms_thresh / crop_nms_thresh: box IoU above which a duplicate is suppressed, within one
        crop (higher predicted IoU wins) and between crops (the smaller crop wins).
    crop_n_layers / crop_overlap_ratio / crop_n_points_downscale_factor: also run on
        (2**i)**2 overlapping crops in layers i = 1..n, with int(points_per_side / factor**i) points.
    point_grids: explicit [N, 2] grids in [0, 1] per crop layer (instead of points_per_side).
    min_mask_region_area: fill background holes and remove foreground islands of at most this
        area (8-connected, on the 256x256 logits before upsampling, as sam2 1.1.0 does).
    output_mode: "binary_mask" (H x W bool), "uncompressed_rle" or "coco_rle" (pycocotools' format).
    use_m2m: refine each mask once by feeding its logits back with its point (single-mask output).
    multimask_output: three masks per point (else one, with the stability-based fallback).
    """

    points_per_side: int | None = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.8
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    mask_threshold: float = 0.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    point_grids: tuple[np.ndarray, ...] | None = None
    min_mask_region_area: float = 0
    output_mode: str = "binary_mask"
    use_m2m: bool = False
    multimask_output: bool = True

    def __post_init__(self) -> None:
        _check_int("points_per_batch", self.points_per_batch, 1)
        for name in ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh", "crop_nms_thresh"):
            _check_unit(name, getattr(self, name))
        _check_finite("stability_score_offset", self.stability_score_offset, minimum=0.0)
        _check_finite("mask_threshold", self.mask_threshold)
        _check_finite("crop_overlap_ratio", self.crop_overlap_ratio, minimum=0.0)
        if not self.crop_overlap_ratio < 1.0:
            raise InputError(f"crop_overlap_ratio must be in [0, 1), got {self.crop_overlap_ratio!r}")
        _check_int("crop_n_layers", self.crop_n_layers, 0)
        _check_int("crop_n_points_downscale_factor", self.crop_n_points_downscale_factor, 1)
        _check_finite("min_mask_region_area", self.min_mask_region_area, minimum=0.0)
        if self.output_mode not in OUTPUT_MODES:
            raise InputError(f"output_mode must be one of {OUTPUT_MODES}, got {self.output_mode!r}")
        for name in ("use_m2m", "multimask_output"):
            if not isinstance(getattr(self, name), bool | np.bool_):
                raise InputError(f"{name} must be True or False, got {getattr(self, name)!r}")
        self._check_grid_source()

    def _check_grid_source(self) -> None:
        if (self.points_per_side is None) == (self.point_grids is None):
            got = "both" if self.point_grids is not None else "neither"
            raise InputError(
                f"exactly one of points_per_side and point_grids must be given (set points_per_side=None to use "
                f"point_grids), got {got}"
            )
        if self.points_per_side is not None:
            _check_int("points_per_side", self.points_per_side, 1)
            last = int(self.points_per_side / self.crop_n_points_downscale_factor**self.crop_n_layers)
            if last < 1:
                raise InputError(
                    f"points_per_side={self.points_per_side} leaves no point in crop layer {self.crop_n_layers} "
                    f"(points_per_side / crop_n_points_downscale_factor**crop_n_layers must be >= 1, got {last})"
                )
            return
        grids = tuple(np.asarray(g, dtype=np.float64) for g in self.point_grids)  # type: ignore[union-attr]
        if len(grids) < self.crop_n_layers + 1:
            raise InputError(
                f"point_grids must hold one grid per crop layer ({self.crop_n_layers + 1} for crop_n_layers="
                f"{self.crop_n_layers}), got {len(grids)}"
            )
        for i, g in enumerate(grids):
            if g.ndim != 2 or g.shape[1] != 2 or len(g) == 0:
                raise InputError(f"point_grids[{i}] must be a non-empty [N, 2] array of (x, y), got shape {g.shape}")
            if not (np.isfinite(g).all() and g.min() >= 0.0 and g.max() <= 1.0):
                raise InputError(f"point_grids[{i}] must hold normalised coordinates in [0, 1], got range "
                                 f"[{g.min()}, {g.max()}]")
        object.__setattr__(self, "point_grids", grids)

    @classmethod
    def from_kwargs(cls, **kwargs: Any) -> AutomaticMaskOptions:
        """Options from keyword arguments; unknown names are refused. ``point_grids`` alone implies
        ``points_per_side=None`` (the official generator wants both spelled out)."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise InputError(f"unknown automatic mask generation option(s) {unknown}; known: {sorted(known)}")
        if kwargs.get("point_grids") is not None and "points_per_side" not in kwargs:
            kwargs["points_per_side"] = None
        return cls(**kwargs)


def _check_int(name: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_finite(name: str, value: Any, minimum: float | None = None) -> None:
    ok = isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)
    if not ok or not math.isfinite(float(value)) or (minimum is not None and value < minimum):
        expected = "a finite number" + (f" >= {minimum}" if minimum is not None else "")
        raise InputError(f"{name} must be {expected}, got {value!r}")


def _check_unit(name: str, value: Any) -> None:
    _check_finite(name, value)
    if not 0.0 <= float(value) <= 1.0:
        raise InputError(f"{name} must be in [0, 1], got {value!r}")
