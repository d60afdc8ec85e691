"""Image input checks, pre-processing parity with the official transform, image hashing."""

from __future__ import annotations

import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from sam2edge.errors import InputError
from sam2edge.processing.preprocess import image_hash, preprocess_opencv, to_rgb_uint8, to_rgb_uint8_list
from sam2edge.processing.resize import antialias_weights

RNG = np.random.default_rng(0)
BGR = RNG.integers(0, 256, (6, 9, 3), dtype=np.uint8)


def test_importing_preprocess_needs_no_torch():
    code = (
        "import sys, numpy as np, sam2edge.cache; from sam2edge.processing import preprocess, postprocess; "
        "from sam2edge.runtime.image import caches; "
        "preprocess.preprocess_opencv(np.zeros((8, 8, 3), np.uint8)); assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- to_rgb_uint8 ----------------------------------------------------------------------
def test_numpy_bgr_default_rgb_option():
    rgb = to_rgb_uint8(BGR)
    np.testing.assert_array_equal(rgb, BGR[..., ::-1])
    assert rgb.flags.c_contiguous and rgb.dtype == np.uint8
    np.testing.assert_array_equal(to_rgb_uint8(BGR, input_color_format="RGB"), BGR)
    with pytest.raises(InputError, match="input_color_format"):
        to_rgb_uint8(BGR, input_color_format="hsv")


def test_pil_image_is_rgb():
    Image = pytest.importorskip("PIL.Image", reason="pillow not installed")
    np.testing.assert_array_equal(to_rgb_uint8(Image.fromarray(BGR)), BGR)
    with pytest.raises(InputError, match="mode 'L'"):
        to_rgb_uint8(Image.fromarray(BGR[..., 0]))


@pytest.mark.parametrize(
    "bad, pattern",
    [
        (np.zeros((0, 4, 3), np.uint8), "empty"),
        (np.zeros((4, 5), np.uint8), "grayscale"),
        (np.zeros((4, 5, 1), np.uint8), "grayscale"),
        (np.zeros((4, 5, 4), np.uint8), "RGBA"),
        (np.zeros((3, 8, 9), np.uint8), "channel-first"),
        (np.zeros((2, 4, 5, 3), np.uint8), "HxWx3"),
        (np.zeros((4, 5, 3), np.float32), r"uint8, got dtype float32 \(for floats"),
        (np.zeros((4, 5, 3), np.int16), "uint8, got dtype int16"),
        ([[1, 2, 3]], "numpy array"),
    ],
)
def test_numpy_rejections_name_the_argument(bad, pattern):
    with pytest.raises(InputError, match=pattern) as info:
        to_rgb_uint8(bad, name="images[2]")
    assert "images[2]" in str(info.value)


def test_torch_tensors():
    torch = pytest.importorskip("torch", reason="torch not installed: tensor inputs not tested")
    rgb = BGR[..., ::-1].copy()
    chw = torch.from_numpy(rgb).permute(2, 0, 1)
    np.testing.assert_array_equal(to_rgb_uint8(chw), rgb)  # tensors are RGB by default
    np.testing.assert_array_equal(to_rgb_uint8(chw[None]), rgb)
    np.testing.assert_array_equal(to_rgb_uint8(chw.float() / 255.0), rgb)  # float in [0, 1]
    np.testing.assert_array_equal(to_rgb_uint8(chw, input_color_format="bgr"), BGR[..., ::-1][..., ::-1])
    batch = to_rgb_uint8_list(torch.stack([chw, chw]))
    assert len(batch) == 2 and all(np.array_equal(b, rgb) for b in batch)
    cases = [
        (torch.stack([chw, chw]), "batch of 2"),
        (chw[:1], "grayscale"),
        (torch.zeros(4, 5, 6, dtype=torch.uint8), "RGBA"),
        (torch.zeros(3, 0, 5), "empty"),
        (torch.full((3, 4, 5), float("nan")), "NaN"),
        (torch.full((3, 4, 5), 255.0), r"\[0, 1\]"),
        (torch.zeros(3, 4, 5, dtype=torch.int32), "dtype torch.int32"),
        (torch.zeros(4, 5), "CHW"),
    ]
    for bad, pattern in cases:
        with pytest.raises(InputError, match=pattern):
            to_rgb_uint8(bad, name="img")


def test_list_of_images():
    out = to_rgb_uint8_list([BGR, BGR], input_color_format="rgb")
    assert len(out) == 2 and np.array_equal(out[1], BGR)
    with pytest.raises(InputError, match="images\\[1\\]"):
        to_rgb_uint8_list([BGR, BGR[..., 0]])
    with pytest.raises(InputError, match="empty"):
        to_rgb_uint8_list([])


# -- pre-processing parity -------------------------------------------------------------
def test_antialias_weights_are_normalised_triangles():
    for n_in, n_out in ((1920, 1024), (1080, 1024), (512, 1024), (5, 3)):
        index, weight = antialias_weights(n_in, n_out)
        np.testing.assert_allclose(weight.sum(axis=1), 1.0, rtol=1e-6)
        assert index.min() >= 0 and index.max() < n_in and weight.min() >= 0


def test_preprocess_torch_is_bit_exact():
    pytest.importorskip("torch", reason="torch not installed: exact path not tested")
    from sam2edge.model.preprocess import preprocess_torch
    from tests.oracle import preprocess_exact, test_images

    images = dict(test_images())
    images["1080p"] = RNG.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    for name, img in images.items():
        out = preprocess_torch(img)
        assert tuple(out.shape) == (1, 3, 1024, 1024)
        assert bool((out == preprocess_exact(img)).all()), name


def _naive(img: np.ndarray, interpolation: int) -> np.ndarray:
    x = cv2.resize(img.astype(np.float32) / 255.0, (1024, 1024), interpolation=interpolation)
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    return ((x - mean) / std).transpose(2, 0, 1)[None]


def test_preprocess_opencv_matches_exact():
    """OpenCV/numpy path vs the official torch transform; bound: max 5e-6, mean 5e-7."""
    pytest.importorskip("torch", reason="torch not installed: no reference to compare with")
    from tests.oracle import preprocess_exact, test_images

    images = dict(test_images())
    images.update(  # the test photos are all enlarged; these shrink one or both axes
        down_1080p=cv2.resize(images["astronaut"], (1920, 1080), interpolation=cv2.INTER_CUBIC),
        noise_1080p=RNG.integers(0, 256, (1080, 1920, 3), dtype=np.uint8),
        noise_wide=RNG.integers(0, 256, (700, 2000, 3), dtype=np.uint8),
        noise_tall=RNG.integers(0, 256, (3000, 200, 3), dtype=np.uint8),
    )
    print()
    for name, img in images.items():
        ref = preprocess_exact(img).numpy()
        t0 = time.perf_counter()
        out = preprocess_opencv(img)
        ms = (time.perf_counter() - t0) * 1e3
        assert out.shape == (1, 3, 1024, 1024) and out.dtype == np.float32
        diff = np.abs(out - ref)
        area = np.abs(_naive(img, cv2.INTER_AREA) - ref).max()
        linear = np.abs(_naive(img, cv2.INTER_LINEAR) - ref).max()
        print(
            f"preprocess_opencv {name:12s} {str(img.shape):16s} max {diff.max():.2e} mean {diff.mean():.2e} "
            f"({ms:.0f} ms) | plain cv2 INTER_AREA max {area:.2e}, INTER_LINEAR max {linear:.2e}"
        )
        assert diff.max() <= 5e-6 and diff.mean() <= 5e-7, name


def test_preprocess_opencv_matches_pillow_without_torch():
    """Torch-free reference: Pillow's float ("F") BILINEAR resize is the same antialiased
    triangle filter (torch's implementation follows Pillow's)."""
    Image = pytest.importorskip("PIL.Image", reason="pillow not installed")
    mean, std = np.array([0.485, 0.456, 0.406], np.float32), np.array([0.229, 0.224, 0.225], np.float32)
    for shape in ((480, 640, 3), (1080, 1920, 3), (300, 2000, 3)):
        img = RNG.integers(0, 256, shape, dtype=np.uint8)
        x = img.astype(np.float32) / np.float32(255.0)
        planes = [np.asarray(Image.fromarray(x[..., c].copy()).resize((1024, 1024), Image.BILINEAR)) for c in range(3)]
        ref = ((np.stack(planes) - mean[:, None, None]) / std[:, None, None])[None]
        diff = np.abs(preprocess_opencv(img) - ref)
        print(f"\npreprocess_opencv vs Pillow {shape}: max {diff.max():.2e} mean {diff.mean():.2e}")
        assert diff.max() <= 5e-6 and diff.mean() <= 5e-7


def test_preprocess_opencv_rejects_bad_input():
    with pytest.raises(InputError, match="rgb"):
        preprocess_opencv(np.zeros((4, 4), np.uint8))


# -- hashing ---------------------------------------------------------------------------
def test_image_hash_content_shape_dtype():
    img = RNG.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    h = image_hash(img)
    assert h == image_hash(img.copy()) and len(h) == 64
    changed = img.copy()
    changed[5, 7, 1] ^= 1
    assert image_hash(changed) != h
    assert image_hash(img.reshape(48, 32, 3)) != h  # same bytes, other shape
    assert image_hash(img.view(np.int8)) != h  # same bytes, other dtype
    strided = np.ascontiguousarray(img[:, ::-1])
    assert image_hash(img[:, ::-1]) == image_hash(strided)


def test_image_hash_torch_matches_numpy():
    torch = pytest.importorskip("torch", reason="torch not installed")
    img = RNG.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    assert image_hash(torch.from_numpy(img)) == image_hash(img)


def test_image_hash_speed_1080p():
    img = RNG.integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        image_hash(img)
        times.append(time.perf_counter() - t0)
    print(f"\nimage_hash 1920x1080x3 uint8: best {min(times) * 1e3:.1f} ms, median {np.median(times) * 1e3:.1f} ms")
    assert min(times) < 0.5  # generous: a content hash of 6 MB, not a pixel loop
