"""Video sessions over plain HTTP (what the official SAM2 demo's backend offers).

    POST   /video/sessions                      multipart ``file`` upload, or JSON {"path"} in --media-dir
    GET    /video/sessions/{id}                 VideoSessionInfo
    GET    /video/sessions/{id}/frames/{idx}    the frame as JPEG (for the page)
    POST   /video/sessions/{id}/prompts         VideoPromptRequest -> FrameMasks (COCO RLE)
    POST   /video/sessions/{id}/mask            VideoMaskRequest   -> FrameMasks
    POST   /video/sessions/{id}/propagate       PropagateRequest   -> streamed FrameMasks, one per frame:
                                                NDJSON, or server-sent events with Accept: text/event-stream
    POST   /video/sessions/{id}/cancel          stops a running propagation after the current frame
    DELETE /video/sessions/{id}/objects/{obj}   {"obj_ids": [...]} left
    DELETE /video/sessions/{id}                 closes the session, deletes its upload

Every tracker call runs on the encode lane (one accelerator job at a time). A propagation
runs frame by frame, so image requests interleave with it; it stops when the client
disconnects or ``cancel`` is called, and ends with ``{"event": "done" | "cancelled" | "error"}``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from sam2edge.server.auth import require_key
from sam2edge.server.encoding import rle_decode, rle_encode
from sam2edge.server.models import (
    FrameMasks,
    PropagateRequest,
    VideoMaskRequest,
    VideoOpenRequest,
    VideoPromptRequest,
    VideoSessionInfo,
)
from sam2edge.server.problems import Problem, bad_request, body, not_found, problem_of, too_large
from sam2edge.server.sessions import VIDEO_SUFFIXES, SessionManager, VideoSession
from sam2edge.server.settings import ServerSettings

UPLOAD_CHUNK = 1 << 20


def frame_masks(result: Any) -> dict[str, Any]:
    """A tracker FrameResult -> {"frame_idx", "objects": [{"obj_id", "mask" (RLE), "score", "area"}]}."""
    objects = []
    for i, obj_id in enumerate(result.obj_ids):
        mask = result.masks[i]
        objects.append({"obj_id": int(obj_id), "mask": rle_encode(mask), "score": float(result.object_scores[i]),
                        "area": int(mask.sum())})
    return {"frame_idx": int(result.frame_idx), "objects": objects}


def build_router(manager: SessionManager, settings: ServerSettings, metrics: Any) -> APIRouter:
    router = APIRouter(prefix="/video/sessions", dependencies=[Depends(require_key(settings))])
    lane = manager.service.encode_lane

    @router.post("", response_model=VideoSessionInfo, summary="Open a video session (upload or media path)")
    async def open_session(request: Request) -> Any:
        manager.service.require()
        manager.admit()
        try:
            if request.headers.get("content-type", "").startswith("multipart/form-data"):
                folder = manager.new_upload_folder()
                path = await _save_upload(request, folder, settings.max_video_bytes)
            else:
                try:
                    req = VideoOpenRequest.model_validate(await request.json())
                except ValueError as exc:
                    raise bad_request(f"give a multipart 'file' upload or JSON {{\"path\": ...}} ({exc})") from None
                folder, path = None, manager.media_path(req.path)
            session = await manager.open(path, folder)
        finally:
            manager.release_admission()
        return JSONResponse(session.info())

    @router.get("/{session_id}", response_model=VideoSessionInfo)
    async def info(session_id: str) -> Any:
        return JSONResponse(manager.get(session_id).info())

    @router.get("/{session_id}/frames/{frame_idx}", summary="A frame as JPEG",
                responses={200: {"content": {"image/jpeg": {}}}})
    async def frame(session_id: str, frame_idx: int, quality: int = 85) -> Response:
        import asyncio

        import cv2

        session = manager.get(session_id)
        rgb = await asyncio.to_thread(session.reader.read, frame_idx)
        if rgb is None:
            raise not_found(f"no frame {frame_idx} in session {session_id}")
        ok, data = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]),
                                [cv2.IMWRITE_JPEG_QUALITY, int(np.clip(quality, 10, 100))])
        return Response(data.tobytes(), media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"})

    @router.post("/{session_id}/prompts", response_model=FrameMasks, summary="Points and/or a box for one object")
    async def prompts(session_id: str, req: VideoPromptRequest) -> Any:
        session = manager.get(session_id)
        if not req.points and req.box is None:
            raise bad_request("give points and/or a box")
        if len(req.points or []) > settings.max_points:
            raise bad_request(f"{len(req.points or [])} points; this server accepts at most {settings.max_points}")
        points = [[p.x, p.y] for p in req.points] if req.points else None
        labels = [int(p.positive) for p in req.points] if req.points else None
        box = req.box.xyxy() if req.box is not None else None

        def run() -> dict[str, Any]:
            return frame_masks(session.tracker.add_points(req.frame_idx, req.obj_id, points, labels, box=box,
                                                          clear_old_points=req.clear_old_points))

        return JSONResponse(await _exclusive(session, lambda: lane.run(run)))

    @router.post("/{session_id}/mask", response_model=FrameMasks, summary="A mask (COCO RLE) for one object")
    async def mask(session_id: str, req: VideoMaskRequest) -> Any:
        session = manager.get(session_id)
        m = rle_decode(req.mask, "mask", settings.max_image_pixels)
        return JSONResponse(await _exclusive(session, lambda: lane.run(
            lambda: frame_masks(session.tracker.add_mask(req.frame_idx, req.obj_id, m)))))

    @router.post("/{session_id}/propagate", summary="Track every object; results streamed frame by frame")
    async def propagate(session_id: str, req: PropagateRequest, request: Request) -> StreamingResponse:
        session = manager.get(session_id)
        if session.busy:
            raise Problem(409, f"session {session_id} is busy (propagating?); cancel it first")
        sse = "text/event-stream" in request.headers.get("accept", "")
        gen = _propagation(session, req, lane, sse, metrics)
        media = "text/event-stream" if sse else "application/x-ndjson"
        return StreamingResponse(gen, media_type=media, headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @router.post("/{session_id}/cancel")
    async def cancel(session_id: str) -> Any:
        session = manager.get(session_id)
        session.cancel.set()
        return JSONResponse({"session_id": session_id, "cancelling": session.busy})

    @router.delete("/{session_id}/objects/{obj_id}")
    async def remove_object(session_id: str, obj_id: int) -> Any:
        session = manager.get(session_id)
        if obj_id not in session.tracker.obj_ids:
            raise not_found(f"no object {obj_id} in session {session_id}; objects: {list(session.tracker.obj_ids)}")
        left = await _exclusive(session, lambda: lane.run(session.tracker.remove_object, obj_id))
        return JSONResponse({"obj_ids": [int(o) for o in left]})

    @router.delete("/{session_id}")
    async def close(session_id: str) -> Any:
        manager.get(session_id)
        manager.close(session_id)
        return JSONResponse({"closed": session_id})

    return router


async def _exclusive(session: VideoSession, job: Any) -> Any:
    if session.busy:
        raise Problem(409, f"session {session.id} is busy (propagating?); cancel it first")
    async with session.lock:
        result = await job()
    session.touch()
    return result


async def _save_upload(request: Request, folder: Path, max_bytes: int) -> Path:
    """Stream the multipart ``file`` to ``folder``; 413 past ``max_bytes`` (the upload is deleted)."""
    import shutil

    try:
        form = await request.form(max_files=1, max_fields=4)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise bad_request("the multipart body needs a 'file' field with the video")
        suffix = Path(upload.filename or "video.mp4").suffix.lower() or ".mp4"
        if suffix not in VIDEO_SUFFIXES:
            raise bad_request(f"{upload.filename!r}: not a video file ({', '.join(VIDEO_SUFFIXES)})")
        path = folder / f"video{suffix}"
        written = 0
        with path.open("wb") as out:
            while chunk := await upload.read(UPLOAD_CHUNK):
                written += len(chunk)
                if written > max_bytes:
                    raise too_large(f"the video is larger than this server's limit of {max_bytes} bytes")
                out.write(chunk)
        await form.close()
        return path
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


_END = object()


def _next_frame(gen: Any) -> Any:
    return next(gen, _END)


async def _propagation(session: VideoSession, req: PropagateRequest, lane: Any, sse: bool, metrics: Any) -> AsyncIterator[bytes]:
    """Frames as they are tracked, holding the session's lock from the first to the last line."""

    def line(payload: dict[str, Any]) -> bytes:
        text = json.dumps(payload, separators=(",", ":"))
        return f"data: {text}\n\n".encode() if sse else (text + "\n").encode()

    if session.lock.locked():  # another operation got in between the route's check and here
        yield line({"event": "error", "frames": 0, **body(Problem(409, f"session {session.id} is busy"))})
        return
    await session.lock.acquire()
    session.cancel.clear()
    frames, t0, gen = 0, time.perf_counter(), None
    try:
        gen = session.tracker.propagate(req.start_frame_idx, reverse=req.reverse, max_frames=req.max_frames)
        while True:
            if session.cancel.is_set():
                yield line({"event": "cancelled", "frames": frames, "time": time.perf_counter() - t0})
                return
            result = await lane.run(_next_frame, gen)
            if result is _END:
                yield line({"event": "done", "frames": frames, "time": time.perf_counter() - t0})
                return
            frames += 1
            metrics.frames.labels("video").inc()
            session.touch()
            yield line({"event": "frame", **frame_masks(result)})
    except Exception as exc:  # headers are sent already: the error is the stream's last line
        yield line({"event": "error", "frames": frames, **body(problem_of(exc))})
    finally:
        if gen is not None:
            lane.post(gen.close)  # on the lane: after a frame that may still be running
        session.lock.release()
        session.touch()
