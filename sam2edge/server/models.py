"""Request and response bodies, field for field those of Roboflow's inference server for SAM2.

Matched against roboflow/inference (``inference/core/entities/requests/sam2.py``,
``entities/responses/sam2.py``, ``interfaces/http/http_api.py``, ``models/sam2/
segment_anything2.py``): ``POST /sam2/embed_image`` and ``POST /sam2/segment_image`` take the
same JSON and answer the same shapes, so an existing client switches by changing its base URL.

Differences kept on purpose, and why:

1. ``image.type == "numpy"``: Roboflow unpickles ``value`` (``pickle.loads``), which lets any
   client run code on the server. Here ``value`` is the base64 of ``.npy`` bytes
   (``numpy.save``), read with ``allow_pickle=False`` after its header (dtype uint8, HxW or
   HxWx1/3, pixel limit) is checked; a pickled payload is refused with a 400 that says so.
   As in Roboflow, such an array is taken as OpenCV (BGR) channel order.
2. ``image.type == "url"`` is refused (400) unless the server runs with ``--allow-url-images``:
   an appliance should not fetch arbitrary addresses on a client's behalf. ``file``, ``pil``,
   ``multipart`` and ``numpy_object`` (in-process types) are refused over HTTP.
3. ``image`` is optional on ``/sam2/segment_image`` when ``image_id`` names a cached
   embedding (Roboflow's model code allows this but its request model requires ``image``);
   when both come and the id is cached, the image is not decoded at all (as Roboflow).
4. A prompt with neither a box nor a point, and a request without any prompt, are refused
   (400). Roboflow then decodes a lone padding point, which yields an arbitrary mask.
5. Prompts of one request are decoded as independent prompts: never padded to a common point
   count with label -1 as Roboflow does (padding points are real tokens to the decoder, so
   a prompt's mask would depend on its neighbours in the request).
6. The logits cache (``save_logits_to_cache`` / ``load_logits_from_cache``, and the older
   ``use_mask_input_cache`` meaning both) works per prompt: a prompt is refined with the
   cached mask of the most recent earlier prompt on the same image with the same box and a
   strict subset of its points. Roboflow matches whole prompt sets; for the usual
   one-prompt-per-request click loop the two are the same.
7. Masks are ``logits > 0`` (Roboflow: ``>= 0``); they differ only on logits exactly 0.
8. ``format`` is checked (json | rle | binary) and anything else is a 400 (Roboflow: 500).
9. ``sam2_version_id`` / ``model_id`` are accepted and ignored: one model per process, the one
   ``sam2edge serve --model`` loaded (``GET /info`` names it).
10. Extension: ``"include_alternatives": true`` adds ``alternatives`` (the other masks of a
   multimask prompt, with their confidences, in the same format) to each json/rle prediction.
   Roboflow clients never send it and never see it.
11. Errors are ``{"message", "status"}`` JSON with 400 / 401 / 404 / 413 / 503 (Roboflow's
   bodies differ per exception); a validation error is a 400, not FastAPI's 422.
12. Points and box corners must lie in the image (x in [0, W], y in [0, H]): a 400 naming the
   prompt, the library's own rule (Roboflow hands them to the model unchecked).
13. Limits Roboflow does not have: body bytes, image pixels (from the header, before decoding),
   prompts per request, points per prompt, queue depths (503 + Retry-After); see settings.py.

Boxes are centre-based ``{x, y, width, height}`` in image pixels everywhere (also in the video
and stream endpoints), points are ``{x, y, positive}``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Body(BaseModel):
    # Roboflow clients send more fields (id, start, usage_billable, source, ...): ignore them.
    model_config = ConfigDict(extra="ignore", protected_namespaces=())


class InferenceRequestImage(_Body):
    type: str = Field(description="base64 | numpy (.npy bytes, base64) | url (only with --allow-url-images)")
    value: Any = Field(default=None, description="the encoded image (or its URL)")


class Box(_Body):
    """Centre-based box in image pixels (Roboflow's convention)."""

    x: float
    y: float
    width: float = Field(ge=0)
    height: float = Field(ge=0)

    def xyxy(self) -> list[float]:
        return [self.x - self.width / 2, self.y - self.height / 2, self.x + self.width / 2, self.y + self.height / 2]


class Point(_Body):
    x: float
    y: float
    positive: bool


class Sam2Prompt(_Body):
    box: Box | None = None
    points: list[Point] | None = None

    def num_points(self) -> int:
        return len(self.points or [])


class Sam2PromptSet(_Body):
    prompts: list[Sam2Prompt] | None = None


class _Sam2Request(_Body):
    api_key: str | None = None
    sam2_version_id: str | None = Field(default=None, description="accepted and ignored (one model per server)")
    model_id: str | None = Field(default=None, description="accepted and ignored")


class Sam2EmbeddingRequest(_Sam2Request):
    image: InferenceRequestImage | None = None
    image_id: str | None = Field(default=None, description="cache key; default: a hash of the decoded image")


class Sam2SegmentationRequest(_Sam2Request):
    format: Literal["json", "rle", "binary"] = "json"
    image: InferenceRequestImage | None = None
    image_id: str | None = None
    prompts: Sam2PromptSet = Field(default_factory=Sam2PromptSet)
    multimask_output: bool = True
    save_logits_to_cache: bool = False
    load_logits_from_cache: bool = False
    use_mask_input_cache: bool | None = Field(default=None, description="older name: save and load both")
    include_alternatives: bool = Field(default=False, description="sam2edge extension: also return the other masks")

    @field_validator("prompts", mode="before")
    @classmethod
    def _coerce_prompts(cls, value: Any) -> Any:
        """As Roboflow: ``{"prompts": [...]}``, a flat list of prompts, one prompt dict, or null."""
        if value is None:
            return {"prompts": None}
        if isinstance(value, list):
            return {"prompts": value}
        if isinstance(value, dict) and "prompts" not in value and ("box" in value or "points" in value):
            return {"prompts": [value]}
        return value

    def cache_flags(self) -> tuple[bool, bool]:
        """(load, save) for the low-resolution logits cache."""
        if self.use_mask_input_cache is not None:
            return bool(self.use_mask_input_cache), bool(self.use_mask_input_cache)
        return self.load_logits_from_cache, self.save_logits_to_cache


class Sam2EmbeddingResponse(BaseModel):
    image_id: str
    time: float


class Sam2Alternative(BaseModel):
    masks: list[list[list[int]]] | dict[str, Any]
    confidence: float


class Sam2SegmentationPrediction(BaseModel):
    masks: list[list[list[int]]] | dict[str, Any] = Field(description="polygons [[[x, y], ...], ...] or COCO RLE")
    confidence: float
    format: str = "polygon"
    alternatives: list[Sam2Alternative] | None = None


class Sam2SegmentationResponse(BaseModel):
    predictions: list[Sam2SegmentationPrediction]
    time: float


# -- video sessions and streams (sam2edge's own endpoints) ----------------------------------
class RLE(_Body):
    """COCO run-length encoding (pycocotools' compressed string form)."""

    size: list[int] = Field(min_length=2, max_length=2, description="[height, width]")
    counts: str


class VideoOpenRequest(_Body):
    path: str = Field(description="a video file or frame folder, relative to the server's --media-dir")


class VideoPromptRequest(_Body):
    frame_idx: int = Field(ge=0)
    obj_id: int
    points: list[Point] | None = None
    box: Box | None = None
    clear_old_points: bool = True


class VideoMaskRequest(_Body):
    frame_idx: int = Field(ge=0)
    obj_id: int
    mask: RLE


class PropagateRequest(_Body):
    start_frame_idx: int | None = Field(default=None, ge=0)
    reverse: bool = False
    max_frames: int | None = Field(default=None, ge=0)


class ObjectMask(BaseModel):
    obj_id: int
    mask: dict[str, Any] = Field(description="COCO RLE {size, counts}")
    score: float = Field(description="object presence logit (> 0: present)")
    area: int


class FrameMasks(BaseModel):
    frame_idx: int
    objects: list[ObjectMask]


class VideoSessionInfo(BaseModel):
    session_id: str
    num_frames: int | None
    height: int
    width: int
    fps: float | None
    obj_ids: list[int]
    memory_bytes: int
    busy: bool


class StreamPrompt(_Body):
    obj_id: int
    points: list[Point] | None = None
    box: Box | None = None


class StreamConfig(_Body):
    """The camera stream's text message: prompts for the next frame (a correction once running)."""

    prompts: list[StreamPrompt] = Field(default_factory=list)
