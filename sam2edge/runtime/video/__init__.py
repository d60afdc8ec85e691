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
from sam2edge.runtime.video.mask_prompt import host_constants_of
from sam2edge.runtime.video.runners import VideoRunners
from sam2edge.runtime.video.state import FrameResult, MemoryEntry, VideoOptions
from sam2edge.runtime.video.stream import VideoStream
from sam2edge.runtime.video.tracker import VideoTracker

__all__ = [
    "track", "stream", "VideoTracker", "VideoStream", "VideoOptions", "FrameResult", "VideoRunners",
    "FrameSource", "VideoFileSource", "PyAVSource", "FolderSource", "SequenceSource", "IterableSource",
    "PushSource", "EndOfVideo", "open_source", "video_runners", "MemoryEntry", "MemoryPolicy", "MemorySelection", "ObjectMemory",
]


def track(model: Any, source: Any, video_backend: str = "opencv", **options: Any) -> VideoTracker:
    """A VideoTracker over ``source`` for a predictor (``model.runners``, ``model.config``).

    source: a video file (OpenCV, or ``video_backend="pyav"``), a folder of images, a list /
    [N,H,W,3] array of frames, or any iterable of frames (one pass). ``options`` are the
    fields of VideoOptions (fill_hole_area, memory_dtype, max_cond_frames, retention,
    preprocessing, input_color_format, num_frames, mask_threshold).
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
    """The predictor's runners, completed with PyTorch memory runners when it has only the image
    artifacts but runs on PyTorch (its decoder runner holds the whole SAM2Model)."""
    runners = dict(model.runners)
    missing = [a for a in (Artifact.MEMORY_ATTENTION, Artifact.MEMORY_ENCODER) if a not in runners]
    decoder = runners.get(Artifact.PROMPT_DECODER)
    net = getattr(getattr(decoder, "module", None), "model", None)
    if missing and net is not None:
        runners.update(make_torch_runners(net, str(getattr(decoder, "device", "cpu")), artifacts=tuple(missing)))
        model.runners.update({a: runners[a] for a in missing})  # build once per predictor
    return runners
