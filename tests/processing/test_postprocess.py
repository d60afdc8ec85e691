"""Post-processing: upsampling parity with torch, thresholds, hole and sprinkle filling."""

from __future__ import annotations

import numpy as np
import pytest

from sam2edge.errors import InputError
from sam2edge.processing.postprocess import (
    clamp_logits,
    component_areas,
    fill_holes_and_sprinkles,
    fill_holes_in_mask_scores,
    threshold,
    upsample_logits,
    upsample_masks,
)
from sam2edge.processing.resize import resize_linear

RNG = np.random.default_rng(0)
SIZES = [
    (1080, 1920),
    (480, 640),
    (512, 512),
    (300, 451),
    (257, 255),
    (100, 150),
    (128, 128),
    (256, 256),
    (1, 1),
    (7, 3),
]


def smooth_logits(n: int, c: int, seed: int = 0, scale: float = 12.0) -> np.ndarray:
    """Blobby logits with many components (low-frequency noise, upsampled)."""
    rng = np.random.default_rng(seed)
    coarse = rng.standard_normal((n * c, 24, 24)).astype(np.float32) * scale
    planes = [resize_linear(p, 256, 256) for p in coarse]
    return np.stack(planes).reshape(n, c, 256, 256)


# -- upsampling ------------------------------------------------------------------------
def test_upsample_matches_torch_bilinear():
    torch = pytest.importorskip("torch", reason="torch not installed: no reference to compare with")
    from torch.nn import functional as F

    noise = (RNG.standard_normal((2, 3, 256, 256)) * 8).astype(np.float32)  # hardest case: no smoothness
    print()
    for hw in SIZES:
        ours = upsample_logits(noise, hw)
        ref = F.interpolate(torch.from_numpy(noise), hw, mode="bilinear", align_corners=False).numpy()
        assert ours.shape == (2, 3, *hw) and ours.dtype == np.float32
        diff = np.abs(ours - ref)
        flips = int((threshold(ours) != threshold(ref)).sum())
        print(f"upsample_logits -> {hw}: max {diff.max():.2e} mean {diff.mean():.2e}, mask pixels flipped {flips}")
        assert diff.max() <= 2e-5, hw  # logits of magnitude up to ~40: float rounding only


def test_resize_linear_writes_into_the_given_buffer():
    """``out=`` (used by upsample_logits) fills the caller's buffer with exactly the allocated result."""
    src = (RNG.standard_normal((256, 256)) * 8).astype(np.float32)
    for hw in ((1080, 1920), (256, 256), (7, 3)):
        buf = np.full(hw, np.nan, np.float32)
        got = resize_linear(src, *hw, out=buf)
        assert got is buf
        np.testing.assert_array_equal(buf, resize_linear(src, *hw))
    rgb = (RNG.random((40, 30, 3)) * 255).astype(np.float32)
    buf = np.zeros((90, 70, 3), np.float32)
    assert resize_linear(rgb, 90, 70, out=buf) is buf
    np.testing.assert_array_equal(buf, resize_linear(rgb, 90, 70))
    for bad, what in ((np.zeros((90, 71, 3), np.float32), "shape"), (np.zeros((90, 70, 3), np.float64), "float32"),
                      (np.zeros((70, 90, 3), np.float32).transpose(1, 0, 2), "C-contiguous"), ([0.0], "list")):
        before = bad.copy() if isinstance(bad, np.ndarray) else list(bad)
        with pytest.raises(InputError, match="out must be") as err:
            resize_linear(rgb, 90, 70, out=bad)
        assert what in str(err.value), err.value
        np.testing.assert_array_equal(bad, before)  # untouched


def test_upsample_rejects_bad_input():
    for fn in (upsample_logits, upsample_masks):
        with pytest.raises(InputError, match="low_res"):
            fn(np.zeros((256, 256), np.float32), (10, 10))
        with pytest.raises(InputError, match="orig_hw"):
            fn(np.zeros((1, 1, 256, 256), np.float32), (0, 10))


@pytest.mark.parametrize("thr", [0.0, -1.5, 2.0])
def test_upsample_masks_equals_thresholded_logits(thr):
    """The fused upsample + threshold gives exactly ``upsample_logits(...) > thr``, plane by plane."""
    low = (RNG.standard_normal((2, 3, 256, 256)) * 6).astype(np.float32)
    low[1, 2] = thr  # a plane sitting exactly on the threshold: all False
    for hw in ((1080, 1920), (300, 451), (7, 3)):
        got = upsample_masks(low, hw, thr)
        assert got.dtype == bool and got.shape == (2, 3, *hw)
        np.testing.assert_array_equal(got, upsample_logits(low, hw) > thr)
        assert 0 < got.sum() < got.size and not got[1, 2].any()


def test_threshold_and_clamp():
    x = np.array([-40.0, -0.5, 0.0, 0.25, 33.0], np.float32)
    np.testing.assert_array_equal(threshold(x), [False, False, False, True, True])
    np.testing.assert_array_equal(threshold(x, 0.3), [False, False, False, False, True])
    np.testing.assert_array_equal(clamp_logits(x), [-32.0, -0.5, 0.0, 0.25, 32.0])


# -- connected components and filling --------------------------------------------------
def test_component_areas_uses_8_connectivity():
    b = np.zeros((6, 6), bool)
    b[1, 1] = b[2, 2] = b[3, 3] = True  # a diagonal line: one component under 8-connectivity
    b[5, 0] = True
    areas = component_areas(b)
    assert areas[1, 1] == areas[3, 3] == 3 and areas[5, 0] == 1 and areas[0, 0] == 0


def crafted_plane(thr: float = 0.0) -> np.ndarray:
    """A 40x40 foreground square (thr+5) with a 2x2 hole, a 3x3 hole and a diagonal pair of
    1-pixel holes; a lone 1-pixel sprinkle and a 3x3 sprinkle in the background (thr-5)."""
    p = np.full((64, 64), thr - 5.0, np.float32)
    p[10:50, 10:50] = thr + 5.0
    p[15:17, 15:17] = thr - 1.0  # hole, area 4
    p[30:33, 30:33] = thr - 1.0  # hole, area 9
    p[40, 40] = p[41, 41] = thr  # logits == thr are background: diagonal pair, area 2
    p[55, 5] = thr + 1.0  # sprinkle, area 1
    p[2:5, 55:58] = thr + 1.0  # sprinkle, area 9
    return p


@pytest.mark.parametrize("thr", [0.0, 0.7])
def test_fill_holes_and_sprinkles_crafted(thr):
    plane = crafted_plane(thr)
    out = fill_holes_and_sprinkles(plane[None, None], max_hole_area=4, max_sprinkle_area=1, threshold=thr)[0, 0]
    expected = plane.copy()
    expected[15:17, 15:17] = thr + 10.0
    expected[40, 40] = expected[41, 41] = thr + 10.0
    expected[55, 5] = thr - 10.0
    np.testing.assert_array_equal(out, expected)  # 3x3 hole and sprinkle (area 9) and the outside stay
    both = fill_holes_and_sprinkles(plane[None, None], max_hole_area=9, max_sprinkle_area=9, threshold=thr)[0, 0]
    assert both[31, 31] == thr + 10.0 and both[3, 56] == thr - 10.0
    assert both[0, 0] == plane[0, 0]  # the background (area > 9) is not a hole
    off = fill_holes_and_sprinkles(plane[None, None], 0, 0, thr)
    np.testing.assert_array_equal(off[0, 0], plane)
    assert np.shares_memory(off, plane) is False


def test_fill_holes_in_mask_scores_crafted():
    plane = crafted_plane()
    out = fill_holes_in_mask_scores(plane[None, None], max_area=8)[0, 0]
    expected = plane.copy()
    expected[15:17, 15:17] = 0.1
    expected[40, 40] = expected[41, 41] = 0.1
    np.testing.assert_array_equal(out, expected)  # sprinkles untouched, area-9 hole untouched
    with pytest.raises(InputError, match="max_area"):
        fill_holes_in_mask_scores(plane[None, None], 0)


def _official_connected_components(mask):
    """The official CUDA kernel's contract, computed independently with scikit-image."""
    import torch
    from skimage.measure import label

    m = mask.to(torch.uint8).numpy()
    labels = np.zeros(m.shape, np.int32)
    counts = np.zeros(m.shape, np.int32)
    for i in range(m.shape[0]):
        lab = label(m[i, 0], connectivity=2)
        areas = np.bincount(lab.ravel())
        areas[0] = 0
        labels[i, 0], counts[i, 0] = lab, areas[lab]
    return torch.from_numpy(labels), torch.from_numpy(counts)


def test_fill_matches_official_postprocess(monkeypatch):
    """Our fill + upsample vs the official SAM2Transforms.postprocess_masks and the video
    predictor's fill_holes_in_mask_scores, with the CUDA component kernel replaced by
    scikit-image (8-connectivity)."""
    torch = pytest.importorskip("torch", reason="torch not installed")
    pytest.importorskip("skimage", reason="scikit-image not installed")
    from tests.oracle import have_oracle

    if not have_oracle():
        pytest.skip("official sam2==1.1.0 not installed")
    from tests.torchvision_shim import install

    install()
    import sam2.utils.misc as misc
    from sam2.utils.transforms import SAM2Transforms

    monkeypatch.setattr(misc, "get_connected_components", _official_connected_components)
    logits = smooth_logits(2, 3, seed=1)
    for thr, hole, sprinkle in ((0.0, 40, 25), (1.5, 100, 0), (-1.0, 0, 60)):
        tf = SAM2Transforms(1024, mask_threshold=thr, max_hole_area=hole, max_sprinkle_area=sprinkle)
        ref = tf.postprocess_masks(torch.from_numpy(logits), (300, 451)).numpy()
        filled = fill_holes_and_sprinkles(logits, hole, sprinkle, thr)
        changed = int((filled != logits).sum())
        diff = np.abs(upsample_logits(filled, (300, 451)) - ref).max()
        print(
            f"\nfill thr={thr} hole<={hole} sprinkle<={sprinkle}: {changed} low-res pixels changed, max diff {diff:.2e}"
        )
        assert changed > 0 and diff <= 2e-5
    video = logits.reshape(6, 1, 256, 256)  # the video predictor's [objects, 1, 256, 256]
    ref = misc.fill_holes_in_mask_scores(torch.from_numpy(video), 8).numpy()
    ours = fill_holes_in_mask_scores(video, 8)
    assert int((ours != video).sum()) > 0
    np.testing.assert_array_equal(ours, ref)
