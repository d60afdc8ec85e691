"""A video file decoded with PyAV, strictly: a frame that is missing or damaged raises a VideoError naming it.

What FFmpeg does with a damaged file when nobody asks (both OpenCV's FFmpeg backend and PyAV's
defaults): a frame whose data is cut or corrupt is decoded as far as it goes and the rest of the
picture keeps the previous frame's pixels (MJPEG) or grey; a frame the demuxer cannot find is
skipped, and every later frame moves up one index; a file cut short just ends early. This reader
asks, at three levels:

* at open, every packet is listed (demuxed, not decoded: one quick pass over the file). That gives
  the exact number of frames and each frame's timestamp and keyframe flag, so frame ``i`` is the
  frame with the ``i``-th smallest timestamp, whatever the decoder does. A container that announces
  more frames than it holds, or whose demuxing fails part-way, raises at the first missing frame;
  a packet the demuxer marks corrupt (cut short) raises when its frame is read;
* decoding runs with FFmpeg's ``err_detect=explode``: the decoder stops at the first data error in
  a frame instead of concealing it, and the error names that frame;
* a decoded frame flagged corrupt, or a frame the decoder never produced (the next one came
  first), raises too.

Random access seeks to the nearest keyframe at or before the frame (every frame of an intra-only
codec like MJPEG), so a damaged frame does not prevent reading the others.

Decoding uses FFmpeg's threads (as OpenCV does). A frame decoded in parallel may report its error
while a later packet is sent, so on the first decoding error the reader switches to one thread and
decodes again from the keyframe before, which names the damaged frame exactly.

What no reader can see: damage inside an H.264/HEVC frame that still parses (the codec has no
checksums; FFmpeg conceals it even with ``explode``). Intra-only formats (MJPEG) and any container
truncation are caught.
"""

from __future__ import annotations

import bisect
import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from sam2edge.errors import VideoError
from sam2edge.runtime.video.source_base import FrameSource

_DECODE_FORWARD = 16  # forward gaps up to this many frames are decoded through rather than sought


def import_av() -> Any:
    try:
        import av
    except ImportError as exc:
        raise VideoError("video_backend='pyav' needs PyAV: pip install 'sam2edge[video]'") from exc
    return av


class PyAVSource(FrameSource):
    """A video file decoded with PyAV (see the module docstring); frames are RGB uint8."""

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__()
        self._av = import_av()
        self.path = str(path)
        self._threaded = True  # until a decoding error: then one thread, to name the frame exactly
        self._container = self._open()
        stream = self._container.streams.video[0]
        self.fps = float(stream.average_rate) if stream.average_rate else None
        self.announced = int(stream.frames or 0)  # 0: the container does not say
        self._damage = ""  # why demuxing stopped early, if it did
        self._pts, keyframes, corrupt = self._list_packets(stream)
        self._index_of = {t: i for i, t in enumerate(self._pts)}
        self._keyframes = sorted(self._index_of[t] for t in keyframes)
        self._corrupt = {self._index_of[t] for t in corrupt}
        held = len(self._pts)
        # A damaged container of unknown length: one more frame than it held, so reading on raises.
        self.num_frames = max(held, self.announced) + (1 if self._damage and not self.announced else 0)
        self._container.close()
        self._container = self._open()
        self._restart(None)

    # -- opening and listing ----------------------------------------------------------------
    def _open(self) -> Any:
        try:
            container = self._av.open(self.path)
        except self._av.error.FFmpegError as exc:
            raise VideoError(f"cannot open video {self.path!r} with PyAV: {exc}") from exc
        if not container.streams.video:
            container.close()
            raise VideoError(f"{self.path!r} has no video stream")
        stream = container.streams.video[0]
        stream.codec_context.options = {"err_detect": "explode"}  # raise on data errors, do not conceal
        if self._threaded:
            stream.thread_type = "AUTO"
        return container

    def _list_packets(self, stream: Any) -> tuple[list[int], list[int], list[int]]:
        """Timestamps of every frame in presentation order, those of keyframes and of corrupt packets."""
        pts: list[int] = []
        keyframes: list[int] = []
        corrupt: list[int] = []
        try:
            for packet in self._container.demux(stream):
                if packet.size == 0:  # the end-of-stream flush packet
                    continue
                t = packet.pts if packet.pts is not None else packet.dts
                if t is None:
                    raise VideoError(f"{self.path!r}: a packet has no timestamp; read it with video_backend='opencv'")
                pts.append(int(t))
                if packet.is_keyframe:
                    keyframes.append(int(t))
                if packet.is_corrupt:
                    corrupt.append(int(t))
        except self._av.error.FFmpegError as exc:
            self._damage = f"the container is damaged after {len(pts)} frames ({exc})"
        if len(set(pts)) != len(pts):
            raise VideoError(f"{self.path!r}: two frames share a timestamp; read it with video_backend='opencv'")
        return sorted(pts), keyframes, corrupt

    # -- reading ------------------------------------------------------------------------------
    def read(self, idx: int) -> np.ndarray:
        self._check_index(idx)
        if idx >= len(self._pts):
            why = self._damage or f"the file announces {self.announced} frames but holds {len(self._pts)}: truncated"
            raise VideoError(f"{self.path}: frame {idx} is missing: {why}")
        if idx in self._corrupt:
            raise VideoError(f"{self.path}: frame {idx} is damaged: its data is cut short (a truncated or corrupt file)")
        at = bisect.bisect_right(self._keyframes, idx)
        key = self._keyframes[at - 1] if at else 0
        if idx < self._next or idx - self._next > _DECODE_FORWARD or key > self._next:
            self._restart(key)
        while True:
            try:
                frame = self._decode_next(idx)
            except _DecodeFailure as failure:
                if not self._threaded:
                    raise VideoError(str(failure)) from failure.__cause__
                self._threaded = False  # decode again on one thread: the error then names its own frame
                self._container.close()
                self._container = self._open()
                at = bisect.bisect_right(self._keyframes, min(self._next, idx))
                self._restart(self._keyframes[at - 1] if at else None)
                continue
            got = self._index_of.get(int(frame.pts)) if frame.pts is not None else self._next
            if got is None:
                raise VideoError(f"{self.path}: the decoder produced a frame with an unknown timestamp while reading frame {idx}")
            if got > self._next:  # the decoder dropped a frame it could not decode
                raise VideoError(f"{self.path}: frame {self._next} could not be decoded (the decoder went on to frame {got})")
            self._next = got + 1
            if frame.is_corrupt:
                raise VideoError(f"{self.path}: frame {got} is damaged (the decoder flagged it corrupt)")
            if got == idx:
                return self._seen(frame.to_ndarray(format="rgb24"))

    def _restart(self, key: int | None) -> None:
        """Position the demuxer at keyframe ``key`` (None: the start, where the file was just opened)."""
        stream = self._container.streams.video[0]
        if key is not None:
            try:
                self._container.seek(self._pts[key], stream=stream, backward=True, any_frame=False)
            except self._av.error.FFmpegError as exc:
                raise VideoError(f"{self.path}: cannot seek to frame {key} ({exc})") from exc
        self._packets: Iterator[Any] = self._container.demux(stream)
        self._queue: list[Any] = []
        first = self._pts[key] if key is not None else None
        self._next = 0 if first is None else self._index_of[first]

    def _decode_next(self, target: int) -> Any:
        while not self._queue:
            try:
                packet = next(self._packets)
            except StopIteration:
                raise VideoError(f"{self.path}: the file ended before frame {target} ({self._damage or 'truncated?'})") from None
            except self._av.error.FFmpegError as exc:
                raise VideoError(f"{self.path}: frame {self._next} cannot be read: {exc}") from exc
            try:
                frames = packet.decode()
            except self._av.error.FFmpegError as exc:
                which = self._index_of.get(int(packet.pts)) if packet.pts is not None else None
                which = self._next if which is None else which
                needed = "" if which == target else f" (needed to decode frame {target})"
                raise _DecodeFailure(f"{self.path}: frame {which} cannot be decoded{needed}: {exc}; the file is damaged") from exc
            # a backward seek may land before the keyframe asked for: frames before it are not wanted
            frames = [f for f in frames if f.pts is None or self._index_of.get(int(f.pts), self._next) >= self._next]
            self._queue.extend(frames)
        return self._queue.pop(0)

    def close(self) -> None:
        self._container.close()


class _DecodeFailure(Exception):
    """A decoding error inside PyAVSource (becomes a VideoError once it names its frame exactly)."""
