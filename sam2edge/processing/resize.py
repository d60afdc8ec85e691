"""Torch's bilinear resizes, reproduced with OpenCV and numpy (no torch needed).

``resize_linear`` is ``F.interpolate(mode="bilinear", align_corners=False)`` (no antialias)
and ``resize_antialias`` is the same with ``antialias=True``. Both agree with torch on CPU
to float rounding (a few 1e-7 relative); plain ``cv2.resize`` is off by about 1e-4
relative, for two reasons handled here:

1. Torch maps output pixel i to source coordinate ``s * (i + 0.5) - 0.5`` with the ratio
   ``s = in / out`` rounded to float32; OpenCV uses ``in / out`` in double when given a
   destination size, but ``1 / f`` when given a scale factor ``f``. Passing
   ``f = 1 / float32(in / out)`` makes the two coordinates identical.
2. OpenCV's IPP resize computes its own coordinates; IPP is switched off for the call.
   OpenCV keeps that switch per thread, so other threads are not affected.

Antialiasing only matters when an axis shrinks: torch then widens the triangle filter to
the scale factor, which ``antialias_weights`` reproduces and ``_antialias_rows`` applies as
small banded matrix products.
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from sam2edge.errors import InputError

_BLOCK_ROWS = 8  # output rows per matrix product in the antialiased downscale
_GEMM_WORK = 1 << 17  # multiply-adds per product, below OpenBLAS's multi-threading threshold


def resize_linear(src: np.ndarray, out_h: int, out_w: int, out: np.ndarray | None = None) -> np.ndarray:
    """Bilinear resize of a float32 [H,W] or [H,W,C] image like torch (align_corners=False).

    ``out``: an optional C-contiguous float32 destination of the output's shape, written in
    place (saves allocating and copying a full-resolution plane per mask).
    """
    in_h, in_w = src.shape[:2]
    if out is not None:
        _check_out(out, (out_h, out_w, *src.shape[2:]))
    if (in_h, in_w) == (out_h, out_w):
        if out is None:
            return src.copy()
        out[...] = src
        return out
    scale_y = float(np.float32(in_h) / np.float32(out_h))
    scale_x = float(np.float32(in_w) / np.float32(out_w))
    use_ipp = cv2.ipp.useIPP()
    cv2.ipp.setUseIPP(False)
    try:
        res = cv2.resize(src, None, dst=out, fx=1.0 / scale_x, fy=1.0 / scale_y, interpolation=cv2.INTER_LINEAR)
        if res.shape[:2] != (out_h, out_w):  # cannot happen below ~1e7 pixels; stay correct anyway
            res = cv2.resize(src, (out_w, out_h), dst=out, interpolation=cv2.INTER_LINEAR)
    finally:
        cv2.ipp.setUseIPP(use_ipp)
    if out is not None and not np.shares_memory(res, out):  # OpenCV chose its own buffer
        out[...] = res
        return out
    return res


def _check_out(out: object, shape: tuple[int, ...]) -> None:
    """``out`` must be a writable C-contiguous float32 array of exactly ``shape``."""
    if not isinstance(out, np.ndarray) or out.dtype != np.float32 or out.shape != shape:
        got = f"{type(out).__name__} {getattr(out, 'dtype', '')} {getattr(out, 'shape', '')}".strip()
        raise InputError(f"out must be a float32 array of shape {shape}, got {got}")
    if not (out.flags.c_contiguous and out.flags.writeable):
        raise InputError(f"out must be a writable C-contiguous array, got flags {out.flags}")


def resize_antialias(src: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Antialiased bilinear resize of a float32 [H,W,C] image like torch (antialias=True).

    Enlarged axes use ``resize_linear`` (antialias changes nothing there); shrunk axes use
    the widened triangle filter. Width first, then height, in torch's order.
    """
    in_h, in_w = src.shape[:2]
    if in_h <= out_h and in_w <= out_w:
        return resize_linear(src, out_h, out_w)
    x = src
    if in_w < out_w:
        x = resize_linear(x, in_h, out_w)
    elif in_w > out_w:  # colour images without transposing them; a single plane transposes cheaply
        x = _antialias_cols(x, out_w) if x.ndim == 3 else cv2.transpose(_antialias_rows(cv2.transpose(x), out_w))
    if in_h < out_h:
        x = resize_linear(x, out_h, out_w)
    elif in_h > out_h:
        x = _antialias_rows(np.ascontiguousarray(x), out_h)
    return x


def antialias_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """Taps of torch's antialiased bilinear resampling along one axis.

    Output pixel i is centred at s*(i+0.5) in input pixels (s = n_in/n_out); the triangle
    filter has half-width max(s, 1) and is evaluated at the input pixel centres, truncated
    at the borders and normalised to sum 1. Returns (index [n_out,K] int64, weight [n_out,K]
    float32); unused taps have weight 0.
    """
    scale = float(np.float32(n_in) / np.float32(n_out))  # torch's ratio is a float32
    support = max(scale, 1.0)
    centers = scale * (np.arange(n_out) + 0.5)
    first = np.maximum((centers - support + 0.5).astype(np.int64), 0)
    count = np.minimum((centers + support + 0.5).astype(np.int64), n_in) - first
    taps = np.arange(int(count.max()))
    w = np.clip(1.0 - np.abs((taps[None] + first[:, None] - centers[:, None] + 0.5) / support), 0.0, None)
    w[taps[None] >= count[:, None]] = 0.0
    w /= w.sum(axis=1, keepdims=True)
    index = np.minimum(first[:, None] + taps[None], n_in - 1)
    return index, w.astype(np.float32)


@functools.lru_cache(maxsize=32)
def _banded_weights(
    n_in: int, n_out: int, block: int = _BLOCK_ROWS
) -> tuple[tuple[int, int, int, int, np.ndarray], ...]:
    """The resampling matrix [n_out, n_in] cut into dense row blocks (it is banded):
    (i0, i1, j0, j1, weights [i1-i0, j1-j0]) — output rows i0:i1 read input rows j0:j1."""
    index, weight = antialias_weights(n_in, n_out)
    blocks = []
    for i0 in range(0, n_out, block):
        i1 = min(i0 + block, n_out)
        idx, wt = index[i0:i1], weight[i0:i1]
        j0, j1 = int(idx.min()), int(idx.max()) + 1
        dense = np.zeros((i1 - i0, j1 - j0), dtype=np.float32)
        np.add.at(dense, (np.arange(i1 - i0)[:, None].repeat(idx.shape[1], axis=1), idx - j0), wt)
        dense.flags.writeable = False
        blocks.append((i0, i1, j0, j1, dense))
    return tuple(blocks)


@functools.lru_cache(maxsize=32)
def _banded_weights_cols(n_in: int, n_out: int, channels: int) -> tuple[tuple[int, int, int, int, np.ndarray], ...]:
    """``_banded_weights`` for axis 1 of a row-major [rows, n_in * channels] array: each block
    transposed and spread over the interleaved channels (a Kronecker product with the identity,
    whose zeros add nothing to the sums) -> (output cols o0:o1, input cols s0:s1, weights)."""
    eye = np.eye(channels, dtype=np.float32)
    blocks = []
    for i0, i1, j0, j1, dense in _banded_weights(n_in, n_out):
        spread = np.kron(dense.T, eye)
        spread.flags.writeable = False
        blocks.append((i0 * channels, i1 * channels, j0 * channels, j1 * channels, spread))
    return tuple(blocks)


def _antialias_cols(x: np.ndarray, n_out: int) -> np.ndarray:
    """Resample axis 1 of a float32 [H, W, C] array to n_out columns (shrinking).

    A right product per block of output columns, on the row-major layout as it is: the two
    transposes of a 1920x1080x3 image that resampling axis 0 would need took 13 of the 29 ms
    of its resize to 1024x1024, and this pass takes about half the time of transpose + rows.
    (A single plane is not done this way: its blocks are too narrow for good products.)"""
    h, w, channels = x.shape
    flat = np.ascontiguousarray(x).reshape(h, w * channels)
    out = np.empty((h, n_out * channels), dtype=np.float32)
    for o0, o1, s0, s1, spread in _banded_weights_cols(w, n_out, channels):
        step = max(64, _GEMM_WORK // spread.size)  # small products, on the calling thread (see below)
        for r0 in range(0, h, step):
            np.matmul(flat[r0 : r0 + step, s0:s1], spread, out=out[r0 : r0 + step, o0:o1])
    return out.reshape(h, n_out, channels)


def _antialias_rows(x: np.ndarray, n_out: int) -> np.ndarray:
    """Resample axis 0 of a contiguous float32 array [N, ...] to n_out rows (shrinking)."""
    flat = x.reshape(x.shape[0], -1)
    cols = flat.shape[1]
    out = np.empty((n_out, cols), dtype=np.float32)
    for i0, i1, j0, j1, dense in _banded_weights(x.shape[0], n_out):
        # Products are kept small so that BLAS runs them on the calling thread: tiny
        # multi-threaded GEMMs are slow and erratic on a busy CPU (measured up to 10x).
        step = max(64, _GEMM_WORK // dense.size)
        src = flat[j0:j1]
        for c0 in range(0, cols, step):
            np.matmul(dense, src[:, c0 : c0 + step], out=out[i0:i1, c0 : c0 + step])
    return out.reshape((n_out,) + x.shape[1:])
