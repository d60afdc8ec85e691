"""The server's COCO RLE encoder gives byte for byte the string pycocotools' ``encode`` gives."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from sam2edge.server.encoding import rle_decode, rle_encode


def coco(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def test_random_masks_of_every_shape_and_density():
    rng = np.random.default_rng(0)
    for _ in range(400):
        h, w = (int(v) for v in rng.integers(1, 48, 2))
        mask = rng.random((h, w)) < rng.random()
        got = rle_encode(mask)
        assert got == coco(mask), (h, w)
        assert np.array_equal(rle_decode(got), mask)


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (720, 1280)])
@pytest.mark.parametrize("fill", [False, True])
def test_uniform_masks_and_thin_shapes(shape, fill):
    mask = np.full(shape, fill)
    assert rle_encode(mask) == coco(mask)
    mask.flat[0] = not fill  # a run of one at the start (a foreground first pixel needs a zero-length first run)
    assert rle_encode(mask) == coco(mask)


def test_large_smooth_and_noisy_masks_and_strided_input():
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[:720, :1280]
    disc = (yy - 300) ** 2 + (xx - 700) ** 2 < 250**2
    noisy = rng.random((720, 1280)) < 0.5
    for mask in (disc, noisy, noisy[::3, 1::2], disc.T):  # .T and slices: not C-contiguous
        assert rle_encode(mask) == coco(mask)


def test_not_a_2d_mask_is_refused():
    for bad in (np.zeros((0, 4), bool), np.zeros((2, 3, 4), bool)):
        with pytest.raises(ValueError, match="rle_encode needs a non-empty"):
            rle_encode(bad)
