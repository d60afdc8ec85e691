"""The one overlay drawer: masks tinted in their own colours and outlined, prompts on top."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

# BGR, distinct on photos; object i gets PALETTE[i % len(PALETTE)].
PALETTE = ((255, 144, 30), (60, 200, 60), (40, 40, 230), (0, 200, 255), (200, 80, 200), (200, 200, 0),
           (80, 120, 255), (150, 255, 150), (255, 80, 120), (120, 60, 0))
POSITIVE, NEGATIVE, BOX = (0, 200, 0), (0, 0, 230), (0, 220, 255)


def colour(i: int) -> tuple[int, int, int]:
    return PALETTE[i % len(PALETTE)]


def draw_overlay(bgr: np.ndarray, masks: Sequence[np.ndarray] | np.ndarray = (), points: Sequence = (),
                 boxes: Sequence = (), alpha: float = 0.5, colours: Sequence | None = None) -> np.ndarray:
    """A copy of ``bgr`` [H,W,3] with each mask [H,W] bool tinted (its own colour) and outlined in white,
    clicks (x, y, label) as dots (green object, red background) and boxes (x0, y0, x1, y1) in yellow.
    ``colours``: one BGR colour per mask (default: the palette, repeating after 10 masks)."""
    out = bgr.copy()
    masks = [masks] if isinstance(masks, np.ndarray) and masks.ndim == 2 else list(masks)
    for i, mask in enumerate(masks):
        mask = np.asarray(mask, dtype=bool)
        if not mask.any():
            continue
        tint = np.array(colour(i) if colours is None else colours[i], np.float32)
        out[mask] = ((1 - alpha) * out[mask].astype(np.float32) + alpha * tint).astype(np.uint8)
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, (255, 255, 255), 1 if min(bgr.shape[:2]) < 400 else 2)
    r = max(4, round(min(bgr.shape[:2]) / 120))
    for x, y, label in points:
        centre = (round(x), round(y))
        cv2.circle(out, centre, r, POSITIVE if label == 1 else NEGATIVE, -1)
        cv2.circle(out, centre, r, (255, 255, 255), 1)
    for box in boxes:
        if box is not None:
            cv2.rectangle(out, (round(box[0]), round(box[1])), (round(box[2]), round(box[3])), BOX, 2)
    return out
