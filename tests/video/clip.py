"""A synthetic clip: textured background and two textured objects moving across it.

Small on purpose (the model still runs at 1024x1024 per frame). Object boxes per frame are
returned so tests can place prompts on the objects; they are clipped to the frame (the part of
the object one can see; the APIs refuse prompts outside the frame).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Clip:
    frames: list[np.ndarray]  # RGB uint8 [H,W,3]
    boxes: dict[int, list[tuple[float, float, float, float]]]  # obj id -> per-frame (x0, y0, x1, y1)

    def center(self, obj_id: int, frame: int) -> tuple[float, float]:
        x0, y0, x1, y1 = self.boxes[obj_id][frame]
        return (x0 + x1) / 2.0, (y0 + y1) / 2.0


def make_clip(num_frames: int = 8, height: int = 96, width: int = 128, seed: int = 0) -> Clip:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    noise = rng.integers(0, 40, size=(height, width, 3)).astype(np.float32)
    background = np.stack([90 + 30 * np.sin(xx / 7.0), 110 + 25 * np.cos(yy / 5.0), 70 + 20 * np.sin((xx + yy) / 9.0)], -1)
    background = background + noise
    frames, boxes = [], {1: [], 2: []}
    for t in range(num_frames):
        img = background.copy()
        # object 1: a checkered disc moving right
        cx, cy, r = 30 + 5.0 * t, 40 + 2.0 * t, 17
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        checker = ((xx // 4 + yy // 4) % 2).astype(np.float32)
        img[disc] = np.stack([220 * checker + 20, 40 + 0 * checker, 200 - 150 * checker], -1)[disc]
        boxes[1].append(_inside((cx - r, cy - r, cx + r, cy + r), width, height))
        # object 2: a striped square moving down-left
        x0, y0, s = 95 - 4.0 * t, 12 + 3.0 * t, 24
        square = (xx >= x0) & (xx < x0 + s) & (yy >= y0) & (yy < y0 + s)
        stripes = ((xx + yy) // 3 % 2).astype(np.float32)
        img[square] = np.stack([30 + 0 * stripes, 230 * stripes + 10, 60 + 100 * stripes], -1)[square]
        boxes[2].append(_inside((x0, y0, x0 + s, y0 + s), width, height))
        frames.append(np.clip(img, 0, 255).astype(np.uint8))
    return Clip(frames, boxes)


def _inside(box: tuple[float, float, float, float], width: int, height: int) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = box
    return (min(max(x0, 0.0), width), min(max(y0, 0.0), height), min(max(x1, 0.0), width), min(max(y1, 0.0), height))


def write_jpeg_folder(frames: list[np.ndarray], folder: Path, quality: int = 95) -> list[np.ndarray]:
    """Write frames as <i>.jpg (the official loader's layout); return them as PIL decodes them."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    decoded = []
    for i, f in enumerate(frames):
        path = folder / f"{i}.jpg"
        Image.fromarray(f).save(path, quality=quality)
        decoded.append(np.array(Image.open(path).convert("RGB")))
    return decoded
