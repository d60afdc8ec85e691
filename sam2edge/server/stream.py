"""``WS /stream``: live tracking for robots and cameras over one WebSocket.

Protocol (every server message is a JSON text message):

1. the client sends a text message ``{"prompts": [{"obj_id", "points": [{x, y, positive}],
   "box": {x, y, width, height}}]}`` (StreamConfig);
2. then frames, each one binary message holding an encoded image (JPEG, PNG, ...);
3. the server answers each frame with ``{"event": "frame", "frame_idx", "objects": [{"obj_id",
   "mask" (COCO RLE), "score", "area"}], "time"}``: the first frame with the prompted masks
   (``model.stream(first_frame, prompts)``), every later one with ``stream.track(frame)``;
4. a text message after the first frame corrects or adds objects on the last frame received
   and is answered with that frame's masks again.

Errors are ``{"event": "error", "message", "status"}`` and leave the stream open; the API key
goes in the ``Authorization`` header or ``?api_key=`` of the handshake (a wrong one closes
the socket with code 1008 before accepting). At most ``max_streams`` streams (1013 beyond).
"""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from pydantic import ValidationError

from sam2edge.server.auth import key_in, valid
from sam2edge.server.images import decode_image_bytes
from sam2edge.server.models import StreamConfig, StreamPrompt
from sam2edge.server.problems import bad_request, body, problem_of, too_large
from sam2edge.server.settings import ServerSettings
from sam2edge.server.video import frame_masks

POLICY_VIOLATION, TRY_AGAIN_LATER = 1008, 1013


def prompt_kwargs(p: StreamPrompt, max_points: int) -> dict[str, Any]:
    """A StreamPrompt -> keyword arguments of the library's stream prompts (points, labels, box)."""
    if not p.points and p.box is None:
        raise bad_request(f"object {p.obj_id}: give points and/or a box")
    if len(p.points or []) > max_points:
        raise bad_request(f"object {p.obj_id}: {len(p.points or [])} points; this server accepts at most {max_points}")
    out: dict[str, Any] = {}
    if p.points:
        out["points"] = [[q.x, q.y] for q in p.points]
        out["labels"] = [int(q.positive) for q in p.points]
    if p.box is not None:
        out["box"] = p.box.xyxy()
    return out


class _Stream:
    """The state of one connection: prompts waiting for a frame, then the library's VideoStream."""

    def __init__(self, service: Any, settings: ServerSettings) -> None:
        self.service = service
        self.settings = settings
        self.pending: list[StreamPrompt] = []
        self.stream: Any = None

    def on_text(self, text: str) -> dict[str, Any] | None:
        try:
            config = StreamConfig.model_validate(json.loads(text))
        except (ValueError, ValidationError) as exc:
            raise bad_request(f"a text message must be {{\"prompts\": [...]}} ({exc})") from None
        for p in config.prompts:
            prompt_kwargs(p, self.settings.max_points)  # checked now, before any frame
        if self.stream is None:
            self.pending = list(config.prompts)
            return None
        result = None
        for p in config.prompts:
            result = self.stream.add_prompt(p.obj_id, **prompt_kwargs(p, self.settings.max_points))
        return None if result is None else frame_masks(result)

    def on_frame(self, data: bytes) -> dict[str, Any]:
        if len(data) > self.settings.max_frame_bytes:
            raise too_large(f"frame of {len(data)} bytes; this server accepts at most {self.settings.max_frame_bytes}")
        rgb = decode_image_bytes(data, self.settings.max_image_pixels)
        if self.stream is None:
            if not self.pending:
                raise bad_request('send {"prompts": [...]} before the first frame')
            prompts = {p.obj_id: prompt_kwargs(p, self.settings.max_points) for p in self.pending}
            self.stream = self.service.require().stream(rgb, prompts, input_color_format="rgb")
            return frame_masks(self.stream.first_result)
        return frame_masks(self.stream.track(rgb))

    def close(self) -> None:
        if self.stream is not None:
            self.stream.close()
            self.stream = None


def build_router(service: Any, settings: ServerSettings, metrics: Any) -> APIRouter:
    router = APIRouter()
    active = {"n": 0}

    @router.websocket("/stream")
    async def stream(ws: WebSocket) -> None:
        if not valid(settings.api_key, key_in(ws.headers, ws.query_params)):
            await ws.close(code=POLICY_VIOLATION, reason="missing or wrong API key")
            return
        if active["n"] >= settings.max_streams:
            await ws.close(code=TRY_AGAIN_LATER, reason=f"{settings.max_streams} streams are open")
            return
        active["n"] += 1
        metrics.streams.set(active["n"])
        state = _Stream(service, settings)
        try:
            await ws.accept()
            while True:
                msg = await ws.receive()
                if msg["type"] == "websocket.disconnect":
                    break
                t0 = time.perf_counter()
                try:
                    if msg.get("text") is not None:
                        out = await service.encode_lane.run(state.on_text, msg["text"])
                        reply = {"event": "prompts", "pending": len(state.pending)} if out is None else {"event": "frame", **out}
                    else:
                        reply = {"event": "frame", **await service.encode_lane.run(state.on_frame, msg.get("bytes") or b"")}
                        metrics.frames.labels("stream").inc()
                except Exception as exc:
                    reply = {"event": "error", **body(problem_of(exc))}
                reply["time"] = time.perf_counter() - t0
                await ws.send_text(json.dumps(reply, separators=(",", ":")))
        except WebSocketDisconnect:
            pass
        finally:
            active["n"] -= 1
            metrics.streams.set(active["n"])
            service.encode_lane.post(state.close)

    return router
