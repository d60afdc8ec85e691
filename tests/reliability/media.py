"""Small media files written in tmp dirs, and ways to damage them (truncate, corrupt, hide)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from tests.video.clip import make_clip

SOI, SOS = b"\xff\xd8\xff", b"\xff\xda"


def clip_frames(n: int = 10, height: int = 48, width: int = 64) -> list[np.ndarray]:
    """RGB uint8 frames of the synthetic two-object clip."""
    return make_clip(n, height, width).frames


def write_mjpeg(path: Path, frames: list[np.ndarray], fps: float = 5.0) -> Path:
    """An MJPEG AVI (one JPEG per frame: easy to damage one frame on purpose)."""
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def frame_spans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) byte offsets of each JPEG frame of an MJPEG AVI (end = the next frame's start)."""
    starts = [i for i in range(len(data) - 2) if data[i : i + 3] == SOI]
    return list(zip(starts, starts[1:] + [len(data)]))


def truncate_inside_frame(src: Path, dst: Path, k: int) -> Path:
    """``src`` cut in the middle of frame ``k``'s JPEG data."""
    data = src.read_bytes()
    start, end = frame_spans(data)[k]
    dst.write_bytes(data[: start + (end - start) // 2])
    return dst


def corrupt_frame(src: Path, dst: Path, k: int, n: int = 300, seed: int = 0) -> Path:
    """``src`` with ``n`` random bytes over frame ``k``'s entropy-coded data (its headers and the
    container stay intact: the file still announces and holds every frame)."""
    data = bytearray(src.read_bytes())
    start, _ = frame_spans(bytes(data))[k]
    at = bytes(data).index(SOS, start) + 14
    data[at : at + n] = np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(data))
    return dst


def write_folder(folder: Path, frames: list[np.ndarray], ext: str = ".jpg") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, f in enumerate(frames):
        path = folder / f"{i:05d}{ext}"
        assert cv2.imwrite(str(path), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths


def cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
