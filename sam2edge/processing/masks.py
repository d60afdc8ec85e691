"""Mask-token selection in numpy, as the official mask decoder does it in torch.

The prompt-decoder artifact returns all four mask tokens; choosing among them happens on
the host so the graph stays free of data-dependent control flow.
"""

from __future__ import annotations

import numpy as np


def stability_scores(logits: np.ndarray, delta: float) -> np.ndarray:
    """logits [...,H,W] -> [...] = |logits > delta| / |logits > -delta| (1 where empty)."""
    flat = logits.reshape(*logits.shape[:-2], -1)
    inter = np.count_nonzero(flat > delta, axis=-1).astype(np.float32)
    union = np.count_nonzero(flat > -delta, axis=-1).astype(np.float32)
    return np.where(union > 0, inter / np.maximum(union, 1), np.float32(1.0))


def choose_mask_tokens(
    masks: np.ndarray,
    iou: np.ndarray,
    multimask: bool,
    dynamic_stability: bool = True,
    delta: float = 0.05,
    thresh: float = 0.98,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """masks [K,4,h,w], iou [K,4] -> (masks [K,M,h,w], iou [K,M], token index [K,M]).

    multimask: tokens 1..3 (M=3). Otherwise token 0 (M=1), except that with dynamic
    stability a prompt whose token-0 stability is below ``thresh`` takes the best of
    tokens 1..3 by predicted IoU instead.
    """
    k = masks.shape[0]
    if multimask:
        idx = np.tile(np.arange(1, 4), (k, 1))
    else:
        idx = np.zeros((k, 1), dtype=np.int64)
        if dynamic_stability:
            best = 1 + np.argmax(iou[:, 1:], axis=-1)
            stable = stability_scores(masks[:, 0], delta) >= thresh
            idx[:, 0] = np.where(stable, 0, best)
    rows = np.arange(k)[:, None]
    return masks[rows, idx], iou[rows, idx], idx
