"""``POST /sam2/embed_image`` and ``POST /sam2/segment_image``, as Roboflow's inference server.

See models.py for the request and response shapes and every difference from Roboflow.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from sam2edge.cache import PromptKey
from sam2edge.server.auth import check_request
from sam2edge.server.batching import Click, Decoded
from sam2edge.server.encoding import encode_mask, npz_bytes
from sam2edge.server.images import decode_request_image
from sam2edge.server.models import (
    Sam2EmbeddingRequest,
    Sam2EmbeddingResponse,
    Sam2Prompt,
    Sam2SegmentationRequest,
    Sam2SegmentationResponse,
)
from sam2edge.server.problems import bad_request
from sam2edge.server.service import ModelService
from sam2edge.server.settings import ServerSettings

LOW_RES = 256


def build_router(service: ModelService, settings: ServerSettings) -> APIRouter:
    router = APIRouter()

    def decoder_for(image: Any):
        if image is None:
            return None
        return lambda: decode_request_image(image, settings.max_image_pixels, settings.max_body_bytes,
                                            settings.allow_url_images, settings.url_timeout_s)

    @router.post("/sam2/embed_image", response_model=Sam2EmbeddingResponse, summary="Embed an image (Roboflow format)")
    async def embed_image(req: Sam2EmbeddingRequest, request: Request) -> Any:
        check_request(request, settings, req.api_key)
        t0 = time.perf_counter()
        if req.image is None and not req.image_id:
            raise bad_request("give an image (and optionally an image_id to cache it under)")
        image_id, _, _ = await service.embedding(req.image_id, decoder_for(req.image))
        return JSONResponse({"image_id": image_id, "time": time.perf_counter() - t0})

    @router.post("/sam2/segment_image", response_model=Sam2SegmentationResponse,
                 summary="Segment an image from prompts (Roboflow format)")
    async def segment_image(req: Sam2SegmentationRequest, request: Request) -> Any:
        check_request(request, settings, req.api_key)
        t0 = time.perf_counter()
        prompts = check_prompts(req.prompts.prompts, settings)
        if req.image is None and not req.image_id:
            raise bad_request("give an image, or the image_id of an embedded image")
        image_id, emb, _ = await service.embedding(req.image_id, decoder_for(req.image))
        load, save = req.cache_flags()
        hw = tuple(int(v) for v in emb.image_size_hw)
        clicks = [click_of(i, p, image_id, emb, hw, req.multimask_output, req.format == "binary",
                           service.logits_cache if load else None) for i, p in enumerate(prompts)]
        results = await service.decode(clicks)
        if save:
            for click, res in zip(clicks, results):
                service.logits_cache.save(image_id, mask_prompt(click), np.clip(res.low_res[res.best], -32, 32)[None])
        # The answer is encoded (RLE, polygons or npz) off the event loop, in the default thread pool.
        # With the encoding on the loop, a batch of clicks answered at once kept the loop busy while the
        # decoder sat idle waiting for the next clicks; off it, those clicks arrive and form the next
        # batch while the answers are encoded (server_cpu.py, 16 clients, clicks/s vs the library: 0.85
        # before, 0.87 and 0.91 after; 1 client with batching on: 0.80 before, 0.73-0.75 after).
        if req.format == "binary":
            body = await asyncio.to_thread(binary_answer, results)
            return Response(body, media_type="application/octet-stream")
        preds = await asyncio.to_thread(lambda: [prediction(r, req.format, req.include_alternatives) for r in results])
        return JSONResponse({"predictions": preds, "time": time.perf_counter() - t0})

    return router


def check_prompts(prompts: list[Sam2Prompt] | None, settings: ServerSettings) -> list[Sam2Prompt]:
    """Counts checked before any work: at least one prompt, each with a box or a point."""
    if not prompts:
        raise bad_request("prompts is empty: give at least one prompt with a box and/or points")
    if len(prompts) > settings.max_prompts:
        raise bad_request(f"{len(prompts)} prompts in one request; this server accepts at most {settings.max_prompts}")
    for i, p in enumerate(prompts):
        if p.box is None and not p.points:
            raise bad_request(f"prompts[{i}] has neither a box nor a point")
        if p.num_points() > settings.max_points:
            raise bad_request(f"prompts[{i}] has {p.num_points()} points; this server accepts at most {settings.max_points}")
    return prompts


def click_of(idx: int, prompt: Sam2Prompt, image_id: str, emb: Any, hw: tuple[int, int], multimask: bool,
             logits: bool, logits_cache: Any | None) -> Click:
    """One prompt -> a Click, checked against the image size (as the library checks it)."""
    h, w = hw
    coords = labels = box = None
    if prompt.points:
        coords = np.array([[p.x, p.y] for p in prompt.points], np.float32)
        labels = np.array([int(p.positive) for p in prompt.points], np.int32)
        _inside(coords, w, h, f"prompts[{idx}].points")
    if prompt.box is not None:
        box = np.array(prompt.box.xyxy(), np.float32)
        _inside(box.reshape(2, 2), w, h, f"prompts[{idx}].box")
    click = Click(image_id, emb, coords, labels, box, None, multimask, logits)
    if logits_cache is not None:
        hit = logits_cache.retrieve_best_match(image_id, mask_prompt(click))
        if hit is not None:
            mask = np.asarray(hit, np.float32).reshape(1, LOW_RES, LOW_RES)
            click = Click(image_id, emb, coords, labels, box, mask, multimask, logits)
    return click


def _inside(xy: np.ndarray, w: int, h: int, name: str) -> None:
    if not np.all(np.isfinite(xy)):
        raise bad_request(f"{name} has a coordinate that is not a finite number")
    bad = (xy[:, 0] < 0) | (xy[:, 0] > w) | (xy[:, 1] < 0) | (xy[:, 1] > h)
    if bad.any():
        x, y = xy[bad][0].tolist()
        raise bad_request(f"{name} has a point ({x:g}, {y:g}) outside the {w}x{h} image (x in [0, {w}], y in [0, {h}])")


def mask_prompt(click: Click) -> PromptKey:
    """The click as the logits cache's key (canonical clicks + box)."""
    return PromptKey.from_arrays(click.coords, click.labels, click.box)


def binary_answer(results: list[Decoded]) -> bytes:
    """Roboflow's ``binary`` format: the best mask of each prompt and its low-res logits, npz."""
    masks = np.stack([r.masks[r.best] for r in results]).astype(np.float32)
    low = np.stack([r.low_res[r.best] for r in results]).astype(np.float32)
    return npz_bytes(masks=masks, low_res_masks=low)


def prediction(res: Decoded, fmt: str, alternatives: bool) -> dict[str, Any]:
    best = res.best
    out: dict[str, Any] = {"masks": encode_mask(res.masks[best], fmt), "confidence": float(res.scores[best]),
                           "format": "rle" if fmt == "rle" else "polygon"}
    if alternatives:
        out["alternatives"] = [{"masks": encode_mask(res.masks[i], fmt), "confidence": float(res.scores[i])}
                               for i in range(len(res.scores)) if i != best]
    return out
