"""Inputs for export-time verification: real photographs and random prompts.

The image encoder runs on real photographs (scikit-image's astronaut / coffee / chelsea
when scikit-image is installed, else deterministic synthetic scenes), and the other
artifacts get the PyTorch image features of those photographs plus random prompts,
masks, memories and pointers. Every case exercises the symbolic dims at more than one
size. Values that feed hard thresholds (object scores, binarised masks) are kept away
from the threshold, so a 1e-6 numerical difference cannot flip them.

Requires torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sam2edge.contract.artifacts import Artifact, Tensor
from sam2edge.processing.preprocess import preprocess_opencv


def verification_images() -> list[np.ndarray]:
    """Three HWC RGB uint8 images of different sizes and aspect ratios."""
    try:
        from skimage import data

        return [data.astronaut(), data.coffee(), data.chelsea()]
    except Exception:  # scikit-image is a test extra; fall back to synthetic scenes
        rng = np.random.default_rng(0)
        out = []
        for h, w in ((512, 512), (400, 600), (300, 451)):
            yy, xx = np.mgrid[0:h, 0:w]
            base = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 127 // (h + w)], axis=-1)
            out.append(np.clip(base + rng.integers(-20, 20, size=(h, w, 3)), 0, 255).astype(np.uint8))
        return out


def _features(model: Any, images: Sequence[np.ndarray]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Preprocessed batch [B,3,1024,1024] and the PyTorch image features of every image."""
    import torch


    batch = np.concatenate([preprocess_opencv(im) for im in images], axis=0)
    with torch.no_grad():
        feats = model.encode_image(torch.from_numpy(batch))
    return batch, {k: v.numpy() for k, v in feats._asdict().items()}


def _decoder_cases(feats: dict[str, np.ndarray], rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    cases = []
    for img, (n, p) in enumerate(((3, 4), (1, 1), (2, 3))):
        i = img % feats[Tensor.IMAGE_EMBED].shape[0]
        coords = rng.uniform(0, 1024, size=(n, p, 2)).astype(np.float32)
        labels = rng.choice([-1, 0, 1, 2, 3], size=(n, p)).astype(np.int32)
        labels[:, 0] = 1  # at least one real click per prompt
        has_mask = (np.arange(n) % 2 == 0).astype(np.float32) if n > 1 else np.zeros(1, np.float32)
        embed = feats[Tensor.IMAGE_EMBED][i:i + 1]
        if n == 2:  # one embedding per prompt, as the tracker feeds its memory-conditioned objects
            embed = np.concatenate([embed, embed + rng.standard_normal(embed.shape).astype(np.float32)])
        cases.append({
            Tensor.IMAGE_EMBED: embed,
            Tensor.HIGH_RES_0: feats[Tensor.HIGH_RES_0][i:i + 1],
            Tensor.HIGH_RES_1: feats[Tensor.HIGH_RES_1][i:i + 1],
            Tensor.POINT_COORDS: coords,
            Tensor.POINT_LABELS: labels,
            Tensor.MASK_INPUT: (rng.standard_normal((n, 1, 256, 256)) * 8).astype(np.float32),
            Tensor.HAS_MASK_INPUT: has_mask,
        })
    return cases


def _memory_attention_cases(feats: dict[str, np.ndarray], rng: np.random.Generator,
                            frame_shape: tuple[int, ...] = (64, 64, 64)) -> list[dict[str, np.ndarray]]:
    """frame_shape: one memory frame, (64, 64, 64) for SAM2, (512, 64) latents for EdgeTAM."""
    cases = []
    for i, (b, f, k) in enumerate(((2, 3, 5), (1, 1, 1))):
        j = i % feats[Tensor.VISION_FEATURES].shape[0]
        cases.append({
            Tensor.VISION_FEATURES: feats[Tensor.VISION_FEATURES][j:j + 1],
            Tensor.MEMORY: rng.standard_normal((b, f, *frame_shape)).astype(np.float32),
            Tensor.MEMORY_TPOS: np.array([6, 0, 1, 2, 3, 4, 5][:f], dtype=np.int32),
            Tensor.OBJ_PTRS: rng.standard_normal((b, k, 256)).astype(np.float32),
            Tensor.OBJ_PTR_OFFSETS: (rng.integers(-15, 16, size=k) / np.float32(15)).astype(np.float32),
        })
    return cases


def _blob_masks(rng: np.random.Generator, n: int, side: int, level: float) -> np.ndarray:
    """Piecewise-constant +-level masks (16x16 blobs, nearest-upsampled): their bilinear upsampling
    never lands on 0, so binarising them is robust to rounding."""
    coarse = np.where(rng.standard_normal((n, 1, 16, 16)) > 0, level, -level).astype(np.float32)
    rep = side // 16
    return np.repeat(np.repeat(coarse, rep, axis=2), rep, axis=3)


def _memory_encoder_cases(feats: dict[str, np.ndarray], rng: np.random.Generator) -> list[dict[str, np.ndarray]]:
    v = feats[Tensor.VISION_FEATURES]
    smooth = _blob_masks(rng, 2, 256, 5.0) + rng.uniform(-2, 2, size=(2, 1, 256, 256)).astype(np.float32)
    return [
        {  # tracked frame: two objects, one prompted (binarised) and one absent
            Tensor.VISION_FEATURES: v[0:1],
            Tensor.MASK_LOGITS: np.concatenate([_blob_masks(rng, 1, 256, 5.0), smooth[1:]], axis=0),
            Tensor.IS_MASK_FROM_POINTS: np.array([1.0, 0.0], dtype=np.float32),
            Tensor.OBJECT_SCORE_LOGITS: np.array([[2.5], [-1.5]], dtype=np.float32),
        },
        {  # mask-input frame: a 1024x1024 +-10 mask
            Tensor.VISION_FEATURES: v[-1:],
            Tensor.MASK_LOGITS: _blob_masks(rng, 1, 1024, 10.0),
            Tensor.IS_MASK_FROM_POINTS: np.zeros(1, dtype=np.float32),
            Tensor.OBJECT_SCORE_LOGITS: np.array([[10.0]], dtype=np.float32),
        },
        {  # sigmoid path on continuous logits
            Tensor.VISION_FEATURES: v[0:1],
            Tensor.MASK_LOGITS: smooth,
            Tensor.IS_MASK_FROM_POINTS: np.zeros(2, dtype=np.float32),
            Tensor.OBJECT_SCORE_LOGITS: np.array([[0.7], [3.0]], dtype=np.float32),
        },
    ]


def verification_cases(
    model: Any, names: Sequence[str], images: Sequence[np.ndarray] | None = None, seed: int = 0
) -> dict[str, list[dict[str, np.ndarray]]]:
    """Feeds per artifact name. The encoder gets a batch of 2 images and a batch of 1."""
    images = list(images) if images is not None else verification_images()
    rng = np.random.default_rng(seed)
    batch, feats = _features(model, images[:3])
    out: dict[str, list[dict[str, np.ndarray]]] = {}
    if Artifact.IMAGE_ENCODER in names:
        out[Artifact.IMAGE_ENCODER] = [{Tensor.IMAGE: batch[:2]}, {Tensor.IMAGE: batch[2:3] if len(batch) > 2 else batch[:1]}]
    if Artifact.PROMPT_DECODER in names:
        out[Artifact.PROMPT_DECODER] = _decoder_cases(feats, rng)
    if Artifact.MEMORY_ATTENTION in names:
        perceiver = getattr(model, "spatial_perceiver", None)
        frame_shape = (perceiver.num_tokens, perceiver.cfg.dim) if perceiver is not None else (64, 64, 64)
        out[Artifact.MEMORY_ATTENTION] = _memory_attention_cases(feats, rng, frame_shape)
    if Artifact.MEMORY_ENCODER in names:
        out[Artifact.MEMORY_ENCODER] = _memory_encoder_cases(feats, rng)
    return out
