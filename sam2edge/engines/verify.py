"""Verification of a built engine set against a reference backend, on real images.

Backend-agnostic: any two runner dicts on the Runner contract are compared (a TensorRT set
against ONNX Runtime fp32 after a build; ONNX Runtime against PyTorch in the tests here).
The figures go into the engine manifest:

* every output: max and mean absolute difference;
* ``masks``: IoU of the binarised (> 0) mask logits, mean and worst over prompts and tokens;
* ``iou_predictions`` / ``object_score_logits``: the score differences (max abs).

The inputs chain like the real pipeline: preprocessed images -> image encoder; its features of
each image + a deterministic grid of point prompts -> prompt decoder; the current frame's
vision features + seeded memories -> memory attention / memory encoder. Every feed stays inside
the profile the engines were built with (``dims``, as the engine manifest records them: a build
with ``--max-prompts 2`` is verified with 2 prompts). Without a reference image encoder (an export
of the other artifacts only) the features are seeded random values of the spec's shapes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from sam2edge.backends.base import Runner
from sam2edge.contract.artifacts import ARTIFACTS, NUM_OBJECTS, NUM_POINTS, NUM_PROMPTS, Artifact, Tensor
from sam2edge.contract.parity import compare_outputs, merge_figures
from sam2edge.processing.preprocess import preprocess_opencv

SCORE_OUTPUTS = (Tensor.IOU_PREDICTIONS, Tensor.OBJECT_SCORE_LOGITS)


def sample_images(max_images: int = 3) -> tuple[list[np.ndarray], str]:
    """Real photographs from scikit-image's data module when installed, else drawn test scenes."""
    try:
        from skimage import data

        imgs = [data.astronaut(), data.coffee(), data.chelsea()][:max_images]
        return [np.ascontiguousarray(i[..., :3]) for i in imgs], "scikit-image sample photographs"
    except ImportError:
        return [_drawn_scene(seed) for seed in range(max_images)], "drawn scenes (install scikit-image for photos)"


def _drawn_scene(seed: int, size: tuple[int, int] = (480, 640)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((*size, 3), rng.integers(0, 80, 3), dtype=np.uint8)
    for _ in range(6):
        color = tuple(int(c) for c in rng.integers(60, 255, 3))
        center = (int(rng.integers(0, size[1])), int(rng.integers(0, size[0])))
        cv2.circle(img, center, int(rng.integers(20, 120)), color, -1)
    return img


def point_grid(n_prompts: int, n_points: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic positive clicks spread over the 1024x1024 input: coords [N,P,2] f32, labels [N,P] i32."""
    rng = np.random.default_rng(seed)
    coords = rng.uniform(64, 960, size=(n_prompts, n_points, 2)).astype(np.float32)
    labels = np.ones((n_prompts, n_points), dtype=np.int32)
    return coords, labels


Job = tuple[str, dict[str, np.ndarray], "dict[str, np.ndarray] | None"]
DimRanges = Mapping[str, Mapping[str, Mapping[str, int]]]  # artifact -> dim -> {"min", "opt", "max"}
PROMPTS, POINTS = 3, 2  # the decoder's verification clicks, where the profile allows


def clamp(value: int, artifact: str, dim: str, dims: DimRanges | None) -> int:
    """``value`` within the recorded [min, max] of ``dim`` (unchanged without a record)."""
    rng = (dims or {}).get(artifact, {}).get(dim)
    return value if rng is None else max(int(rng["min"]), min(int(rng["max"]), value))


def encoder_features(reference: Mapping[str, Runner], x: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """The reference encoder's outputs for ``x``, or seeded values of its output shapes when there is none."""
    if Artifact.IMAGE_ENCODER in reference:
        return reference[Artifact.IMAGE_ENCODER].infer({Tensor.IMAGE: x})
    rng = np.random.default_rng(1000 + seed)
    return {t.name: rng.standard_normal(t.shape_at("min")).astype(t.dtype) for t in ARTIFACTS[Artifact.IMAGE_ENCODER].outputs}


def verification_feeds(images: Sequence[np.ndarray], reference: Mapping[str, Runner],
                       artifacts: Sequence[str], dims: DimRanges | None = None) -> list[Job]:
    """(artifact, feeds, reference outputs or None) for every artifact, chained through the reference
    encoder (whose outputs are kept, so it runs once per image), inside the profiles ``dims``."""

    jobs: list[Job] = []
    for i, img in enumerate(images):
        x = preprocess_opencv(img)
        feats = encoder_features(reference, x, i)
        if Artifact.IMAGE_ENCODER in artifacts:
            jobs.append((Artifact.IMAGE_ENCODER, {Tensor.IMAGE: x}, feats))
        if Artifact.PROMPT_DECODER in artifacts:
            n = clamp(PROMPTS, Artifact.PROMPT_DECODER, NUM_PROMPTS.name, dims)
            coords, labels = point_grid(n, clamp(POINTS, Artifact.PROMPT_DECODER, NUM_POINTS.name, dims), seed=i)
            jobs.append((Artifact.PROMPT_DECODER, {
                Tensor.IMAGE_EMBED: feats[Tensor.IMAGE_EMBED], Tensor.HIGH_RES_0: feats[Tensor.HIGH_RES_0],
                Tensor.HIGH_RES_1: feats[Tensor.HIGH_RES_1], Tensor.POINT_COORDS: coords, Tensor.POINT_LABELS: labels,
                Tensor.MASK_INPUT: np.zeros((n, 1, 256, 256), np.float32), Tensor.HAS_MASK_INPUT: np.zeros(n, np.float32)}, None))
        for name in (Artifact.MEMORY_ATTENTION, Artifact.MEMORY_ENCODER):
            if name in artifacts:
                # The reference runner's spec: the export's own (EdgeTAM's memory frames are latents).
                spec = reference[name].spec if name in reference else ARTIFACTS[name]
                opt = {d: clamp(dim.opt, name, d, dims) for d, dim in spec.dims().items()}
                opt[NUM_OBJECTS.name] = clamp(1, name, NUM_OBJECTS.name, dims)
                feeds = spec.dummy_inputs("opt", seed=i, overrides=opt)
                feeds[Tensor.VISION_FEATURES] = feats[Tensor.VISION_FEATURES]
                jobs.append((name, _plausible(name, feeds), None))
    return jobs


def _plausible(name: str, feeds: dict[str, Any]) -> dict[str, Any]:
    """Valid control inputs for the seeded memory-path feeds (indices in range, 0/1 flags)."""
    if name == Artifact.MEMORY_ATTENTION:
        n = feeds[Tensor.MEMORY_TPOS].shape[0]
        feeds[Tensor.MEMORY_TPOS] = np.arange(n, dtype=np.int32) % 7
        k = feeds[Tensor.OBJ_PTR_OFFSETS].shape[0]
        feeds[Tensor.OBJ_PTR_OFFSETS] = -np.arange(k, dtype=np.float32) / max(k - 1, 1)
    else:
        feeds[Tensor.IS_MASK_FROM_POINTS] = np.ones_like(feeds[Tensor.IS_MASK_FROM_POINTS])
    return feeds


def verify(candidate: Mapping[str, Runner], reference: Mapping[str, Runner], images: Sequence[np.ndarray],
           artifacts: Sequence[str], jobs: Sequence[Job] | None = None,
           dims: DimRanges | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """Figures per artifact: candidate vs reference on the chained verification inputs (inside ``dims``)."""
    runs: dict[str, list[dict[str, dict[str, float]]]] = {}
    for name, feeds, ref in jobs if jobs is not None else verification_feeds(images, reference, artifacts, dims):
        ref = ref if ref is not None else reference[name].infer(feeds)
        got = candidate[name].infer(feeds)
        runs.setdefault(name, []).append(compare_outputs(ref, got))
    return {name: merge_figures(r) for name, r in runs.items()}
