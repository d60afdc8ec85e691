"""Pure ASGI middleware: the body-size limit (before the body is read) and request metrics.

The limit is checked twice: against ``Content-Length`` before anything is read (a 413 at
once), and while the body streams in (a chunked or lying client is cut off at the limit).
Pure ASGI rather than ``BaseHTTPMiddleware`` so streamed responses (propagation) pass through
untouched.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from starlette.exceptions import HTTPException

from sam2edge.server.metrics import Metrics

Scope = dict[str, Any]


class _TooLarge(HTTPException):
    """Raised from ``receive``: FastAPI re-raises HTTPExceptions from body parsing unchanged, so
    the client gets this 413 (any other exception there would become a generic 400)."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body is larger than this server's limit of {limit} bytes")


async def _send_json(send: Callable, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """413 for bodies above ``limit_for(path)`` bytes."""

    def __init__(self, app: Any, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope.get("path", ""))
        length = dict(scope.get("headers") or []).get(b"content-length")
        message = {"message": f"request body is larger than this server's limit of {limit} bytes", "status": 413}
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await _send_json(send, 400, {"message": "Content-Length is not a number", "status": 400})
                return
            if declared > limit:
                await _send_json(send, 413, message)
                return
        received = 0
        started = False

        async def limited_receive() -> dict[str, Any]:
            nonlocal received
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > limit:
                    raise _TooLarge(limit)
            return msg

        async def tracking_send(msg: dict[str, Any]) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _send_json(send, 413, message)


class RequestMetrics:
    """Counts every HTTP request by route template, method and status, and times it to the last byte."""

    def __init__(self, app: Any, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def recording_send(msg: dict[str, Any]) -> None:
            nonlocal status
            if msg["type"] == "http.response.start":
                status = int(msg["status"])
            await send(msg)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = scope.get("route")
            name = getattr(route, "path", None) or "unmatched"
            self.metrics.observe_request(name, scope.get("method", "?"), status, time.perf_counter() - t0)
