"""The app factory: ``create_app(settings)`` -> a FastAPI app serving one model.

    GET  /                 the click-to-segment page (static, no build step)
    GET  /healthz          {"status": "ok"} while the process serves requests
    GET  /readyz           200 {"ready": true, ...} once the model is loaded, else 503
    GET  /info             model, backend report, limits (API key required when set)
    GET  /metrics          Prometheus text format (API key required when set)
    POST /sam2/embed_image, /sam2/segment_image      Roboflow-compatible (roboflow.py)
    /video/sessions/...                             video sessions (video.py)
    WS   /stream                                    camera stream (stream.py)

The model is either given (``model=``, as ``sam2edge serve`` does after printing what runs
where) or loaded in a background thread at start-up, so /healthz answers while it loads.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from contextlib import asynccontextmanager
from dataclasses import asdict
from importlib import resources
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from sam2edge.server import roboflow, stream, video
from sam2edge.server.auth import require_key
from sam2edge.server.metrics import Metrics
from sam2edge.server.middleware import BodyLimit, RequestMetrics
from sam2edge.server.problems import install_handlers
from sam2edge.server.service import ModelService
from sam2edge.server.sessions import SessionManager
from sam2edge.server.settings import ServerSettings

log = logging.getLogger("sam2edge.server")


def static_dir() -> str:
    return str(resources.files("sam2edge.server") / "static")


def describe_backend(model: Any) -> dict[str, Any]:
    """The model's backend report as plain JSON (whatever shape the library gives)."""
    report = model.backend_report()
    if hasattr(report, "to_dict"):
        report = report.to_dict()
    elif hasattr(report, "__dataclass_fields__"):
        report = asdict(report)
    return {"active_backend": model.active_backend, "report": _jsonable(report)}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def create_app(settings: ServerSettings, model: Any = None, video_available: bool = True, loader: Any = None,
               caches: tuple[Any, Any] | None = None) -> FastAPI:
    """A FastAPI app for ``settings``.

    ``model``: already loaded (then ``caches`` must be the (embeddings, logits) caches it was
    loaded with, from ``service.make_caches``); otherwise ``loader(service)`` (default:
    ``service.load``) runs in a background thread at start-up.
    """
    metrics = Metrics()
    service = ModelService(settings, on_depth=metrics.set_depth, on_batch=metrics.batch_size.observe, caches=caches)
    sessions = SessionManager(settings, service, on_count=metrics.sessions.set)
    if model is not None:
        service.set_model(model, video_available)

    def state() -> dict[str, Any]:
        return {"caches": {"embeddings": service.embeddings_cache.stats(), "logits": service.logits_cache.stats()},
                "backend": service.model.active_backend if service.model is not None else None,
                "model": settings.model, "ready": service.model is not None}

    metrics.add_state(state)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service.batcher.start()
        sessions.start()
        if service.model is None:
            target = (lambda: loader(service)) if loader is not None else service.load
            threading.Thread(target=target, name="sam2edge-model-loader", daemon=True).start()
        try:
            yield
        finally:
            await sessions.stop()
            await service.batcher.stop()
            service.close()

    app = FastAPI(title="sam2edge", version=_version(), lifespan=lifespan,
                  description="SAM2 segmentation server: Roboflow-compatible image API, video sessions, camera stream")
    app.state.service, app.state.sessions, app.state.metrics = service, sessions, metrics
    install_handlers(app)
    keyed = [Depends(require_key(settings))]

    @app.get("/healthz")
    async def healthz() -> Any:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> Any:
        if service.model is None:
            msg = f"the model failed to load: {service.load_error}" if service.load_error else "the model is loading"
            return JSONResponse({"ready": False, "message": msg, "status": 503}, status_code=503,
                                headers={"Retry-After": "5"})
        return {"ready": True, "model": settings.model, "backend": service.model.active_backend,
                "video": service.video_available}

    @app.get("/info", dependencies=keyed)
    async def info() -> Any:
        model = service.require()
        limits = {k: v for k, v in asdict(settings).items() if k not in ("api_key", "model", "host", "port")}
        return JSONResponse(_jsonable({"model": settings.model, "video": service.video_available,
                                       **describe_backend(model), "limits": limits}))

    @app.get("/metrics", dependencies=keyed)
    async def metrics_endpoint() -> Response:
        data, content_type = await asyncio.to_thread(metrics.render)
        return Response(data, media_type=content_type)

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(f"{static_dir()}/index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=static_dir()), name="static")
    app.include_router(roboflow.build_router(service, settings))
    app.include_router(video.build_router(sessions, settings, metrics))
    app.include_router(stream.build_router(service, settings, metrics))
    if settings.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])
    upload_paths = ("/video/sessions",)
    app.add_middleware(BodyLimit, limit_for=lambda path: settings.max_video_bytes + (1 << 16)
                       if path in upload_paths else settings.max_body_bytes)
    app.add_middleware(RequestMetrics, metrics=metrics)
    return app


def _version() -> str:
    from sam2edge import __version__

    return __version__
