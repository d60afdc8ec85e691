"""One interaction script, run on the official SAM2VideoPredictor and on our tracker.

Each implementation is wrapped in a small driver with the same four verbs (points, box, mask,
propagate); every call returns ``[(tag, frame_idx, {obj_id: (video_mask [H,W] bool,
low_res_logits [256,256] float32)})]`` so the two runs can be compared event by event. For
the official predictor the low-res logits are read from its inference state, in the order
its own consolidation uses (temporary outputs of this call's kind, then conditioning, then
non-conditioning outputs).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

Event = tuple[str, int, dict[int, tuple[np.ndarray, np.ndarray]]]


class OfficialDriver:
    def __init__(self, predictor: Any, folder: str) -> None:
        import torch

        self.torch = torch
        self.pred = predictor
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.state = predictor.init_state(folder)

    def _after_prompt(self, tag: str, frame: int, obj_id: int, is_cond: bool, out: Any) -> list[Event]:
        _, obj_ids, video_masks = out
        st = self.state
        key = "cond_frame_outputs" if is_cond else "non_cond_frame_outputs"
        result = {}
        for i, oid in enumerate(obj_ids):
            idx = st["obj_id_to_idx"][oid]
            entry = st["temp_output_dict_per_obj"][idx][key].get(frame)
            for k in ("cond_frame_outputs", "non_cond_frame_outputs"):
                entry = entry or st["output_dict_per_obj"][idx][k].get(frame)
            low = np.full((256, 256), -1024.0, np.float32) if entry is None else entry["pred_masks"][0, 0].numpy()
            result[oid] = (video_masks[i, 0].numpy() > 0, low)
        return [(tag, frame, result)]

    def _is_cond(self, frame: int, obj_id: int) -> bool:
        idx = self.state["obj_id_to_idx"].get(obj_id)
        return idx is None or frame not in self.state["frames_tracked_per_obj"][idx]

    def points(self, frame: int, obj_id: int, points, labels, clear_old_points: bool = True) -> list[Event]:
        is_cond = self._is_cond(frame, obj_id)
        with self.torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = self.pred.add_new_points_or_box(self.state, frame, obj_id, points=points, labels=labels,
                                                  clear_old_points=clear_old_points)
        return self._after_prompt("points", frame, obj_id, is_cond, out)

    def box(self, frame: int, obj_id: int, box, points=None, labels=None) -> list[Event]:
        is_cond = self._is_cond(frame, obj_id)
        with self.torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = self.pred.add_new_points_or_box(self.state, frame, obj_id, points=points, labels=labels, box=box)
        return self._after_prompt("box", frame, obj_id, is_cond, out)

    def mask(self, frame: int, obj_id: int, mask: np.ndarray) -> list[Event]:
        is_cond = self._is_cond(frame, obj_id)
        with self.torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = self.pred.add_new_mask(self.state, frame, obj_id, mask)
        return self._after_prompt("mask", frame, obj_id, is_cond, out)

    def propagate(self, start: int | None = None, reverse: bool = False, max_frames: int | None = None) -> list[Event]:
        events = []
        st = self.state
        with self.torch.inference_mode(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for frame, obj_ids, video_masks in self.pred.propagate_in_video(st, start, max_frames, reverse):
                result = {}
                for i, oid in enumerate(obj_ids):
                    per_obj = st["output_dict_per_obj"][st["obj_id_to_idx"][oid]]
                    entry = per_obj["cond_frame_outputs"].get(frame) or per_obj["non_cond_frame_outputs"][frame]
                    result[oid] = (video_masks[i, 0].numpy() > 0, entry["pred_masks"][0, 0].numpy().copy())
                events.append(("propagate", frame, result))
        return events


class OursDriver:
    def __init__(self, tracker: Any) -> None:
        self.tracker = tracker

    @staticmethod
    def _event(tag: str, res: Any) -> Event:
        return (tag, res.frame_idx, {oid: (res.masks[i], res.low_res_logits[i]) for i, oid in enumerate(res.obj_ids)})

    def points(self, frame, obj_id, points, labels, clear_old_points=True):
        return [self._event("points", self.tracker.add_points(frame, obj_id, points, labels,
                                                              clear_old_points=clear_old_points))]

    def box(self, frame, obj_id, box, points=None, labels=None):
        return [self._event("box", self.tracker.add_box(frame, obj_id, box, points, labels))]

    def mask(self, frame, obj_id, mask):
        return [self._event("mask", self.tracker.add_mask(frame, obj_id, mask))]

    def propagate(self, start=None, reverse=False, max_frames=None):
        return [self._event("propagate", r) for r in self.tracker.propagate(start, reverse, max_frames)]


def run(driver: Any, steps: list[tuple[str, dict]]) -> list[Event]:
    events: list[Event] = []
    for verb, kwargs in steps:
        events += getattr(driver, verb)(**kwargs)
    return events


def iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def compare(ours: list[Event], ref: list[Event]) -> tuple[float, float, list[str]]:
    """(worst IoU, worst low-res logit max-abs diff, per-event lines)."""
    assert [(e[0], e[1], sorted(e[2])) for e in ours] == [(e[0], e[1], sorted(e[2])) for e in ref], \
        "the two runs produced different event sequences"
    worst_iou, worst_diff, lines = 1.0, 0.0, []
    for (tag, frame, mine), (_, _, theirs) in zip(ours, ref):
        parts = []
        for oid in sorted(mine):
            j = iou(mine[oid][0], theirs[oid][0])
            d = float(np.abs(mine[oid][1] - theirs[oid][1]).max())
            worst_iou, worst_diff = min(worst_iou, j), max(worst_diff, d)
            parts.append(f"obj{oid} IoU {j:.4f} dlogit {d:.2e} area {int(mine[oid][0].sum())}/{int(theirs[oid][0].sum())}")
        lines.append(f"{tag:9s} frame {frame}: " + "; ".join(parts))
    return worst_iou, worst_diff, lines


def patch_official_bf16_memory(predictor: Any) -> None:
    """Let the official predictor run in fp32 on the CPU when an object has no pointer yet.

    It stores memory features in bfloat16 and relies on ``torch.cat`` with the (fp32) object
    pointers to widen them back; with no pointer in the memory (the first frame tracked before
    an object's only prompt, or the first frame of a reverse pass that starts after it) the
    bf16 memory reaches ``v_proj`` unchanged and fp32 CPU inference fails with "mat1 and mat2
    must have the same dtype" (on a GPU its bf16 autocast hides it). Widening the memory to
    fp32 is exactly what the concatenation does in every other frame, so nothing else changes.
    """
    attention = predictor.memory_attention
    original = attention.forward

    def forward(curr, memory, curr_pos=None, memory_pos=None, num_obj_ptr_tokens=0):
        return original(curr, memory.float(), curr_pos, memory_pos, num_obj_ptr_tokens)

    attention.forward = forward
