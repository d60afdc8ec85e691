"""Every file the commands write: checked before the model runs, checked again when written.

A path that cannot be written (a missing permission, a folder under a file, ``/proc``), an
extension no writer handles, a lossy format for a mask, or the input image itself is refused
with one line naming the option before any work is done; a write that still fails raises the
same way. Nothing is reported as written that is not on disk.

Overlay videos are written to play in a browser: ``.mp4`` as H.264 and ``.webm`` as VP9, both with
PyAV (its wheels bundle libx264 and libvpx); without PyAV, ``.webm`` falls back to OpenCV's VP9
writer (its wheel has VP9 but no H.264 encoder; much slower). ``.avi`` (MJPEG) is accepted for
tools, with a warning that browsers do not play it.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from sam2edge.errors import InputError

MASK_FORMATS = (".png", ".bmp", ".tif", ".tiff")  # lossless: the mask is exactly 0 and 255
LOSSY_FORMATS = (".jpg", ".jpeg", ".jpe", ".jp2", ".webp", ".avif", ".heic")
VIDEO_FORMATS = (".mp4", ".webm", ".avi")


def check_file_target(path: str | os.PathLike, option: str, inputs: tuple[str | os.PathLike, ...] = ()) -> Path:
    """A file the command will write: its folder can be made, the file can be created, it is no input."""
    target = Path(path)
    for src in inputs:
        same = target.resolve() == Path(src).resolve()
        if not same and target.exists() and Path(src).exists():
            same = os.path.samefile(src, target)  # a hard link or another spelling of the same file
        if same:
            raise InputError(f"{option} {path} is the input image; write to another file")
    if target.is_dir():
        raise InputError(f"{option} {path} is a folder; expected a file path")
    _make_folder(target.parent, option, path)
    existed = target.exists()
    try:
        with open(target, "ab"):
            pass
    except OSError as exc:
        raise InputError(f"{option} {path} cannot be written: {exc.strerror}") from None
    if not existed:
        target.unlink(missing_ok=True)
    return target


def check_folder_target(path: str | os.PathLike, option: str) -> Path:
    """A folder the command will write files into (made if missing)."""
    folder = Path(path)
    _make_folder(folder, option, path)
    probe = folder / f".sam2edge-write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
    except OSError as exc:
        raise InputError(f"{option} {path} is not writable: {exc.strerror}") from None
    probe.unlink(missing_ok=True)
    return folder


def _make_folder(folder: Path, option: str, given: Any) -> None:
    for parent in (folder, *folder.parents):
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{option} {given}: {parent} is a file, not a folder")
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"{option} {given}: cannot create the folder {folder} ({exc.strerror})") from None


def check_mask_path(path: str | os.PathLike, option: str, inputs: tuple[str | os.PathLike, ...] = ()) -> Path:
    """A mask file: a lossless image format (values stay exactly 0 and 255)."""
    suffix = Path(path).suffix.lower()
    if suffix in LOSSY_FORMATS:
        raise InputError(f"{option} {path}: {suffix} is lossy (a mask would come out with values like 0-6 and 249-255); "
                         f"use one of {', '.join(MASK_FORMATS)}")
    if suffix not in MASK_FORMATS:
        raise InputError(f"{option} {path}: unknown mask format {suffix or '(no extension)'}; use one of {', '.join(MASK_FORMATS)}")
    return check_file_target(path, option, inputs)


def check_image_path(path: str | os.PathLike, option: str, inputs: tuple[str | os.PathLike, ...] = ()) -> Path:
    """A picture (an overlay): any format OpenCV writes."""
    if not cv2.haveImageWriter(str(path)):
        raise InputError(f"{option} {path}: no image writer for {Path(path).suffix or '(no extension)'}; use .png or .jpg")
    return check_file_target(path, option, inputs)


def write_image(path: str | os.PathLike, image: np.ndarray, option: str) -> None:
    """cv2.imwrite, with its failure (it returns False or raises) turned into one line naming the option."""
    try:
        ok = cv2.imwrite(str(path), image)
    except cv2.error as exc:
        raise InputError(f"{option} {path} cannot be written: {str(exc).strip().splitlines()[-1]}") from None
    if not ok or not Path(path).is_file():
        raise InputError(f"{option} {path} cannot be written (the image writer failed)")


def check_video_path(path: str | os.PathLike, option: str = "--overlay") -> Path:
    suffix = Path(path).suffix.lower()
    if suffix not in VIDEO_FORMATS:
        raise InputError(f"{option} {path}: unknown video format {suffix or '(no extension)'}; use .mp4 (H.264) or .webm (VP9), "
                         "which play in browsers")
    if suffix == ".mp4" and _av() is None:
        raise InputError(f"{option} {path}: H.264 .mp4 needs PyAV (pip install 'sam2edge[video]'; OpenCV's wheel has no H.264 "
                         "encoder); or write .webm")
    if suffix == ".avi":
        print(f"sam2edge: warning: {option} {path}: .avi (MJPEG) does not play in browsers; .mp4 or .webm do", file=sys.stderr)
    return check_file_target(path, option)


def _av() -> Any:
    try:
        import av
    except ImportError:
        return None
    return av


class VideoWriter:
    """BGR frames -> a video file by extension (see the module docstring); ``close`` checks the result."""

    CODECS = {".mp4": ("libx264", {"preset": "veryfast", "crf": "20"}),
              ".webm": ("libvpx-vp9", {"deadline": "realtime", "cpu-used": "8", "crf": "32", "b": "0"})}

    def __init__(self, path: str | os.PathLike, width: int, height: int, fps: float, option: str = "--overlay") -> None:
        self.path, self.option, self.frames = Path(path), option, 0
        suffix = self.path.suffix.lower()
        self._size = (width + width % 2, height + height % 2)  # 4:2:0 chroma needs even sides
        self._av = _av() if suffix in self.CODECS else None
        self._cv = None
        self._errors: tuple[type[BaseException], ...] = (OSError, ValueError)
        if self._av is not None:
            self._errors += (self._av.error.FFmpegError,)
        try:
            if self._av is not None:
                codec, options = self.CODECS[suffix]
                self._container = self._av.open(str(self.path), "w")
                self._stream = self._container.add_stream(codec, rate=_rate(fps))
                self._stream.width, self._stream.height = self._size
                self._stream.pix_fmt = "yuv420p"
                self._stream.options = options
            else:
                fourcc = "VP90" if suffix == ".webm" else "MJPG"
                self._cv = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*fourcc), fps, self._size)
                if not self._cv.isOpened():
                    raise OSError(f"OpenCV cannot open a {fourcc} writer there")
        except self._errors as exc:
            raise InputError(f"{option} {path} cannot be written: {exc}") from None

    def write(self, bgr: np.ndarray) -> None:
        pad_w, pad_h = self._size[0] - bgr.shape[1], self._size[1] - bgr.shape[0]
        if pad_w or pad_h:
            bgr = cv2.copyMakeBorder(bgr, 0, pad_h, 0, pad_w, cv2.BORDER_REPLICATE)
        try:
            if self._cv is not None:
                self._cv.write(bgr)
            else:
                for packet in self._stream.encode(self._av.VideoFrame.from_ndarray(bgr, format="bgr24")):
                    self._container.mux(packet)
        except self._errors as exc:
            raise InputError(f"{self.option} {self.path}: writing frame {self.frames} failed: {exc}") from None
        self.frames += 1

    def close(self) -> None:
        """Finish the file; raise if it is not there or empty."""
        try:
            if self._cv is not None:
                self._cv.release()
            else:
                for packet in self._stream.encode():
                    self._container.mux(packet)
                self._container.close()
        except self._errors as exc:
            raise InputError(f"{self.option} {self.path}: finishing the video failed: {exc}") from None
        if self.frames and (not self.path.is_file() or self.path.stat().st_size == 0):
            raise InputError(f"{self.option} {self.path} was not written (the video writer failed)")

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            if self._cv is not None:
                self._cv.release()
            else:
                self._container.close()


def _rate(fps: float) -> Any:
    from fractions import Fraction

    return Fraction(fps).limit_denominator(1001) if fps and fps > 0 else Fraction(30)
