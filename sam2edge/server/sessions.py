"""Video sessions: one tracker per uploaded (or media-folder) video, bounded in count, idle time and bytes.

A session owns a ``model.track(path)`` tracker (whose memory bank is bounded by the library's
``retention="window"``), a frame reader for the page (JPEG frames, separate from the
tracker's own source so playback never moves the tracker), and the uploaded file in a
private temporary folder that is deleted with the session. One operation at a time per
session (a second one while propagating is a 409); ``cancel`` stops a propagation between
two frames. A janitor closes sessions idle for longer than ``session_idle_s``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sam2edge.server.problems import Problem, bad_request, busy, not_found, too_large
from sam2edge.server.settings import ServerSettings

log = logging.getLogger("sam2edge.server")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")


class FrameReader:
    """Frame ``idx`` of a video file or image folder as RGB uint8 (for the page; thread-safe)."""

    def __init__(self, path: Path) -> None:
        import cv2

        self._lock = threading.Lock()
        self.path = path
        self._files: list[Path] | None = None
        self._cap = None
        if path.is_dir():
            key = lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", p.stem)]  # noqa: E731
            self._files = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES), key=key)
        else:
            self._cap = cv2.VideoCapture(str(path))

    @property
    def fps(self) -> float | None:
        import cv2

        return float(self._cap.get(cv2.CAP_PROP_FPS)) or None if self._cap is not None else None

    def read(self, idx: int) -> np.ndarray | None:
        import cv2

        with self._lock:
            if self._files is not None:
                if not 0 <= idx < len(self._files):
                    return None
                bgr = cv2.imread(str(self._files[idx]), cv2.IMREAD_COLOR)
            else:
                self._cap.set(cv2.CAP_PROP_POS_FRAMES, idx)
                ok, bgr = self._cap.read()
                bgr = bgr if ok else None
        return None if bgr is None else bgr[:, :, ::-1]

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()


@dataclass(eq=False)
class VideoSession:
    id: str
    tracker: Any
    reader: FrameReader
    folder: Path | None  # private temporary folder of an upload (deleted on close)
    num_frames: int | None
    height: int
    width: int
    fps: float | None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    cancel: threading.Event = field(default_factory=threading.Event)
    last_used: float = field(default_factory=time.monotonic)

    def touch(self) -> None:
        self.last_used = time.monotonic()

    @property
    def busy(self) -> bool:
        return self.lock.locked()

    def info(self) -> dict[str, Any]:
        return {"session_id": self.id, "num_frames": self.num_frames, "height": self.height, "width": self.width,
                "fps": self.fps, "obj_ids": list(self.tracker.obj_ids), "memory_bytes": int(self.tracker.memory_bytes()),
                "busy": self.busy}


class SessionManager:
    """Creates, finds and closes sessions; never more than ``max_sessions`` open."""

    def __init__(self, settings: ServerSettings, service: Any, on_count: Any = None) -> None:
        self.settings = settings
        self.service = service
        self.sessions: dict[str, VideoSession] = {}
        self._on_count = on_count
        self._janitor: asyncio.Task | None = None
        self._opening = 0

    # -- creation ----------------------------------------------------------------------------
    def admit(self) -> None:
        """503 when no session slot is free (counted before the upload is read)."""
        if not self.service.video_available:
            raise Problem(501, "this model was loaded without its video artifacts; video sessions are unavailable")
        if len(self.sessions) + self._opening >= self.settings.max_sessions:
            raise busy(f"{self.settings.max_sessions} video sessions are open; close one (DELETE "
                       "/video/sessions/{id}) or wait for an idle one to expire", self.settings.retry_after_s)
        self._opening += 1

    def release_admission(self) -> None:
        self._opening -= 1

    def media_path(self, rel: str) -> Path:
        """``rel`` resolved inside the media folder; 400/403 for anything else."""
        root = self.settings.media_dir
        if root is None:
            raise Problem(403, "this server has no media folder (--media-dir): upload the video instead")
        root = Path(root).resolve()
        target = (root / rel).resolve()
        if not target.is_relative_to(root):
            raise Problem(403, f"path {rel!r} is outside the media folder")
        if not target.exists():
            raise not_found(f"no video or frame folder {rel!r} in the media folder")
        return target

    def new_upload_folder(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="sam2edge-video-"))

    async def open(self, path: Path, folder: Path | None) -> VideoSession:
        """Open a tracker over ``path`` on the encode lane (reads the header, checks the limits)."""
        try:
            tracker, reader, meta = await self.service.encode_lane.run(self._open_blocking, path)
        except BaseException:
            if folder is not None:
                shutil.rmtree(folder, ignore_errors=True)
            raise
        session = VideoSession(uuid.uuid4().hex, tracker, reader, folder, *meta)
        self.sessions[session.id] = session
        self._count()
        log.info("video session %s: %s (%s frames, %dx%d)", session.id, path.name, meta[0], meta[2], meta[1])
        return session

    def _open_blocking(self, path: Path) -> tuple[Any, FrameReader, tuple]:
        model = self.service.require()
        s = self.settings
        if path.is_file() and path.suffix.lower() not in VIDEO_SUFFIXES:
            raise bad_request(f"{path.suffix or 'no suffix'}: not a video file ({', '.join(VIDEO_SUFFIXES)})")
        tracker = model.track(str(path))
        try:
            num_frames = tracker.num_frames
            if num_frames is not None and num_frames > s.max_video_frames:
                raise too_large(f"the video has {num_frames} frames; this server accepts at most {s.max_video_frames}")
            h, w = tracker.video_hw
            if h * w > s.max_image_pixels:
                raise too_large(f"video frames are {w}x{h}; this server accepts at most {s.max_image_pixels} pixels")
        except BaseException:
            tracker.close()
            raise
        reader = FrameReader(path)
        return tracker, reader, (num_frames, int(h), int(w), reader.fps)

    # -- lookup and closing ----------------------------------------------------------------------
    def get(self, session_id: str) -> VideoSession:
        session = self.sessions.get(session_id)
        if session is None:
            raise not_found(f"no video session {session_id!r} (closed, expired or never opened)")
        session.touch()
        return session

    def close(self, session_id: str) -> bool:
        session = self.sessions.pop(session_id, None)
        if session is None:
            return False
        session.cancel.set()
        self.service.encode_lane.post(self._close_blocking, session)  # after any frame still running
        self._count()
        return True

    @staticmethod
    def _close_blocking(session: VideoSession) -> None:
        try:
            session.tracker.close()
            session.reader.close()
        finally:
            if session.folder is not None:
                shutil.rmtree(session.folder, ignore_errors=True)

    def close_all(self) -> None:
        for sid in list(self.sessions):
            session = self.sessions.pop(sid)
            self._close_blocking(session)
        self._count()

    def _count(self) -> None:
        if self._on_count is not None:
            self._on_count(len(self.sessions))

    # -- idle expiry ---------------------------------------------------------------------------
    def start(self) -> None:
        self._janitor = asyncio.get_running_loop().create_task(self._expire_loop(), name="sam2edge-session-janitor")

    async def stop(self) -> None:
        if self._janitor is not None:
            self._janitor.cancel()
            await asyncio.gather(self._janitor, return_exceptions=True)
        self.close_all()

    def expire_idle(self) -> list[str]:
        now = time.monotonic()
        idle = [sid for sid, s in self.sessions.items() if not s.busy and now - s.last_used > self.settings.session_idle_s]
        for sid in idle:
            log.info("video session %s closed after %.0f s idle", sid, self.settings.session_idle_s)
            self.close(sid)
        return idle

    async def _expire_loop(self) -> None:
        period = max(0.05, min(self.settings.session_idle_s / 4, 30.0))
        while True:
            await asyncio.sleep(period)
            self.expire_idle()
