"""Every error the server answers with: a status code and a JSON body ``{"message": ...}``, never a trace.

* 400: bad input; for a library ``Sam2EdgeError`` the message is the library's own text
  (it names the argument, what was expected and what came).
* 401: missing or wrong API key.  403: a path outside the media folder (or no media folder).
* 404: unknown session / object / frame / route.  409: a video session busy propagating.
* 413: body, image pixels, video or frame bigger than the server's limit.
* 501: video requested from a model loaded without its video artifacts.
* 503 (+ ``Retry-After``): a full queue, too many sessions or streams, or the model still loading.
* 500: anything else; the details go to the server log only.
"""

from __future__ import annotations

import logging
from typing import Any

from sam2edge.errors import BackendRuntimeError, BackendUnavailableError, Sam2EdgeError

log = logging.getLogger("sam2edge.server")


class Problem(Exception):
    """An error with its HTTP status, raised anywhere in the server and answered as JSON."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def bad_request(message: str) -> Problem:
    return Problem(400, message)


def too_large(message: str) -> Problem:
    return Problem(413, message)


def busy(message: str, retry_after_s: int = 1) -> Problem:
    return Problem(503, message, {"Retry-After": str(max(1, int(retry_after_s)))})


def not_found(message: str) -> Problem:
    return Problem(404, message)


def problem_of(exc: BaseException) -> Problem:
    """The Problem an exception is answered with (library errors -> 400, backend failures -> 503)."""
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, BackendUnavailableError | BackendRuntimeError):
        log.error("backend failure: %s", exc)
        return Problem(503, f"the accelerator failed: {exc}", {"Retry-After": "5"})
    if isinstance(exc, Sam2EdgeError):
        return Problem(400, str(exc))
    log.exception("internal error", exc_info=exc)
    return Problem(500, "internal server error (see the server log)")


def body(problem: Problem) -> dict[str, Any]:
    return {"message": problem.message, "status": problem.status}


def install_handlers(app: Any) -> None:
    """JSON bodies for every error FastAPI / Starlette could raise, and for ours."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException as StarletteHTTPException

    def respond(p: Problem) -> JSONResponse:
        return JSONResponse(body(p), status_code=p.status, headers=p.headers)

    @app.exception_handler(Problem)
    async def _problem(request: Any, exc: Problem) -> JSONResponse:
        return respond(exc)

    @app.exception_handler(Sam2EdgeError)
    async def _library(request: Any, exc: Sam2EdgeError) -> JSONResponse:
        return respond(problem_of(exc))

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Any, exc: RequestValidationError) -> JSONResponse:
        return respond(Problem(400, "invalid request: " + "; ".join(_describe(e) for e in exc.errors()[:5])))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Any, exc: StarletteHTTPException) -> JSONResponse:
        return respond(Problem(exc.status_code, str(exc.detail), dict(exc.headers or {})))

    @app.exception_handler(Exception)
    async def _other(request: Any, exc: Exception) -> JSONResponse:
        return respond(problem_of(exc))


def _describe(error: dict[str, Any]) -> str:
    where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
    return f"{where or 'body'}: {error.get('msg', 'invalid')}"
