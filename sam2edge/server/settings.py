"""Server settings: every limit in one frozen dataclass, with the defaults ``sam2edge serve`` uses.

Limits are checked before the work they protect: body bytes before the body is read in full,
image pixels from the file header before the pixels are decoded, prompt counts before any
model call, queue depths before a job is queued.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from pathlib import Path

MiB = 1 << 20


@dataclass(frozen=True)
class ServerSettings:
    """What one ``sam2edge serve`` process runs and how far it lets clients go.

    model / backend / device / strict / store_dir: as ``AutoModel.from_pretrained`` (name, checkpoint or
        export folder; a named backend is strict unless the CLI's --fallback).
    api_key: required on every endpoint but /healthz, /readyz and the static page when set.
    max_body_bytes: request body limit (JSON, uploads use max_video_bytes), answered with 413.
    max_image_pixels: width x height limit read from the image header before decoding (413).
    max_prompts / max_points: prompts per request and points per prompt (400).
    allow_url_images: fetch ``{"type": "url"}`` images (off: an appliance should not make requests
        on a client's behalf); url_timeout_s bounds such a fetch.
    media_dir: folder whose videos sessions may open by path (None: uploads only).
    cors_origins: allowed browser origins (empty: no CORS headers at all).
    encode_queue / click_queue: jobs waiting for the accelerator before 503 + Retry-After.
    batching / batch_window_ms / max_batch_prompts: coalescing of clicks on one cached image into
        one decoder call (see batching.py).
    cache_entries / cache_bytes / logits_cache_entries: the embedding and low-res logits caches.
    max_sessions / session_idle_s / max_video_bytes / max_video_frames: video sessions.
    max_streams / max_frame_bytes: camera WebSocket streams.
    """

    model: str = "sam2.1_hiera_tiny"
    backend: str = "auto"
    device: str | None = None
    strict: bool = False
    store_dir: str | None = None
    host: str = "127.0.0.1"
    port: int = 9001
    api_key: str | None = None
    max_body_bytes: int = 32 * MiB
    max_image_pixels: int = 40_000_000
    max_prompts: int = 64
    max_points: int = 30
    allow_url_images: bool = False
    url_timeout_s: float = 10.0
    media_dir: Path | None = None
    cors_origins: tuple[str, ...] = field(default_factory=tuple)
    encode_queue: int = 8
    click_queue: int = 256
    batching: bool = True
    batch_window_ms: float = 3.0
    max_batch_prompts: int = 64
    cache_entries: int = 64
    cache_bytes: int = 2048 * MiB
    logits_cache_entries: int = 1024
    max_sessions: int = 4
    session_idle_s: float = 600.0
    max_video_bytes: int = 256 * MiB
    max_video_frames: int = 5000
    max_streams: int = 2
    max_frame_bytes: int = 8 * MiB
    retry_after_s: int = 1

    def check(self) -> None:
        """Refuse settings that would be unsafe or cannot work (ValueError with the fix)."""
        if not is_loopback(self.host) and not self.api_key:
            raise ValueError(
                f"refusing to listen on {self.host!r} without an API key: anyone on that network could use the "
                "model; pass --api-key or --api-key-file (or bind 127.0.0.1)"
            )
        for name in ("max_body_bytes", "max_image_pixels", "max_prompts", "max_points", "encode_queue", "click_queue",
                     "max_batch_prompts", "max_sessions", "max_video_bytes", "max_video_frames", "max_streams",
                     "max_frame_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_window_ms < 0:
            raise ValueError(f"batch_window_ms must be >= 0, got {self.batch_window_ms}")
        if self.media_dir is not None and not Path(self.media_dir).is_dir():
            raise ValueError(f"media_dir {str(self.media_dir)!r} is not a folder")


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:  # a name: loopback only if every address it resolves to is
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0]).is_loopback for info in infos)
