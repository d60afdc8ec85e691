"""Lazy frame sources and the video pre-processing.

A source decodes one frame when asked and keeps none: a video file (OpenCV, or PyAV when
installed), a folder of images, a sequence the caller already holds, a one-pass iterable
(camera, generator), or frames pushed one at a time by a live stream. Every source returns
HWC RGB uint8.
Pre-processing is :mod:`sam2edge.runtime.preprocessing` (``kind="video"``).
"""

from __future__ import annotations

import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sam2edge.errors import InputError, VideoError
from sam2edge.processing import preprocess

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_SEEK_BY_GRAB = 16  # forward gaps up to this many frames are skipped by decoding, not seeking


class EndOfVideo(VideoError):
    """A source has no frame at the requested index (its end was reached)."""


class FrameSource(ABC):
    """Random or sequential access to RGB uint8 frames; holds no decoded frame."""

    seekable: bool = True

    def __init__(self) -> None:
        self.num_frames: int | None = None
        self.video_hw: tuple[int, int] | None = None
        self.fps: float | None = None

    @abstractmethod
    def read(self, idx: int) -> np.ndarray:
        """Frame ``idx`` as HWC RGB uint8; EndOfVideo past the end."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def _check_index(self, idx: int) -> None:
        if idx < 0 or (self.num_frames is not None and idx >= self.num_frames):
            raise EndOfVideo(f"frame {idx} is outside the video (0..{(self.num_frames or 0) - 1})")

    def _seen(self, rgb: np.ndarray) -> np.ndarray:
        hw = (int(rgb.shape[0]), int(rgb.shape[1]))
        if self.video_hw is None:
            self.video_hw = hw
        elif hw != self.video_hw:
            raise VideoError(f"frame size changed from {self.video_hw} to {hw}; all frames must have one size")
        return rgb


class VideoFileSource(FrameSource):
    """A video file decoded with OpenCV; sequential reads decode each frame once."""

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
        self._next = 0

    def read(self, idx: int) -> np.ndarray:
        self._check_index(idx)
        if idx != self._next:
            if 0 < idx - self._next <= _SEEK_BY_GRAB:
                while self._next < idx and self._cap.grab():
                    self._next += 1
            else:
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, idx)
                self._next = idx
        ok, bgr = self._cap.read()
        if not ok or bgr is None:
            raise EndOfVideo(f"{self.path}: no frame {idx} (end of video)")
        self._next = idx + 1
        return self._seen(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))

    def close(self) -> None:
        self._cap.release()


class PyAVSource(FrameSource):
    """A video file decoded with PyAV (sequential; seeking re-opens the container)."""

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__()
        try:
            import av
        except ImportError as exc:
            raise VideoError("video_backend='pyav' needs PyAV: pip install 'sam2edge[video]'") from exc
        self.path = str(path)
        self._av = av
        self._open()
        stream = self._container.streams.video[0]
        self.num_frames = int(stream.frames) or None
        self.fps = float(stream.average_rate) if stream.average_rate else None

    def _open(self) -> None:
        self._container = self._av.open(self.path)
        self._frames: Iterator[Any] = self._container.decode(video=0)
        self._next = 0

    def read(self, idx: int) -> np.ndarray:
        self._check_index(idx)
        if idx < self._next:
            self._container.close()
            self._open()
        for frame in self._frames:
            self._next += 1
            if self._next - 1 == idx:
                return self._seen(frame.to_ndarray(format="rgb24"))
        raise EndOfVideo(f"{self.path}: no frame {idx} (end of video)")

    def close(self) -> None:
        self._container.close()


class FolderSource(FrameSource):
    """A folder of images, ordered by the integer in their names (``00012.jpg``) or by name."""

    def __init__(self, folder: str | os.PathLike) -> None:
        super().__init__()
        files = [p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]
        if not files:
            raise VideoError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in folder {str(folder)!r}")
        self.paths = sorted(files, key=_natural_key)
        self.num_frames = len(self.paths)

    def read(self, idx: int) -> np.ndarray:
        self._check_index(idx)
        bgr = cv2.imread(str(self.paths[idx]), cv2.IMREAD_COLOR)
        if bgr is None:
            raise VideoError(f"cannot read image {self.paths[idx]}")
        return self._seen(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))


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
    """A one-pass iterable (generator, camera): frames are taken in order and never revisited."""

    seekable = False

    def __init__(self, frames: Iterable[Any], color_format: str, num_frames: int | None = None) -> None:
        super().__init__()
        self._it = iter(frames)
        self._fmt = color_format
        self.num_frames = num_frames
        self._next = 0

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
                self.num_frames = self._next
                raise EndOfVideo(f"the iterable ended after {self._next} frames") from None
            self._next += 1
            if self._next - 1 == idx:
                return self._seen(preprocess.to_rgb_uint8(frame, self._fmt, name=f"frame {idx}"))
            del frame


class PushSource(FrameSource):
    """Frames handed over one at a time by a live stream; each is released once read."""

    seekable = False

    def __init__(self, color_format: str) -> None:
        super().__init__()
        self._fmt = color_format
        self._pending: tuple[int, Any] | None = None
        self.count = 0

    def push(self, frame: Any) -> int:
        idx = self.count
        self._pending = (idx, frame)
        self.count += 1
        return idx

    def read(self, idx: int) -> np.ndarray:
        if self._pending is None or self._pending[0] != idx:
            raise VideoError(f"frame {idx} of the stream is no longer available (only the current frame is)")
        frame = self._pending[1]
        self._pending = None
        return self._seen(preprocess.to_rgb_uint8(frame, self._fmt, name=f"frame {idx}"))


def open_source(source: Any, color_format: str = "bgr", num_frames: int | None = None,
                video_backend: str = "opencv") -> FrameSource:
    """A FrameSource for a video path, a folder, a sequence of frames or an iterable."""
    if isinstance(source, FrameSource):
        return source
    if isinstance(source, str | os.PathLike):
        path = Path(source)
        if path.is_dir():
            return FolderSource(path)
        if not path.is_file():
            raise VideoError(f"video source {str(source)!r} is neither a file nor a folder")
        if video_backend == "pyav":
            return PyAVSource(path)
        if video_backend != "opencv":
            raise InputError(f"video_backend must be 'opencv' or 'pyav', got {video_backend!r}")
        return VideoFileSource(path)
    if isinstance(source, np.ndarray):
        if source.ndim != 4:
            raise InputError(f"a frames array must be [N,H,W,3], got shape {source.shape}")
        return SequenceSource(source, color_format)
    if isinstance(source, list | tuple):
        return SequenceSource(source, color_format)
    if isinstance(source, Iterable):
        return IterableSource(source, color_format, num_frames)
    raise InputError(f"cannot read frames from a {type(source).__name__}; give a path, a folder, a list or an iterable")
