"""Video object tracking with SAM2's memory, on any backend: offline (``track``) and live (``stream``).

    tracker = model.track("clip.mp4")                  # file, folder of frames, list, iterable
    tracker.add_points(0, obj_id=1, points=[[210, 350]], labels=[1])
    tracker.add_box(12, obj_id=2, box=[300, 0, 500, 400])
    for frame_idx, obj_ids, masks in tracker.propagate():
        ...                                            # masks [O,H,W] bool at the video's size

    stream = model.stream(first_frame, {1: {"box": [10, 20, 200, 220]}})
    result = stream.track(next_frame)                  # FrameResult, memory stays flat

Only runners on the four artifact specs are used (image_encoder, prompt_decoder,
memory_attention, memory_encoder); the host logic is numpy + OpenCV.
"""

from __future__ import annotations

from typing import Any

from sam2edge.backends.torch_runner import make_torch_runners
from sam2edge.contract.artifacts import Artifact
from sam2edge.errors import BackendUnavailableError, EngineMismatchError
from sam2edge.runtime.video.bank import MemoryPolicy, MemorySelection, ObjectMemory
from sam2edge.runtime.video.frames import (
    EndOfVideo,
    FolderSource,
    FrameSource,
    IterableSource,
    PushSource,
    PyAVSource,
    SequenceSource,
    VideoFileSource,
    open_source,
)
from sam2edge.runtime.video.mask_prompt import host_constants_of, torch_model_of
from sam2edge.runtime.video.runners import VideoRunners
from sam2edge.runtime.video.state import FrameResult, MemoryEntry, VideoOptions
from sam2edge.runtime.video.stream import VideoStream
from sam2edge.runtime.video.tracker import VideoTracker

__all__ = [
    "track", "stream", "VideoTracker", "VideoStream", "VideoOptions", "FrameResult", "VideoRunners",
    "FrameSource", "VideoFileSource", "PyAVSource", "FolderSource", "SequenceSource", "IterableSource",
    "PushSource", "EndOfVideo", "open_source", "video_runners", "MemoryEntry", "MemoryPolicy", "MemorySelection", "ObjectMemory",
]


def track(model: Any, source: Any, video_backend: str = "auto", **options: Any) -> VideoTracker:
    """A VideoTracker over ``source`` for a predictor (``model.runners``, ``model.config``).

    source: a video file (``video_backend``: "auto" = PyAV when installed, which names damaged
    frames, else OpenCV; or "pyav" / "opencv"), a folder of images, a list /
    [N,H,W,3] array of frames, or any iterable of frames (one pass). ``options`` are the
    fields of VideoOptions (fill_hole_area, memory_dtype, max_cond_frames, retention,
    preprocessing, input_color_format, num_frames, mask_threshold, prefetch).
    """
    opts = VideoOptions(**options)
    nets = VideoRunners(video_runners(model), model.config)
    src = open_source(source, opts.input_color_format, opts.num_frames, video_backend)
    return VideoTracker(nets, src, model.config, opts, host_constants_of(model))


def stream(model: Any, first_frame: Any, prompts: Any = None, **options: Any) -> VideoStream:
    """A live VideoStream starting at ``first_frame`` with ``prompts``: {obj_id: {"points": [[x, y]],
    "labels": [1], "box": [x0, y0, x1, y1], "mask": HxW}} (any subset per object)."""
    opts = VideoOptions(**options)
    nets = VideoRunners(video_runners(model), model.config)
    return VideoStream(nets, model.config, opts, first_frame, prompts, host_constants_of(model))


def video_runners(model: Any) -> dict[str, Any]:
    """The predictor's runners, completed with the two memory networks when it was loaded for images only
    (``from_pretrained`` without ``video=True``): its backend set builds them on the active backend (the
    same loaded model for PyTorch, the export's ONNX files otherwise); a bare PyTorch runner set gets
    PyTorch runners on its model. They are built once per predictor."""
    runners = dict(model.runners)
    missing = [a for a in (Artifact.MEMORY_ATTENTION, Artifact.MEMORY_ENCODER) if a not in runners]
    if not missing:
        return runners
    decoder = runners.get(Artifact.PROMPT_DECODER)
    owner = getattr(decoder, "owner", None)
    if owner is not None and hasattr(owner, "add_artifacts"):
        try:
            added = owner.add_artifacts(missing)
        except (BackendUnavailableError, EngineMismatchError) as exc:
            raise BackendUnavailableError(
                f"this model was loaded for images and {owner.active_backend} cannot add the video networks {missing} "
                f"({exc}); load it with from_pretrained(..., video=True) from an export with all four artifacts "
                "(`sam2edge export` writes them) or from a checkpoint"
            ) from exc
    else:
        net = torch_model_of(decoder)
        if net is None:
            return runners  # VideoRunners names what is missing and how to load it
        added = make_torch_runners(net, str(getattr(decoder, "device", "cpu")), artifacts=tuple(missing))
    model.runners.update(added)
    runners.update(added)
    return runners
