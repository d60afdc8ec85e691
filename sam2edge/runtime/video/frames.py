"""Lazy frame sources.

A source decodes one frame when asked and keeps none: a video file (PyAV when installed, else
OpenCV), a folder of images, a sequence the caller already holds, a one-pass iterable (camera,
generator), or frames pushed one at a time by a live stream. Every source returns HWC RGB uint8.

No frame is dropped or replaced quietly (see source_base.py): a frame a file announces but cannot
give raises a VideoError naming it. What each reader can see:

* PyAV (pyav_source.py): missing frames, frames cut short, data errors inside a frame (FFmpeg's
  ``err_detect=explode``), frames the decoder skipped; all named exactly.
* OpenCV: its FFmpeg backend conceals errors (a damaged MJPEG frame comes back partly filled with
  the previous frame's pixels) and offers no error flags, so only a file that ends before the
  frame count in its header is seen, at the first missing frame. ``video_backend="auto"`` uses PyAV
  when it is installed for that reason.
* image folders: a JPEG without its end marker (EOI after the last scan) or a PNG without its IEND
  chunk is a truncated file (libjpeg would pad it with grey); files that do not decode are named.
  Hidden files (``._00001.jpg`` from macOS, dotfiles) are not frames.

Pre-processing is :mod:`sam2edge.runtime.preprocessing` (``kind="video"``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sam2edge.errors import InputError, VideoError
from sam2edge.processing import preprocess
from sam2edge.runtime.video.pyav_source import PyAVSource, import_av
from sam2edge.runtime.video.source_base import EndOfVideo, FrameSource

__all__ = ["EndOfVideo", "FolderSource", "FrameSource", "IterableSource", "PushSource", "PyAVSource", "SequenceSource",
           "VideoFileSource", "VIDEO_BACKENDS", "open_source"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_BACKENDS = ("auto", "pyav", "opencv")
_SEEK_BY_GRAB = 16  # forward gaps up to this many frames are skipped by decoding, not seeking


class VideoFileSource(FrameSource):
    """A video file decoded with OpenCV; sequential reads decode each frame once.

    OpenCV cannot report a damaged frame (see the module docstring): only a file that ends before
    the frame count its header announces is detected, at the first missing frame."""

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__()
        self.path = str(path)
        self._cap = cv2.VideoCapture(self.path)
        if not self._cap.isOpened():
            raise VideoError(f"cannot open video {self.path!r} with OpenCV (missing file or unsupported codec)")
        count = int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT))
        self.num_frames = count if count > 0 else None
        w, h = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.video_hw = (h, w) if w > 0 and h > 0 else None
        self.fps = float(self._cap.get(cv2.CAP_PROP_FPS)) or None
        self._next: int | None = 0  # None: position unknown (after a failed read), the next read seeks

    def read(self, idx: int) -> np.ndarray:
        self._check_index(idx)
        if idx != self._next:
            if self._next is not None and 0 < idx - self._next <= _SEEK_BY_GRAB:
                while self._next < idx and self._cap.grab():
                    self._next += 1
            else:
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, idx)
                self._next = idx
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            self._next = None
            if self.num_frames is not None and idx < self.num_frames:
                raise VideoError(
                    f"{self.path}: frame {idx} cannot be decoded although the file announces {self.num_frames} frames: it is "
                    f"truncated or damaged (frame {idx - 1} may be damaged too; OpenCV does not report damaged frames, "
                    "PyAV does: pip install av)"
                )
            raise EndOfVideo(f"{self.path}: no frame {idx} (end of video)")
        self._next = idx + 1
        return self._seen(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))

    def close(self) -> None:
        self._cap.release()


class FolderSource(FrameSource):
    """A folder of images, ordered by the integer in their names (``00012.jpg``) or by name; hidden
    files (``._00012.jpg``, dotfiles) and folders are not frames."""

    def __init__(self, folder: str | os.PathLike) -> None:
        super().__init__()
        files = [p for p in Path(folder).iterdir()
                 if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()]
        if not files:
            raise VideoError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {str(folder)!r}")
        self.paths = sorted(files, key=_natural_key)
        self.num_frames = len(self.paths)

    def read(self, idx: int) -> np.ndarray:
        self._check_index(idx)
        path = self.paths[idx]
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise VideoError(f"frame {idx} ({path}) cannot be read: {exc.strerror}") from exc
        problem = truncation(data, path.suffix.lower())
        bgr = None if problem else cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        if bgr is None:
            raise VideoError(f"frame {idx} ({path}) is {problem or 'not a readable image'}")
        return self._seen(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


def truncation(data: bytes, suffix: str) -> str | None:
    """Why an image file's bytes are cut short, or None. JPEG: no EOI marker after the last scan
    (SOS); PNG: no IEND chunk. Other formats are left to their decoders (OpenCV refuses them cut)."""
    if suffix in (".jpg", ".jpeg"):
        if not data.startswith(b"\xff\xd8"):
            return "not a JPEG (no start-of-image marker)"
        if data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda"):
            return f"a truncated JPEG ({len(data)} bytes, no end-of-image marker after its image data)"
    if suffix == ".png" and data.startswith(b"\x89PNG") and data.rfind(b"IEND") < 0:
        return f"a truncated PNG ({len(data)} bytes, no IEND chunk)"
    return None


def _natural_key(path: Path) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.stem)) + (path.suffix,)


class SequenceSource(FrameSource):
    """Frames the caller already holds (list or [N,H,W,3] array); converted one at a time."""

    def __init__(self, frames: Sequence[Any], color_format: str) -> None:
        super().__init__()
        self._frames = frames
        self._fmt = color_format
        self.num_frames = len(frames)

    def read(self, idx: int) -> np.ndarray:
        self._check_index(idx)
        return self._seen(preprocess.to_rgb_uint8(self._frames[idx], self._fmt, name=f"frames[{idx}]"))


class IterableSource(FrameSource):
    """A one-pass iterable (generator, camera): frames are taken in order and never revisited.

    ``num_frames``, when given, is a promise: an iterable that ends before it raises a VideoError
    naming the first missing frame (without it, its end is simply the end of the video)."""

    seekable = False

    def __init__(self, frames: Iterable[Any], color_format: str, num_frames: int | None = None) -> None:
        super().__init__()
        self._it = iter(frames)
        self._fmt = color_format
        self.num_frames = num_frames
        self._announced = num_frames
        self._next = 0

    def unreachable(self, idx: int) -> str | None:
        fix = (f"pass a list, a video file or a folder to prompt any frame, or start the iterable at the prompted "
               f"frame (itertools.islice(frames, {idx}, None))")
        if idx == self._next:
            return None
        if idx < self._next:
            return f"frame {idx} was already consumed from a one-pass iterable (the next frame is {self._next}); {fix}"
        return (f"frame {idx} is ahead of a one-pass iterable (the next frame is {self._next}): reaching it would consume "
                f"frames {self._next}..{idx - 1} for good; {fix}")

    def read(self, idx: int) -> np.ndarray:
        if idx < self._next:
            raise VideoError(
                f"frame {idx} was already consumed from a one-pass iterable (next is {self._next}); "
                "pass a file, folder or list to revisit frames"
            )
        while True:
            try:
                frame = next(self._it)
            except StopIteration:
                if self._announced is not None and self._next < self._announced:
                    raise VideoError(f"frame {self._next} is missing: the iterable ended after {self._next} frames, "
                                     f"num_frames={self._announced} was given") from None
                self.num_frames = self._next
                raise EndOfVideo(f"the iterable ended after {self._next} frames") from None
            self._next += 1
            if self._next - 1 == idx:
                return self._seen(preprocess.to_rgb_uint8(frame, self._fmt, name=f"frame {idx}"))
            del frame


class PushSource(FrameSource):
    """Frames handed over one at a time by a live stream: only the current frame is held, until released.

    ``push`` checks and converts the frame before anything changes; ``unpush`` takes back the last
    push (its frame was not tracked), ``release`` drops the frame once its features exist."""

    seekable = False

    def __init__(self, color_format: str) -> None:
        super().__init__()
        self._fmt = color_format
        self._pending: tuple[int, np.ndarray] | None = None
        self.count = 0

    def push(self, frame: Any) -> int:
        idx = self.count
        rgb = self._seen(preprocess.to_rgb_uint8(frame, self._fmt, name=f"frame {idx}"))
        self._pending = (idx, rgb)
        self.count += 1
        return idx

    def unpush(self, idx: int) -> None:
        if idx == self.count - 1:
            self.count -= 1
            self._pending = None

    def release(self) -> None:
        self._pending = None

    def unreachable(self, idx: int) -> str | None:
        if idx == self.count - 1:
            return None
        return f"frame {idx} is not the current frame of the stream ({self.count - 1}); only the current frame can be prompted"

    def read(self, idx: int) -> np.ndarray:
        if self._pending is None or self._pending[0] != idx:
            raise VideoError(f"frame {idx} of the stream is no longer available (only the current frame is)")
        return self._pending[1]


def open_source(source: Any, color_format: str = "bgr", num_frames: int | None = None,
                video_backend: str = "auto") -> FrameSource:
    """A FrameSource for a video path, a folder, a sequence of frames or an iterable.

    video_backend (video files): "pyav" (names damaged frames), "opencv", or "auto" = PyAV when
    it is installed, else OpenCV."""
    if video_backend not in VIDEO_BACKENDS:
        raise InputError(f"video_backend must be one of {VIDEO_BACKENDS}, got {video_backend!r}")
    if isinstance(source, FrameSource):
        return source
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if path.is_dir():
            return FolderSource(path)
        if not path.is_file():
            raise VideoError(f"video source {str(source)!r} is neither a file nor a folder")
        if video_backend == "auto":
            video_backend = "pyav" if _has_av() else "opencv"
        return PyAVSource(path) if video_backend == "pyav" else VideoFileSource(path)
    if isinstance(source, np.ndarray):
        if source.ndim != 4:
            raise InputError(f"a frames array must be [N,H,W,3], got shape {source.shape}")
        return SequenceSource(source, color_format)
    if isinstance(source, list | tuple):
        return SequenceSource(source, color_format)
    if isinstance(source, Iterable):
        return IterableSource(source, color_format, num_frames)
    raise InputError(f"cannot read frames from a {type(source).__name__}; give a path, a folder, a list or an iterable")


def _has_av() -> bool:
    try:
        import_av()
    except VideoError:
        return False
    return True
