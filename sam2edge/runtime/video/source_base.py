"""What every frame source is: random or sequential access to RGB uint8 frames, holding none.

A source tells apart the two ways reading can stop: :class:`EndOfVideo` past the end of a video
whose end is legitimately there, and a plain :class:`~sam2edge.errors.VideoError` naming the frame
when a frame the source announced cannot be produced (a truncated or damaged file, an iterable
shorter than its announced length). The tracker stops quietly only on the first.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from sam2edge.errors import VideoError


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
        """Frame ``idx`` as HWC RGB uint8; EndOfVideo past the end, VideoError naming a frame that cannot be read."""

    def unreachable(self, idx: int) -> str | None:
        """Why reading frame ``idx`` now would lose frames (a one-pass source), or None when it would not."""
        return None

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
