"""The image predictor: the seed's ``embed_images`` / ``segment_images`` API over runners.

The predictor never touches networks directly: it talks to an ``image_encoder`` runner
and a ``prompt_decoder`` runner (PyTorch, ONNX Runtime or TensorRT), does pre- and
post-processing in numpy/OpenCV, and keeps the two caches. Every argument is checked
before any runner or cache is touched, so a failed call leaves the caches unchanged.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from sam2edge.backends import lazy
from sam2edge.backends.base import Runner
from sam2edge.config import ModelConfig
from sam2edge.contract.artifacts import Artifact, Tensor
from sam2edge.errors import InputError, UnknownImageHashError
from sam2edge.processing import postprocess, preprocess
from sam2edge.processing.masks import choose_mask_tokens
from sam2edge.runtime import checks
from sam2edge.runtime.image.embedding import Embedder, cache_key
from sam2edge.runtime.image.prompts import ImagePrompts, build_image_prompts, per_image
from sam2edge.runtime.image.types import SAM2ImageEmbeddings, SAM2Prediction
from sam2edge.runtime.loading import load_predictor
from sam2edge.runtime.preprocessing import make_preprocess, resolve_mode
from sam2edge.runtime.video import stream, track

log = logging.getLogger(__name__)

# Tensor names come from the artifact specs; these are the only ones the predictor uses.
DEC_IN = (Tensor.IMAGE_EMBED, Tensor.HIGH_RES_0, Tensor.HIGH_RES_1, Tensor.POINT_COORDS, Tensor.POINT_LABELS,
          Tensor.MASK_INPUT, Tensor.HAS_MASK_INPUT)
DEC_OUT = (Tensor.MASKS, Tensor.IOU_PREDICTIONS)
LOW_RES = 256


class SAM2:
    """SAM2 image segmentation with the seed API (also exported as ``AutoModel``)."""

    def __init__(
        self,
        runners: dict[str, Runner],
        config: ModelConfig,
        sam2_image_embeddings_cache: Any = None,
        sam2_low_resolution_masks_cache: Any = None,
        preprocessing: str = "auto",
        max_batch_size: int = 8,
        backend: Any = None,
        max_hole_area: float = 0.0,
        max_sprinkle_area: float = 0.0,
        model_id: str | None = None,
        allow_client_image_hashes: bool = True,
    ) -> None:
        self.runners = runners
        self.config = config
        self._sam2_image_embeddings_cache = sam2_image_embeddings_cache
        self._sam2_low_resolution_masks_cache = sam2_low_resolution_masks_cache
        self.preprocessing = resolve_mode(preprocessing, video=False)
        self._preprocess = make_preprocess(self.preprocessing, False, config.image_size)
        self.max_batch_size = checks.positive_int(max_batch_size, "max_batch_size")
        self._backend = backend
        self.max_hole_area = checks.number(max_hole_area, "max_hole_area", minimum=0.0)
        self.max_sprinkle_area = checks.number(max_sprinkle_area, "max_sprinkle_area", minimum=0.0)
        self.model_id = model_id or f"{config.name}:unknown"
        self.allow_client_image_hashes = checks.flag(allow_client_image_hashes, "allow_client_image_hashes")
        self._embedder = Embedder(runners[Artifact.IMAGE_ENCODER], self._preprocess, self.max_batch_size, self.model_id)

    # -- construction ------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, model_name_or_path: str, api_key: str | None = None, **kwargs: Any) -> SAM2:
        """Load a variant by name, an official checkpoint path, an export folder, or the models a Triton
        server serves (``"triton://host:8001/<model prefix>"``, a repository from ``sam2edge triton-repo``).

        ``api_key`` is accepted and ignored: everything runs offline. Keyword arguments:
        ``backend`` ("auto" | "tensorrt" | "onnxruntime" | "torch" | "triton"), ``device``, ``strict``,
        ``threads`` (CPU threads per ONNX Runtime session; default: the library's),
        ``store_dir`` (the artifact store; default $SAM2EDGE_STORE or engines/), ``video``,
        ``sam2_image_embeddings_cache``, ``sam2_low_resolution_masks_cache``,
        ``preprocessing`` ("auto" | "exact" | "opencv"), ``max_hole_area``, ``max_sprinkle_area``.
        """
        return load_predictor(cls, model_name_or_path, **kwargs)

    @property
    def active_backend(self) -> str:
        if self._backend is not None and hasattr(self._backend, "active_backend"):
            return self._backend.active_backend
        return self.runners[Artifact.IMAGE_ENCODER].backend

    def backend_report(self) -> Any:
        if self._backend is not None and hasattr(self._backend, "backend_report"):
            return self._backend.backend_report()
        return {"active": self.active_backend, "candidates": []}

    # -- video -----------------------------------------------------------------------------
    def track(self, source: Any, **kwargs: Any) -> Any:
        """A video tracker over ``source`` (video file, folder of frames, or iterable of frames)."""

        return track(self, source, **kwargs)

    def stream(self, first_frame: Any, prompts: Any = None, **kwargs: Any) -> Any:
        """Live tracking: ``stream.track(frame) -> masks``, one frame at a time, bounded memory."""

        return stream(self, first_frame, prompts, **kwargs)

    # -- segment everything ---------------------------------------------------------------
    def generate_masks(self, image: Any, input_color_format: str | None = None, progress: Any = None,
                       **options: Any) -> list[dict[str, Any]]:
        """Masks for everything in one image (HWC uint8, BGR unless ``input_color_format="rgb"``).

        Options and records are those of sam2's ``SAM2AutomaticMaskGenerator`` (see
        ``AutomaticMaskOptions``); ``progress(points_done, points_total)`` is called after each
        decoder batch. Every option is checked before the image is encoded.
        """
        from sam2edge.runtime.image.automatic import AutomaticMaskGenerator
        from sam2edge.runtime.image.automatic_options import AutomaticMaskOptions

        opts = AutomaticMaskOptions.from_kwargs(**options)
        if isinstance(image, list | tuple):
            raise InputError(f"generate_masks takes one image, got a {type(image).__name__} of {len(image)}")
        if progress is not None and not callable(progress):
            raise InputError(f"progress must be a callable (points_done, points_total) or None, got {type(progress).__name__}")
        rgb = _as_rgb_list(image, input_color_format)[0]
        return AutomaticMaskGenerator(self.runners, self._preprocess, self.config, opts).generate(rgb, progress)

    # -- images -> embeddings ------------------------------------------------------------
    def embed_images(
        self,
        images: Any,
        use_embeddings_cache: bool = True,
        image_hashes: str | Sequence[str] | None = None,
        input_color_format: str | None = None,
        **kwargs: Any,
    ) -> list[SAM2ImageEmbeddings]:
        """Encode images (HWC uint8 numpy, BGR unless ``input_color_format="rgb"``; or torch CHW/NCHW RGB).

        Embeddings that come from the cache hold read-only arrays (the cache keeps its own copy).
        """
        checks.check_kwargs(kwargs, EMBED_ARGS, "embed_images")
        rgbs = _as_rgb_list(images, input_color_format)
        hashes = self._hashes(rgbs, image_hashes)
        return self._embed(rgbs, hashes, checks.flag(use_embeddings_cache, "use_embeddings_cache"))

    def _embed(self, rgbs: list[np.ndarray], hashes: list[str], use_cache: bool) -> list[SAM2ImageEmbeddings]:
        return self._embedder.embed(rgbs, hashes, self._sam2_image_embeddings_cache if use_cache else None)

    def cached_embeddings(self, image_hash: str) -> SAM2ImageEmbeddings | None:
        """The embeddings this model cached for ``image_hash`` (float32, read-only arrays), or None."""
        return self._embedder.lookup(self._sam2_image_embeddings_cache, image_hash)

    def _hashes(self, rgbs: list[np.ndarray], image_hashes: str | Sequence[str] | None) -> list[str]:
        if image_hashes is not None and not self.allow_client_image_hashes:
            raise InputError("image_hashes given with images, but this model computes hashes itself "
                             "(allow_client_image_hashes=False); drop image_hashes")
        return _hashes(rgbs, image_hashes)

    # -- prompts -> masks ------------------------------------------------------------------
    def segment_images(
        self,
        images: Any = None,
        embeddings: SAM2ImageEmbeddings | list[SAM2ImageEmbeddings] | None = None,
        image_hashes: str | Sequence[str] | None = None,
        point_coordinates: Any = None,
        point_labels: Any = None,
        boxes: Any = None,
        mask_input: Any = None,
        multi_mask_output: bool = True,
        return_logits: bool = False,
        input_color_format: str | None = None,
        mask_threshold: float | None = None,
        use_embeddings_cache: bool = True,
        use_mask_input_cache: bool | None = None,
        load_from_mask_input_cache: bool = False,
        save_to_mask_input_cache: bool = False,
        output: str = "numpy",
        **kwargs: Any,
    ) -> list[SAM2Prediction]:
        """Segment each image with its prompts; see SAM2Prediction for output shapes."""
        checks.check_kwargs(kwargs, SEGMENT_ARGS, "segment_images")
        if use_mask_input_cache is not None:
            load_from_mask_input_cache = save_to_mask_input_cache = checks.flag(use_mask_input_cache,
                                                                                "use_mask_input_cache")
        load_from_mask_input_cache = checks.flag(load_from_mask_input_cache, "load_from_mask_input_cache")
        save_to_mask_input_cache = checks.flag(save_to_mask_input_cache, "save_to_mask_input_cache")
        multi_mask_output = checks.flag(multi_mask_output, "multi_mask_output")
        return_logits = checks.flag(return_logits, "return_logits")
        use_embeddings_cache = checks.flag(use_embeddings_cache, "use_embeddings_cache")
        if output not in ("numpy", "torch"):
            raise InputError(f"output must be 'numpy' or 'torch', got {output!r}")
        threshold = checks.number(0.0 if mask_threshold is None else mask_threshold, "mask_threshold")
        if images is not None and embeddings is not None:
            raise InputError("give images or embeddings, not both (embeddings already stand for their images)")
        # 1. Resolve images / embeddings / hashes to sizes, without touching any cache.
        rgbs = hashes = None
        if images is not None:
            rgbs = _as_rgb_list(images, input_color_format)
            hashes = self._hashes(rgbs, image_hashes)
            sizes = [(int(r.shape[0]), int(r.shape[1])) for r in rgbs]
        elif embeddings is not None:
            embeddings = list(embeddings) if isinstance(embeddings, list | tuple) else [embeddings]
            sizes = [self._check_embeddings(e, i) for i, e in enumerate(embeddings)]
        elif image_hashes is not None:
            embeddings = self._embeddings_from_hashes(image_hashes)
            sizes = [tuple(e.image_size_hw) for e in embeddings]
        else:
            raise InputError("segment_images needs images, embeddings or image_hashes; none was given")
        # 2. Validate every prompt before any computation or cache write.
        n = len(sizes)
        per = [per_image(v, n, name) for v, name in (
            (point_coordinates, "point_coordinates"), (point_labels, "point_labels"), (boxes, "boxes"), (mask_input, "mask_input"))]
        prompts = [
            build_image_prompts(*(p[i] if p is not None else None for p in per), sizes[i], self.config.image_size, i)
            for i in range(n)
        ]
        # 3. Encode (or fetch) and decode.
        if rgbs is not None:
            embeddings = self._embed(rgbs, hashes, use_embeddings_cache)
        results = []
        for emb, prm in zip(embeddings, prompts):
            mask_in = prm.mask_input
            if mask_in is None and load_from_mask_input_cache:
                mask_in = self._cached_mask(emb.image_hash, prm)
            pred, best_low_res = self._decode(emb, prm, mask_in, multi_mask_output, return_logits, threshold)
            if save_to_mask_input_cache and prm.single and self._sam2_low_resolution_masks_cache is not None:
                self._save_mask(emb.image_hash, prm, best_low_res)
            results.append(_to_output(pred, output))
        return results

    def _embeddings_from_hashes(self, image_hashes: str | Sequence[str]) -> list[SAM2ImageEmbeddings]:
        cache = self._sam2_image_embeddings_cache
        keys = [image_hashes] if isinstance(image_hashes, str) else list(image_hashes)
        if cache is None:
            raise InputError("image_hashes need an embeddings cache: pass sam2_image_embeddings_cache to from_pretrained")
        out = []
        for i, k in enumerate(keys):
            if not isinstance(k, str) or not k:
                raise InputError(f"image_hashes[{i}] must be a non-empty string, got {k!r}")
            hit = self._embedder.lookup(cache, k)
            if hit is None:
                raise UnknownImageHashError(f"image hash {k!r} is not in the embeddings cache of this model "
                                            "(never embedded by it, or evicted)")
            out.append(hit)
        return out

    def _check_embeddings(self, emb: Any, idx: int) -> tuple[int, int]:
        """The image size of embeddings made by this model, with the shapes the decoder takes."""
        if not isinstance(emb, SAM2ImageEmbeddings):
            raise InputError(f"embeddings[{idx}] must be SAM2ImageEmbeddings from embed_images(), got {type(emb).__name__}")
        if emb.model_id is not None and emb.model_id != self.model_id:
            raise InputError(f"embeddings[{idx}] were made by model {emb.model_id}, this model is {self.model_id}; "
                             "embed the image with this model")
        size = checks.image_size(emb.image_size_hw, f"embeddings[{idx}].image_size_hw")
        spec = self.runners[Artifact.PROMPT_DECODER].spec
        want = {t.name: t.shape_at("min") for t in spec.inputs}
        arrays = ((Tensor.IMAGE_EMBED, emb.embeddings), (Tensor.HIGH_RES_0, _item(emb.high_resolution_features, 0)),
                  (Tensor.HIGH_RES_1, _item(emb.high_resolution_features, 1)))
        for name, arr in arrays:
            if tuple(getattr(arr, "shape", ())) != want[name]:
                raise InputError(f"embeddings[{idx}]: {name} must have shape {want[name]}, "
                                 f"got {tuple(getattr(arr, 'shape', ())) or type(arr).__name__}")
        return size

    def _decode(
        self, emb: SAM2ImageEmbeddings, prm: ImagePrompts, mask_in: np.ndarray | None,
        multimask: bool, return_logits: bool, threshold: float,
    ) -> tuple[SAM2Prediction, np.ndarray]:
        k = prm.num_prompts
        has_mask = np.full((k,), 1.0 if mask_in is not None else 0.0, dtype=np.float32)
        if mask_in is None:
            mask_in = np.zeros((k, 1, LOW_RES, LOW_RES), dtype=np.float32)
        elif mask_in.shape[0] != k:
            mask_in = np.repeat(mask_in, k, axis=0)
        feeds = dict(zip(DEC_IN, (
            np.asarray(emb.embeddings, np.float32), np.asarray(emb.high_resolution_features[0], np.float32),
            np.asarray(emb.high_resolution_features[1], np.float32), prm.coords, prm.labels, mask_in, has_mask)))
        out = self.runners[Artifact.PROMPT_DECODER].infer(feeds)
        low_res, scores, _ = choose_mask_tokens(
            out[DEC_OUT[0]], out[DEC_OUT[1]], multimask,
            self.config.dynamic_multimask_via_stability,
            self.config.dynamic_multimask_stability_delta, self.config.dynamic_multimask_stability_thresh)
        if self.max_hole_area > 0 or self.max_sprinkle_area > 0:
            low_res = postprocess.fill_holes_and_sprinkles(low_res, self.max_hole_area, self.max_sprinkle_area, threshold)
        if return_logits:
            masks = postprocess.upsample_logits(low_res, emb.image_size_hw)
        else:
            masks = postprocess.upsample_masks(low_res, emb.image_size_hw, threshold)
        low_res = np.clip(low_res, -32.0, 32.0)
        best = low_res[np.arange(k), np.argmax(scores, axis=-1)][:, None]  # [K,1,256,256]
        if prm.single:
            return SAM2Prediction(masks[0], scores[0], low_res[0]), best
        return SAM2Prediction(masks, scores, low_res), best

    # -- low-resolution mask cache --------------------------------------------------------
    def _cached_mask(self, image_hash: str, prm: ImagePrompts) -> np.ndarray | None:
        cache = self._sam2_low_resolution_masks_cache
        if cache is None or not prm.single:
            return None
        hit = cache.retrieve_best_match(cache_key(image_hash, self.model_id), prm.serialized)
        return None if hit is None else np.asarray(hit, dtype=np.float32).reshape(1, 1, LOW_RES, LOW_RES)

    def _save_mask(self, image_hash: str, prm: ImagePrompts, best_low_res: np.ndarray) -> None:
        self._sam2_low_resolution_masks_cache.save(cache_key(image_hash, self.model_id), prm.serialized, best_low_res[0])


def _as_rgb_list(images: Any, color_format: str | None) -> list[np.ndarray]:
    fmt = (color_format or "bgr").lower()
    if fmt not in ("bgr", "rgb"):
        raise InputError(f"input_color_format must be 'bgr' or 'rgb', got {color_format!r}")
    if isinstance(images, list | tuple):
        if not images:
            raise InputError("images is an empty list; expected at least one image")
        items = list(images)
    elif hasattr(images, "ndim") and hasattr(images, "detach") and images.ndim == 4:  # torch NCHW batch
        items = list(images)
    else:
        items = [images]
    # torch tensors are RGB by convention; numpy follows input_color_format (BGR default).
    return [preprocess.to_rgb_uint8(img, input_color_format=("rgb" if hasattr(img, "detach") else fmt), name=f"images[{i}]")
            for i, img in enumerate(items)]


def _item(seq: Any, i: int) -> Any:
    try:
        return seq[i]
    except (TypeError, IndexError, KeyError):
        return None


def _arguments(fn: Any) -> tuple[str, ...]:
    """The named parameters of a method (what unknown keywords are checked against)."""
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(n for n, p in inspect.signature(fn).parameters.items() if p.kind in kinds and n != "self")


EMBED_ARGS = _arguments(SAM2.embed_images)
SEGMENT_ARGS = _arguments(SAM2.segment_images)


def _hashes(rgbs: list[np.ndarray], image_hashes: str | Sequence[str] | None) -> list[str]:
    if image_hashes is None:
        return [preprocess.image_hash(r) for r in rgbs]
    hashes = [image_hashes] if isinstance(image_hashes, str) else list(image_hashes)
    if len(hashes) != len(rgbs) or not all(isinstance(h, str) and h for h in hashes):
        raise InputError(f"image_hashes must be {len(rgbs)} non-empty strings (one per image), got {image_hashes!r}")
    return hashes


def _to_output(pred: SAM2Prediction, output: str) -> SAM2Prediction:
    if output == "numpy":
        return pred
    torch = lazy.import_torch("output='torch'")
    return SAM2Prediction(*(torch.from_numpy(np.ascontiguousarray(a)) for a in (pred.masks, pred.scores, pred.logits)))
