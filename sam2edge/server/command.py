"""``sam2edge serve``: load the model once, say what runs where and why, then serve HTTP.

The model options (--model, --backend, --fallback, --device, --store) are the CLI's shared ones
(sam2edge.cli.common); this module adds the server's and turns both into ServerSettings.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sam2edge.errors import InputError
from sam2edge.server.settings import MiB, ServerSettings

DEFAULT = " (default: %(default)s)"


def add_server_arguments(p: argparse.ArgumentParser) -> None:
    """The server's own options (the model options come from the CLI's shared group)."""
    d = ServerSettings()
    p.add_argument("--host", default=d.host, help="address to bind (default loopback; others need an API key)")
    p.add_argument("--port", type=int, default=d.port, help=DEFAULT.strip())
    key = p.add_mutually_exclusive_group()
    key.add_argument("--api-key", default=None, help="require this key (Bearer header, ?api_key= or body api_key)")
    key.add_argument("--api-key-file", default=None, help="read the key from this file (first line)")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="allow browser requests from ORIGIN (repeatable; default: no CORS)")
    p.add_argument("--media-dir", default=None, help="folder whose videos sessions may open by path")
    p.add_argument("--allow-url-images", action="store_true", help="let clients send images as URLs the server fetches")
    lim = p.add_argument_group("limits")
    lim.add_argument("--max-body-mb", type=float, default=d.max_body_bytes / MiB, help="request body (MiB)" + DEFAULT)
    lim.add_argument("--max-image-pixels", type=int, default=d.max_image_pixels, help="width x height, checked before decoding" + DEFAULT)
    lim.add_argument("--max-prompts", type=int, default=d.max_prompts, help="prompts per request" + DEFAULT)
    lim.add_argument("--max-points", type=int, default=d.max_points, help="points per prompt" + DEFAULT)
    lim.add_argument("--encode-queue", type=int, default=d.encode_queue, help="encodes waiting before 503" + DEFAULT)
    lim.add_argument("--click-queue", type=int, default=d.click_queue, help="clicks waiting before 503" + DEFAULT)
    lim.add_argument("--no-batching", action="store_true", help="decode every click alone (no coalescing)")
    lim.add_argument("--batch-window-ms", type=float, default=d.batch_window_ms, help="how long clicks are collected" + DEFAULT)
    lim.add_argument("--max-batch-prompts", type=int, default=d.max_batch_prompts, help="prompts per decoder call" + DEFAULT)
    lim.add_argument("--cache-entries", type=int, default=d.cache_entries, help="embeddings kept" + DEFAULT)
    lim.add_argument("--cache-mb", type=float, default=d.cache_bytes / MiB, help="embedding cache bytes (MiB)" + DEFAULT)
    lim.add_argument("--max-sessions", type=int, default=d.max_sessions, help="open video sessions" + DEFAULT)
    lim.add_argument("--session-idle-s", type=float, default=d.session_idle_s, help="idle video sessions close after" + DEFAULT)
    lim.add_argument("--max-video-mb", type=float, default=d.max_video_bytes / MiB, help="uploaded video (MiB)" + DEFAULT)
    lim.add_argument("--max-video-frames", type=int, default=d.max_video_frames, help="frames per video" + DEFAULT)
    lim.add_argument("--max-streams", type=int, default=d.max_streams, help="camera WebSocket streams" + DEFAULT)
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    api_key = args.api_key
    if args.api_key_file:
        try:
            api_key = Path(args.api_key_file).read_text().splitlines()[0].strip()
        except (OSError, IndexError) as exc:
            raise InputError(f"--api-key-file {args.api_key_file!r} could not be read or is empty ({exc})") from None
    if api_key is not None and len(api_key) < 8:
        raise InputError("--api-key must be at least 8 characters")
    settings = ServerSettings(
        model=args.model, backend=args.backend, device=args.device,
        strict=args.backend != "auto" and not getattr(args, "fallback", False), store_dir=getattr(args, "store", None),
        host=args.host, port=args.port, api_key=api_key,
        max_body_bytes=int(args.max_body_mb * MiB), max_image_pixels=args.max_image_pixels, max_prompts=args.max_prompts,
        max_points=args.max_points, allow_url_images=args.allow_url_images,
        media_dir=Path(args.media_dir) if args.media_dir else None, cors_origins=tuple(args.cors_origin),
        encode_queue=args.encode_queue, click_queue=args.click_queue, batching=not args.no_batching,
        batch_window_ms=args.batch_window_ms, max_batch_prompts=args.max_batch_prompts, cache_entries=args.cache_entries,
        cache_bytes=int(args.cache_mb * MiB), max_sessions=args.max_sessions, session_idle_s=args.session_idle_s,
        max_video_bytes=int(args.max_video_mb * MiB), max_video_frames=args.max_video_frames, max_streams=args.max_streams,
    )
    try:
        settings.check()
    except ValueError as exc:
        raise InputError(str(exc)) from None
    return settings


def print_startup(settings: ServerSettings, report: dict, video: bool) -> None:
    """What runs on which backend and why: the chosen backend, then every candidate with its reason."""
    details = report.get("report") or {}
    print(f"sam2edge serve: {settings.model} on {report['active_backend']}" + ("" if video else " (images only: no video artifacts)"),
          file=sys.stderr)
    for c in details.get("candidates") or []:
        if isinstance(c, dict):
            mark = "->" if c.get("backend") == report["active_backend"] else ("  " if c.get("admitted") else "--")
            print(f"  {mark} {c.get('backend', '?'):<17} {c.get('reason', '')}", file=sys.stderr)
    for event in details.get("events") or []:
        print(f"  fallback: {event}", file=sys.stderr)
    auth = "API key required" if settings.api_key else "no API key: loopback only"
    print(f"  listening on http://{settings.host}:{settings.port} ({auth}); page at /, metrics at /metrics", file=sys.stderr)


def run_serve(args: argparse.Namespace) -> int:
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError as exc:
        raise InputError(f"sam2edge serve needs the server extra ({exc.name} is missing): pip install 'sam2edge[server]'") from None

    from sam2edge.server.app import create_app, describe_backend
    from sam2edge.server.service import load_model, make_caches

    settings = settings_from_args(args)
    embeddings, logits = make_caches(settings)
    model, video = load_model(settings, embeddings, logits)
    print_startup(settings, describe_backend(model), video)
    app = create_app(settings, model=model, video_available=video, caches=(embeddings, logits))
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level,
                ws_max_size=settings.max_frame_bytes + (1 << 16), timeout_graceful_shutdown=5)
    return 0
