"""Typed state of the video tracker (instead of the official predictor's dict of ~17 string keys).

Shapes use O objects, H x W video pixels; the low-resolution mask grid is 256 x 256, the
feature grid 64 x 64 at a 1024 model input.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from sam2edge.processing.postprocess import upsample_logits
from sam2edge.runtime.video.storage import StoredTensor

NO_OBJ_SCORE = -1024.0  # low-res logit of "object absent" (the official NO_OBJ_SCORE)


@dataclass(frozen=True)
class VideoOptions:
    """Tracker settings; every default reproduces the official SAM2VideoPredictor.

    fill_hole_area: background components of the low-res mask (logits <= 0) with at most this
        many pixels become foreground (0.1), as the official ``fill_hole_area=8``. The official
        needs a CUDA extension for it and silently skips it without one (any CPU-only install);
        set 0 to reproduce that. Ours runs everywhere (OpenCV).
    memory_dtype: storage of memory features: "bfloat16" (official), "float16" or "float32".
    max_cond_frames: conditioning (prompted) frames kept per object; None derives it from the
        memory-attention profile (max memory frames - (num_maskmem - 1)). See bank.py.
    retention: "window" keeps only what later frames can attend to (bounded); "all" keeps
        every tracked frame's output like the official predictor (grows with the video).
    preprocessing: "exact" (the official video loader: PIL bicubic on uint8), "opencv" (the image
        predictor's antialiased bilinear, numpy + OpenCV), "auto" = "exact" if Pillow is installed
        (the same names as the image API; see sam2edge.processing.preprocess).
    input_color_format: channel order of numpy frames given by the caller ("bgr" like OpenCV
        frames, or "rgb"); files and folders are decoded by the sources themselves.
    num_frames: length of an iterable source when known (it sets the pointer normaliser
        min(num_frames, 16) - 1 as the official does); None = unknown (treated as >= 16).
    mask_threshold: logits above it are foreground in the returned masks.
    prefetch: while propagation runs the networks on one frame, read and pre-process the next
        one in a background thread (files, folders and lists; a one-pass iterable is always read
        when its frame is needed). On a GPU the host's frame work then overlaps the device's;
        the results are the same either way. False reads every frame on the calling thread.
    """

    fill_hole_area: float = 8.0
    memory_dtype: str = "bfloat16"
    max_cond_frames: int | None = None
    retention: str = "window"
    preprocessing: str = "auto"
    input_color_format: str = "bgr"
    num_frames: int | None = None
    mask_threshold: float = 0.0
    prefetch: bool = True


@dataclass(frozen=True)
class PointPrompt:
    """Clicks of one object on one frame: coords [P,2] float32 in model-input pixels (x*1024/W,
    y*1024/H), box corners first (labels 2, 3); labels [P] int32."""

    coords: np.ndarray
    labels: np.ndarray

    @property
    def num_points(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class MaskPrompt:
    """A mask given for one object on one frame (the mask itself is not kept)."""

    area: int


@dataclass
class MemoryEntry:
    """What one object leaves behind on one frame.

    low_res: [256,256] float32 mask logits as output (gated, hole-filled); the previous mask
        fed back on a re-click. obj_ptr: [256] float32 (gated). maskmem: [64,64,64] memory
        features in storage dtype, None until encoded. from_points: the frame received clicks
        (its mask is binarised for the memory encoder).
    """

    frame_idx: int
    low_res: np.ndarray | None  # None once the bank dropped it (far from every anchor)
    obj_ptr: np.ndarray
    object_score: float
    maskmem: StoredTensor | None = None
    from_points: bool = False

    @property
    def nbytes(self) -> int:
        n = self.obj_ptr.nbytes + (self.low_res.nbytes if self.low_res is not None else 0)
        return n + (self.maskmem.nbytes if self.maskmem is not None else 0)


@dataclass
class FrameFeatures:
    """Image-encoder outputs of one frame (batch 1), plus the frame's size."""

    frame_idx: int
    image_embed: np.ndarray  # [1,256,64,64] features + no_mem_embed
    high_res_0: np.ndarray  # [1,32,256,256]
    high_res_1: np.ndarray  # [1,64,128,128]
    vision_features: np.ndarray  # [1,256,64,64] raw features (memory path)
    video_hw: tuple[int, int]


@dataclass(frozen=True)
class FrameResult:
    """Masks of every object on one frame.

    Unpacks as ``frame_idx, obj_ids, masks`` (masks [O,H,W] bool at the video's resolution);
    ``low_res_logits`` [O,256,256] float32 and ``object_scores`` [O] are attributes. Objects
    without an output on this frame have logits NO_OBJ_SCORE (empty masks).
    """

    frame_idx: int
    obj_ids: tuple[int, ...]
    masks: np.ndarray
    low_res_logits: np.ndarray
    object_scores: np.ndarray
    video_hw: tuple[int, int] = field(default=(0, 0))

    def __iter__(self) -> Iterator:
        return iter((self.frame_idx, list(self.obj_ids), self.masks))

    def video_logits(self) -> np.ndarray:
        """[O,H,W] float32 logits at the video's resolution (bilinear, as the official)."""

        if not self.obj_ids:
            return np.zeros((0, *self.video_hw), np.float32)
        return upsample_logits(self.low_res_logits[:, None], self.video_hw)[:, 0]

    def mask_of(self, obj_id: int) -> np.ndarray:
        """[H,W] bool mask of one object."""
        return self.masks[self.obj_ids.index(obj_id)]
