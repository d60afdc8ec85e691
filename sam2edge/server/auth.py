"""API key checks: ``Authorization: Bearer KEY``, ``?api_key=KEY`` or ``"api_key"`` in the JSON body.

When the server has no key every request passes (it then listens on loopback only, see
settings.py). Keys are compared with ``hmac.compare_digest`` (constant time, no early exit
on the first differing byte). Open without a key: ``/healthz``, ``/readyz`` and the static page
(it holds no data; it asks the user for the key and sends it as a Bearer header).
"""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import Request

from sam2edge.server.problems import Problem
from sam2edge.server.settings import ServerSettings


def key_in(headers: Any, query: Any) -> str | None:
    """The key a request or WebSocket handshake carries in its header or query, if any."""
    auth = headers.get("authorization")
    if auth:
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return query.get("api_key") or None


def valid(expected: str | None, given: str | None) -> bool:
    if expected is None:
        return True
    if not given:
        return False
    return hmac.compare_digest(given.encode("utf-8"), expected.encode("utf-8"))


def check_request(request: Any, settings: ServerSettings, body_key: str | None = None) -> None:
    """401 unless the request carries the server's key (header, query or body)."""
    if settings.api_key is None:
        return
    given = key_in(request.headers, request.query_params) or body_key
    if not valid(settings.api_key, given):
        raise Problem(401, "missing or wrong API key: send 'Authorization: Bearer <key>', ?api_key=<key> "
                           "or \"api_key\" in the JSON body", {"WWW-Authenticate": "Bearer"})


def require_key(settings: ServerSettings):
    """A FastAPI dependency for routes whose key may only come in the header or query."""

    def dependency(request: Request) -> None:
        check_request(request, settings)

    return dependency
