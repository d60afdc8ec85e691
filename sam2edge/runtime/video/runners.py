"""Runs the four artifacts for the tracker: numpy in, numpy out, objects batched.

Everything here goes through the Runner contract (``runner.infer(feeds)``), so the same code
drives PyTorch, ONNX Runtime and TensorRT. Tensor names come from the artifact specs.

Batching: a frame is encoded once; memory attention runs once per group of objects that
share a memory layout (same temporal rows and pointer offsets, which is every object prompted
on the same frames), the decoder once for all objects when its spec takes one image embedding
per prompt (else once per object), and the memory encoder once for all objects. Batches are
cut at the profile's maximum (``num_objects`` / ``num_prompts``).

On eager PyTorch on the CPU (``registry.ONE_OBJECT_PER_CALL``: torch-cpu) the three per-object
artifacts take one object per call instead, as the official predictor does: there a batched call
cost more per object than calls of one (large batched intermediates fall out of the caches: the
memory encoder's first stage is 32 MB at batch 8). Measured with hiera_t, 2 threads, ms per
object, one call of batch 1 vs one of batch B:

================  =================  ===============  ===============
artifact          B                  PyTorch          ONNX Runtime
================  =================  ===============  ===============
memory attention  4 (2 frames)       1754 vs 2370     1245 vs 1343
memory encoder    8                  98 vs 189        82 vs 97
prompt decoder    8                  51 vs 76         33 vs 33
================  =================  ===============  ===============

In the whole tracker the isolated figures do not carry over to ONNX Runtime: a batched memory-
attention call computes the shared frame's layer-0 self-attention once for all objects (see
``MemoryAttention``), calls of one compute it per object. Quiet machine, 2 threads, wall time,
8 objects, 3 tracked frames, 5 interleaved runs, ms per tracked frame, per-object vs batched:
ONNX Runtime median 15054 vs 13830 (batched faster in 5 of 5 pairs), PyTorch 23449 vs 23814
(per object faster in 4 of 5). ONNX Runtime, GPU and remote backends keep the batches.

Eager PyTorch has since moved to the fused SDPA kernel for the memory attention (the table's
PyTorch row was the older narrow form). Batching only the memory attention again did not pay
in the tracker: 4 objects, 4 tracked frames, 3 interleaved runs, per object 14564 (14564,
13664, 14826) vs batched 15189 (15189, 12958, 15733) ms per tracked frame; so torch-cpu keeps
one object per call for all three.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from sam2edge.backends import registry
from sam2edge.backends.base import Runner
from sam2edge.config import ModelConfig
from sam2edge.contract.artifacts import NUM_MEMORY_FRAMES, NUM_OBJ_PTRS, NUM_OBJECTS, NUM_PROMPTS, Artifact, Tensor
from sam2edge.contract.spec import Dim
from sam2edge.errors import BackendRuntimeError, BackendUnavailableError
from sam2edge.processing.masks import choose_mask_tokens
from sam2edge.runtime.video.bank import MemorySelection
from sam2edge.runtime.video.state import NO_OBJ_SCORE, FrameFeatures

ARTIFACTS = Artifact.ALL
# Shared by every official config (sam2*/sam2.1* yaml): multimask for 0..1 points, also when tracking.
MULTIMASK_MIN_POINTS, MULTIMASK_MAX_POINTS = 0, 1
LOW_RES = 256


@dataclass(frozen=True)
class Decoded:
    """The chosen prediction per object: low_res [B,256,256] (gated, not hole-filled),
    obj_ptr [B,256] (gated), object_score [B]."""

    low_res: np.ndarray
    obj_ptr: np.ndarray
    object_score: np.ndarray


class VideoRunners:
    """The four runners of one model plus its config; no state across frames."""

    def __init__(self, runners: Mapping[str, Runner], config: ModelConfig) -> None:
        missing = [a for a in ARTIFACTS if a not in runners]
        if missing:
            raise BackendUnavailableError(
                f"video tracking needs the runners {list(ARTIFACTS)}; this model has no {missing}. "
                "Load it with AutoModel.from_pretrained(..., video=True) from an export folder or engine set with all "
                "four artifacts (`sam2edge export` writes all four) or from a checkpoint"
            )
        self.runners = dict(runners)
        self.config = config
        self.max_objects = _dim_max(runners[Artifact.MEMORY_ATTENTION], NUM_OBJECTS, 8)
        self.max_prompts = _dim_max(runners[Artifact.PROMPT_DECODER], NUM_PROMPTS, 64)
        self.max_memory_frames = _dim_max(runners[Artifact.MEMORY_ATTENTION], NUM_MEMORY_FRAMES, 16)
        self.max_obj_ptrs = _dim_max(runners[Artifact.MEMORY_ATTENTION], NUM_OBJ_PTRS, 32)
        # Embeddings per decoder call: 1 where the spec takes one shared embedding only.
        self.max_decoder_embeds = _dim_max(runners[Artifact.PROMPT_DECODER], NUM_OBJECTS, 1)
        self.calls: dict[str, int] = dict.fromkeys(ARTIFACTS, 0)

    @property
    def decoder_batches_images(self) -> bool:
        return self.max_decoder_embeds > 1

    @property
    def backend(self) -> str:
        return self.runners[Artifact.MEMORY_ATTENTION].backend

    def objects_per_call(self, name: str, limit: int) -> int:
        """How many objects one call of artifact ``name`` takes: 1 when its runner's backend does
        better one object at a time (read at every call: a fallback proxy may switch backends),
        else ``limit``."""
        return 1 if self.runners[name].backend in registry.ONE_OBJECT_PER_CALL else limit

    def _infer(self, name: str, feeds: dict[str, np.ndarray], check: bool = True) -> dict[str, np.ndarray]:
        self.calls[name] += 1
        return self.runners[name].infer(feeds, check=check)

    # -- image encoder ----------------------------------------------------------------------
    def encode(self, frame_idx: int, image: np.ndarray, video_hw: tuple[int, int]) -> FrameFeatures:
        """image [1,3,1024,1024] float32 -> the frame's features."""
        out = self._infer(Artifact.IMAGE_ENCODER, {Tensor.IMAGE: image})
        return FrameFeatures(frame_idx, out[Tensor.IMAGE_EMBED], out[Tensor.HIGH_RES_0], out[Tensor.HIGH_RES_1],
                             out[Tensor.VISION_FEATURES], video_hw)

    # -- memory attention -------------------------------------------------------------------
    def condition(self, feats: FrameFeatures, selections: list[MemorySelection]) -> np.ndarray:
        """Memory-conditioned embeddings [B,256,64,64], one per selection (in order)."""
        out = np.empty((len(selections), *feats.vision_features.shape[1:]), np.float32)
        groups: dict[tuple, list[int]] = {}
        for i, sel in enumerate(selections):
            groups.setdefault(sel.layout, []).append(i)
        step = self.objects_per_call(Artifact.MEMORY_ATTENTION, self.max_objects)
        for rows in groups.values():
            for c0 in range(0, len(rows), step):
                chunk = rows[c0 : c0 + step]
                out[chunk] = self._condition_group(feats, [selections[i] for i in chunk])
        return out

    def _condition_group(self, feats: FrameFeatures, sels: list[MemorySelection]) -> np.ndarray:
        first = sels[0]
        shape = first.entries[0].maskmem.data.shape  # type: ignore[union-attr]
        memory = np.empty((len(sels), len(first.entries), *shape), np.float32)
        for i, s in enumerate(sels):
            for j, e in enumerate(s.entries):
                e.maskmem.widen_into(memory[i, j])  # type: ignore[union-attr]
        k = len(first.ptrs)
        ptrs = (np.stack([np.stack(s.ptrs) for s in sels]) if k else
                np.zeros((len(sels), 0, self.config.d_model), np.float32))
        feeds = {
            Tensor.VISION_FEATURES: feats.vision_features,
            Tensor.MEMORY: memory,
            Tensor.MEMORY_TPOS: np.asarray(first.tpos, np.int32),
            Tensor.OBJ_PTRS: ptrs.astype(np.float32, copy=False),
            Tensor.OBJ_PTR_OFFSETS: np.asarray(first.ptr_offsets, np.float32),
        }
        if k:
            return self._infer(Artifact.MEMORY_ATTENTION, feeds)[Tensor.IMAGE_EMBED]
        # No pointer yet: the first frame tracked before an object's only prompt, or the first frame of
        # a reverse pass starting after it. The official attends to the spatial memory alone; the spec's
        # profile starts at one pointer, so the input check is skipped and the graph must take K = 0.
        try:
            return self._infer(Artifact.MEMORY_ATTENTION, feeds, check=False)[Tensor.IMAGE_EMBED]
        except BackendRuntimeError as exc:
            raise BackendRuntimeError(
                f"memory_attention ({self.backend}) cannot run without object pointers (num_obj_ptrs=0), which "
                "tracking needs on the first frame before/after an object's prompts; re-export memory_attention "
                f"with num_obj_ptrs allowed to be 0 ({exc})"
            ) from exc

    # -- prompt decoder ---------------------------------------------------------------------
    def decode(self, embeds: np.ndarray, feats: FrameFeatures, coords: np.ndarray, labels: np.ndarray,
               mask_input: np.ndarray | None, multimask: bool) -> Decoded:
        """embeds [B or 1,256,64,64]; coords [B,P,2] model pixels; labels [B,P]; mask_input
        [B,1,256,256] logits or None -> the official choice of mask, pointer and score."""
        b = coords.shape[0]
        has_mask = np.full((b,), 0.0 if mask_input is None else 1.0, np.float32)
        if mask_input is None:
            mask_input = np.zeros((b, 1, LOW_RES, LOW_RES), np.float32)
        step = self.max_prompts if embeds.shape[0] == 1 else min(self.max_prompts, self.max_decoder_embeds)
        step = self.objects_per_call(Artifact.PROMPT_DECODER, step)
        parts = []
        for c0 in range(0, b, step):
            sl = slice(c0, c0 + step)
            feeds = {
                Tensor.IMAGE_EMBED: embeds[sl] if embeds.shape[0] > 1 else embeds,
                Tensor.HIGH_RES_0: feats.high_res_0,
                Tensor.HIGH_RES_1: feats.high_res_1,
                Tensor.POINT_COORDS: np.ascontiguousarray(coords[sl], np.float32),
                Tensor.POINT_LABELS: np.ascontiguousarray(labels[sl], np.int32),
                Tensor.MASK_INPUT: np.ascontiguousarray(mask_input[sl], np.float32),
                Tensor.HAS_MASK_INPUT: has_mask[sl],
            }
            parts.append(self._infer(Artifact.PROMPT_DECODER, feeds))
        out = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]} if len(parts) > 1 else parts[0]
        return self.choose(out, multimask)

    def choose(self, out: Mapping[str, np.ndarray], multimask: bool) -> Decoded:
        """The official token choice: best-IoU of tokens 1..3 (multimask; its pointer too), else
        token 0 with the stability fallback for the mask and token 0 for the pointer; masks of
        absent objects (score <= 0) become NO_OBJ_SCORE."""
        cfg = self.config
        masks, iou, idx = choose_mask_tokens(out[Tensor.MASKS], out[Tensor.IOU_PREDICTIONS], multimask,
                                       cfg.dynamic_multimask_via_stability, cfg.dynamic_multimask_stability_delta,
                                       cfg.dynamic_multimask_stability_thresh)
        rows = np.arange(masks.shape[0])
        best = np.argmax(iou, axis=-1) if multimask else np.zeros(masks.shape[0], np.int64)
        low = masks[rows, best]
        ptr_token = idx[rows, best] if multimask else np.zeros(masks.shape[0], np.int64)
        obj_ptr = out[Tensor.OBJ_PTR][rows, ptr_token]
        score = out[Tensor.OBJECT_SCORE_LOGITS][:, 0]
        low = np.where(score[:, None, None] > 0, low, np.float32(NO_OBJ_SCORE)).astype(np.float32)
        return Decoded(low, obj_ptr.astype(np.float32), score.astype(np.float32))

    # -- memory encoder ---------------------------------------------------------------------
    def encode_memory(self, feats: FrameFeatures, low_res: np.ndarray, from_points: np.ndarray,
                      object_score: np.ndarray) -> np.ndarray:
        """low_res [B,256,256] logits, from_points [B] bool, object_score [B] -> [B,64,64,64]."""
        parts = []
        step = self.objects_per_call(Artifact.MEMORY_ENCODER, self.max_objects)
        for c0 in range(0, low_res.shape[0], step):
            sl = slice(c0, c0 + step)
            feeds = {
                Tensor.VISION_FEATURES: feats.vision_features,
                Tensor.MASK_LOGITS: np.ascontiguousarray(low_res[sl, None], np.float32),
                Tensor.IS_MASK_FROM_POINTS: np.asarray(from_points[sl], np.float32),
                Tensor.OBJECT_SCORE_LOGITS: np.asarray(object_score[sl], np.float32).reshape(-1, 1),
            }
            parts.append(self._infer(Artifact.MEMORY_ENCODER, feeds)[Tensor.MASKMEM_FEATURES])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _dim_max(runner: Runner, dim: Dim, default: int) -> int:
    """The largest value of ``dim`` the runner's spec allows (the profile's max), or ``default``."""
    found = runner.spec.dims().get(dim.name)
    return found.max if found is not None else default


def use_multimask(num_points: int) -> bool:
    """The official ``_use_multimask`` with the shared config (multimask_output_for_tracking on)."""
    return MULTIMASK_MIN_POINTS <= num_points <= MULTIMASK_MAX_POINTS
