"""Masks on the wire: polygons (Roboflow's ``json``), COCO RLE (``rle``), npz (``binary``), PNG.

Polygons follow Roboflow's ``masks2multipoly``: every external contour of the mask
(OpenCV, ``CHAIN_APPROX_SIMPLE``) as ``[[x, y], ...]`` integer pixels; an empty mask is one
empty polygon ``[[]]``. RLE is pycocotools' compressed string form ``{"size": [h, w],
"counts": "..."}``, decodable by any COCO tool (and by the web page's 20-line decoder).
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from sam2edge.processing.amg import column_runs
from sam2edge.server.problems import bad_request, too_large


def polygons(mask: np.ndarray) -> list[list[list[int]]]:
    """[H,W] bool -> external contours as [[x, y], ...] int lists ([[]] when empty)."""
    import cv2

    m = np.ascontiguousarray(mask, dtype=np.uint8)
    if not m.any():
        return [[]]
    contours = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0]
    return [c.reshape(-1, 2).astype(int).tolist() for c in contours] or [[]]


def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """[H,W] bool -> COCO RLE {"size": [H, W], "counts": str}, the string pycocotools' ``encode`` gives.

    ``encode`` needs a Fortran-ordered uint8 copy (a strided, cache-unfriendly transpose) and then
    walks every pixel in C, holding the GIL; on the server's event loop that was half of the time
    spent per click. Here the run lengths come from ``amg.column_runs`` (OpenCV and numpy, both
    release the GIL) and pycocotools only packs them into its string form (``frPyObjects`` of an
    uncompressed RLE).
    """
    from pycocotools import mask as mask_utils

    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2 or 0 in m.shape:
        raise ValueError(f"rle_encode needs a non-empty [H, W] mask, got shape {m.shape}")
    h, w = m.shape
    rle = mask_utils.frPyObjects({"size": [h, w], "counts": column_runs(m)}, h, w)
    return {"size": [h, w], "counts": rle["counts"].decode("ascii")}


def rle_decode(rle: Any, name: str = "mask", max_pixels: int | None = None) -> np.ndarray:
    """COCO RLE {"size", "counts"} (compressed string) -> [H,W] bool; 400 on anything malformed.

    Decoded here, not by pycocotools: its C decoder trusts the counts to sum to H*W and would
    write past its buffer for a hostile string. Here the runs are parsed and checked first.
    """
    size = rle.get("size") if isinstance(rle, dict) else getattr(rle, "size", None)
    counts = rle.get("counts") if isinstance(rle, dict) else getattr(rle, "counts", None)
    if not (isinstance(size, list | tuple) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        raise bad_request(f"{name}.size must be [height, width] positive integers, got {size!r}")
    if not isinstance(counts, str):
        raise bad_request(f"{name}.counts must be a COCO compressed RLE string, got {type(counts).__name__}")
    h, w = int(size[0]), int(size[1])
    if max_pixels is not None and h * w > max_pixels:
        raise too_large(f"{name} is {w}x{h} pixels; this server accepts at most {max_pixels}")
    runs = _parse_counts(counts, name)
    if any(r < 0 for r in runs) or sum(runs) != h * w:
        raise bad_request(f"{name}.counts does not describe {h}x{w} = {h * w} pixels (runs sum to {sum(runs)})")
    values = np.arange(len(runs)) % 2 == 1  # runs alternate background, foreground, ...
    flat = np.repeat(values, runs)
    return flat.reshape(w, h).T  # COCO RLE runs down the columns


def _parse_counts(counts: str, name: str) -> list[int]:
    """pycocotools' string form: 5-bit groups (char - 48), continuation bit 0x20, sign bit 0x10,
    each run after the second stored as a difference to the run two before."""
    runs: list[int] = []
    p, n = 0, len(counts)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            if p >= n:
                raise bad_request(f"{name}.counts ends in the middle of a number")
            c = ord(counts[p]) - 48
            if c < 0 or c > 63:
                raise bad_request(f"{name}.counts has a character {counts[p]!r} outside the COCO RLE alphabet")
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x)
    return runs


def npz_bytes(**arrays: np.ndarray) -> bytes:
    """Roboflow's ``binary`` format: ``np.savez_compressed`` of the named arrays."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def encode_mask(mask: np.ndarray, fmt: str) -> Any:
    """One [H,W] bool mask in the request's format ("json" -> polygons, "rle" -> COCO RLE)."""
    return rle_encode(mask) if fmt == "rle" else polygons(mask)
