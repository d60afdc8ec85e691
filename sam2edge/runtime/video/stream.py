"""Live tracking: one frame in, every object's masks out, memory bounded.

The stream is the tracker over frames pushed one at a time (``PushSource``): a frame is
checked, pre-processed, encoded and released before ``track`` returns; only the current frame's
features and each object's bounded memory bank stay. A ``track`` or a prompt that fails (a bad
frame, a backend error) changes nothing: the frame is taken back and the stream goes on from the
frame before it. The video length is unknown, so object
pointers are normalised as for a video of 16 frames or more (the official ``min(num_frames,
16) - 1``), and the bank anchors only at the current frame (no one can prompt the past).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sam2edge.config import ModelConfig
from sam2edge.errors import InputError
from sam2edge.runtime.video.frames import PushSource
from sam2edge.runtime.video.runners import VideoRunners
from sam2edge.runtime.video.state import FrameResult, VideoOptions
from sam2edge.runtime.video.tracker import VideoTracker

PROMPT_KEYS = ("points", "labels", "box", "mask")


class VideoStream:
    """``stream.track(frame) -> FrameResult`` for a live source; prompts on the current frame."""

    def __init__(self, nets: VideoRunners, config: ModelConfig, options: VideoOptions, first_frame: Any,
                 prompts: Mapping[int, Mapping[str, Any]] | None = None,
                 host_constants: Any = None) -> None:
        if options.num_frames is not None:
            raise InputError("a stream has no known length; do not pass num_frames")
        self._source = PushSource(options.input_color_format)
        self.tracker = VideoTracker(nets, self._source, config, options, host_constants, streaming=True)
        self.frame_idx = self._source.push(first_frame)
        self.tracker._features_for(self.frame_idx)  # decode + encode the first frame now
        self._source.release()
        self.first_result: FrameResult | None = None
        for obj_id, prompt in (prompts or {}).items():
            self.first_result = self.add_prompt(obj_id, **_prompt_kwargs(obj_id, prompt))

    @property
    def obj_ids(self) -> list[int]:
        return self.tracker.obj_ids

    def add_prompt(self, obj_id: int, points: Any = None, labels: Any = None, box: Any = None,
                   mask: Any = None) -> FrameResult:
        """Prompts for one object on the current frame: a new object, or a correction of a
        tracked one (decoded with its memory). Returns every object's masks on that frame."""
        if mask is not None:
            if points is not None or box is not None:
                raise InputError(f"object {obj_id}: give either a mask or points/box, not both")
            return self.tracker.add_mask(self.frame_idx, obj_id, mask)
        return self.tracker.add_points(self.frame_idx, obj_id, points, labels, box=box)

    def add_points(self, obj_id: int, points: Any, labels: Any) -> FrameResult:
        return self.add_prompt(obj_id, points=points, labels=labels)

    def add_box(self, obj_id: int, box: Any, points: Any = None, labels: Any = None) -> FrameResult:
        return self.add_prompt(obj_id, points=points, labels=labels, box=box)

    def add_mask(self, obj_id: int, mask: Any) -> FrameResult:
        return self.add_prompt(obj_id, mask=mask)

    def remove_object(self, obj_id: int) -> list[int]:
        return self.tracker.remove_object(obj_id)

    def track(self, frame: Any) -> FrameResult:
        """Track every object on the next frame (HWC uint8, ``input_color_format`` order)."""
        idx = self._source.push(frame)  # checks the frame before anything changes
        try:
            if not self.tracker.obj_ids:  # nothing to track yet; the frame stays available for prompts
                result = self.tracker._consolidate(idx, True)
            else:
                result = self.tracker.step(idx)
                self._source.release()
        except BaseException:
            self._source.unpush(idx)
            self.tracker.drop_features(idx)
            raise
        self.frame_idx = idx
        return result

    def memory_bytes(self) -> int:
        return self.tracker.memory_bytes()

    def close(self) -> None:
        self.tracker.close()

    def __enter__(self) -> VideoStream:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _prompt_kwargs(obj_id: int, prompt: Any) -> dict[str, Any]:
    if not isinstance(prompt, Mapping):
        raise InputError(f"prompts[{obj_id}] must be a dict with keys from {PROMPT_KEYS}, got {type(prompt).__name__}")
    unknown = set(prompt) - set(PROMPT_KEYS)
    if unknown:
        raise InputError(f"prompts[{obj_id}] has unknown keys {sorted(unknown)}; expected {PROMPT_KEYS}")
    return dict(prompt)
