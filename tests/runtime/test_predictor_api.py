"""The image predictor's API contract: shapes, batching rules, caches, and typed errors.

Uses a real hiera_tiny model with random weights (no stubs); the images are encoded once
per module. Every bad call must raise an InputError naming the argument and leave every
cache exactly as it was.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from sam2edge.errors import InputError, Sam2EdgeError, UnknownImageHashError
from tests.oracle import test_images

torch = pytest.importorskip("torch")

NAME = "sam2.1_hiera_tiny"


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    from sam2edge.model.checkpoint import write_random_checkpoint

    return write_random_checkpoint(tmp_path_factory.mktemp("ckpt") / f"{NAME}.pt", NAME, seed=11)


@pytest.fixture(scope="module")
def model(ckpt):
    from sam2edge import AutoModel
    from sam2edge.cache import Sam2ImageEmbeddingsInMemoryCache, Sam2LowResolutionMasksInMemoryCache

    return AutoModel.from_pretrained(
        str(ckpt),
        sam2_image_embeddings_cache=Sam2ImageEmbeddingsInMemoryCache.init(size_limit=4),
        sam2_low_resolution_masks_cache=Sam2LowResolutionMasksInMemoryCache.init(size_limit=16),
    )


@pytest.fixture(scope="module")
def coffee(model):
    img = test_images()["coffee"][:, :, ::-1].copy()  # BGR, as cv2 would read it
    emb = model.embed_images(img)[0]
    return img, emb


def _snapshot(model):
    e, m = model._sam2_image_embeddings_cache, model._sam2_low_resolution_masks_cache
    return (e.stats(), sorted(e.keys()), m.stats())


def test_shapes_single_and_batched_prompts(model, coffee):
    img, emb = coffee
    h, w = img.shape[:2]
    r = model.segment_images(embeddings=emb, point_coordinates=np.array([[100, 150]]), point_labels=np.array([1]))[0]
    assert r.masks.shape == (3, h, w) and r.masks.dtype == bool
    assert r.scores.shape == (3,) and r.logits.shape == (3, 256, 256)
    assert r.logits.min() >= -32 and r.logits.max() <= 32
    r = model.segment_images(embeddings=emb, boxes=np.array([[10, 10, 100, 100], [50, 60, 300, 200]]), multi_mask_output=False)[0]
    assert r.masks.shape == (2, 1, h, w) and r.scores.shape == (2, 1)
    r = model.segment_images(embeddings=emb, point_coordinates=np.array([[[100, 150]], [[300, 200]]]),
                             point_labels=np.array([[1], [1]]), return_logits=True)[0]
    assert r.masks.shape == (2, 3, h, w) and r.masks.dtype == np.float32


def test_batched_boxes_equal_one_at_a_time(model, coffee):
    _, emb = coffee
    boxes = np.array([[10, 10, 100, 100], [50, 60, 300, 200], [200, 20, 590, 390]], dtype=np.float32)
    batched = model.segment_images(embeddings=emb, boxes=boxes)[0]
    for i, b in enumerate(boxes):
        one = model.segment_images(embeddings=emb, boxes=b)[0]
        np.testing.assert_allclose(batched.logits[i], one.logits, atol=1e-4)
        np.testing.assert_allclose(batched.scores[i], one.scores, atol=1e-5)


def test_bgr_default_and_rgb_flag_agree(model, coffee):
    img, emb = coffee
    rgb = np.ascontiguousarray(img[:, :, ::-1])
    a = model.embed_images(rgb, input_color_format="rgb", use_embeddings_cache=False)[0]
    np.testing.assert_array_equal(a.embeddings, emb.embeddings)
    assert a.image_hash == emb.image_hash  # identity is the RGB content


def test_torch_tensor_input_and_torch_output(model, coffee):
    img, emb = coffee
    chw = torch.from_numpy(np.ascontiguousarray(img[:, :, ::-1])).permute(2, 0, 1)  # RGB CHW uint8
    e = model.embed_images(chw, use_embeddings_cache=False)[0]
    np.testing.assert_allclose(e.embeddings, emb.embeddings, atol=1e-5)
    r = model.segment_images(embeddings=emb, boxes=np.array([10, 10, 200, 200]), output="torch")[0]
    assert isinstance(r.masks, torch.Tensor) and r.masks.shape[0] == 3


def test_image_hashes_use_the_cache(model, coffee):
    img, emb = coffee
    before = model._sam2_image_embeddings_cache.stats()["hits"]
    r = model.segment_images(image_hashes=emb.image_hash, point_coordinates=np.array([[10, 20]]), point_labels=np.array([1]))
    assert model._sam2_image_embeddings_cache.stats()["hits"] == before + 1
    assert r[0].masks.shape[1:] == img.shape[:2]


def test_mask_cache_refinement_uses_prior_prompt(model, coffee):
    img, _ = coffee
    p1 = np.array([[120, 160]])
    model.segment_images(img, point_coordinates=p1, point_labels=np.array([1]), use_mask_input_cache=True)
    p2 = np.array([[120, 160], [300, 200]])
    refined = model.segment_images(img, point_coordinates=p2, point_labels=np.array([1, 1]), use_mask_input_cache=True)[0]
    plain = model.segment_images(img, point_coordinates=p2, point_labels=np.array([1, 1]))[0]
    assert not np.allclose(refined.logits, plain.logits)
    # Nothing cached for this prompt's subsets: no failure, same as a plain call.
    p3 = np.array([[5, 5], [6, 6]])
    a = model.segment_images(img, point_coordinates=p3, point_labels=np.array([1, 0]), use_mask_input_cache=True)[0]
    b = model.segment_images(img, point_coordinates=p3, point_labels=np.array([1, 0]))[0]
    np.testing.assert_array_equal(a.logits, b.logits)


H, W = 400, 600  # coffee
BAD_CALLS = {
    "points without labels": (dict(point_coordinates=np.array([[1, 2]])), "point_labels"),
    "labels without points": (dict(point_labels=np.array([1])), "point_coordinates"),
    "3 points, 2 labels": (dict(point_coordinates=np.ones((3, 2)), point_labels=np.array([1, 1])), "point_labels"),
    "points of shape (2, 3)": (dict(point_coordinates=np.ones((2, 3)), point_labels=np.array([1, 1])), "point_coordinates"),
    "label 2": (dict(point_coordinates=np.ones((1, 2)), point_labels=np.array([2])), "point_labels"),
    "label 0.5": (dict(point_coordinates=np.ones((1, 2)), point_labels=np.array([0.5])), "point_labels"),
    "box of 3 numbers": (dict(boxes=np.array([1, 2, 3])), "boxes"),
    "box with x_max < x_min": (dict(boxes=np.array([100, 10, 50, 80])), "x_max < x_min"),
    "box with y_max < y_min": (dict(boxes=np.array([10, 100, 50, 80])), "y_max < y_min"),
    "point outside the image": (dict(point_coordinates=np.array([[W + 5, 10]]), point_labels=np.array([1])), "outside the image"),
    "negative point": (dict(point_coordinates=np.array([[-1, 10]]), point_labels=np.array([1])), "outside the image"),
    "box outside the image": (dict(boxes=np.array([0, 0, W, H + 50])), "outside the image"),
    "NaN point": (dict(point_coordinates=np.array([[np.nan, 10]]), point_labels=np.array([1])), "NaN"),
    "inf box": (dict(boxes=np.array([0, 0, np.inf, 10])), "NaN or inf"),
    "string points": (dict(point_coordinates=np.array([["a", "b"]]), point_labels=np.array([1])), "dtype"),
    "bool box": (dict(boxes=np.array([True, False, True, True])), "dtype"),
    "mask_input 128x128": (dict(boxes=np.array([0, 0, 50, 50]), mask_input=np.zeros((1, 128, 128))), "mask_input"),
    "3 masks for 2 boxes": (dict(boxes=np.array([[0, 0, 5, 5], [1, 1, 9, 9]]), mask_input=np.zeros((3, 256, 256))), "mask_input"),
    "NaN mask": (dict(boxes=np.array([0, 0, 50, 50]), mask_input=np.full((256, 256), np.nan)), "mask_input"),
    "no prompt": (dict(), "no prompt"),
    "3 boxes and 2 point sets": (dict(boxes=np.ones((3, 4)), point_coordinates=np.ones((2, 1, 2)),
                                      point_labels=np.ones((2, 1))), "point sets"),
    "mask_threshold NaN": (dict(boxes=np.array([0, 0, 5, 5]), mask_threshold=float("nan")), "mask_threshold"),
    "bad output kind": (dict(boxes=np.array([0, 0, 5, 5]), output="pil"), "output"),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_bad_prompts_raise_typed_errors_and_change_no_cache(model, coffee, case):
    img, _ = coffee
    kwargs, needle = BAD_CALLS[case]
    before = _snapshot(model)
    with pytest.raises(InputError) as info:
        model.segment_images(img, use_mask_input_cache=True, **kwargs)
    assert needle in str(info.value), f"{case}: message {info.value!r} does not mention {needle!r}"
    assert _snapshot(model) == before, f"{case}: a failed call changed a cache"
    print(f"{case:28s} -> {type(info.value).__name__}: {info.value}")


BAD_IMAGES = {
    "empty image": (np.zeros((0, 0, 3), np.uint8), "empty"),
    "grayscale (H, W)": (np.zeros((32, 32), np.uint8), "grayscale"),
    "RGBA (H, W, 4)": (np.zeros((32, 32, 4), np.uint8), "4 channels"),
    "float64 image": (np.zeros((32, 32, 3), np.float64), "uint8"),
    "1-D array": (np.zeros(10, np.uint8), "HxWx3"),
    "a string": ("photo.jpg", "image"),
    "empty list": ([], "empty"),
}


@pytest.mark.parametrize("case", list(BAD_IMAGES))
def test_bad_images_raise_typed_errors(model, case):
    image, needle = BAD_IMAGES[case]
    before = _snapshot(model)
    with pytest.raises(InputError) as info:
        model.segment_images(image, boxes=np.array([0, 0, 5, 5]))
    assert needle.lower() in str(info.value).lower(), f"{case}: {info.value!r}"
    with pytest.raises(InputError):
        model.embed_images(image)
    assert _snapshot(model) == before
    print(f"{case:28s} -> {type(info.value).__name__}: {info.value}")


def test_other_bad_calls(model, coffee):
    img, emb = coffee
    with pytest.raises(UnknownImageHashError, match="not in the embeddings cache"):
        model.segment_images(image_hashes="0" * 40, boxes=np.array([0, 0, 5, 5]))
    with pytest.raises(InputError, match="images, embeddings or image_hashes"):
        model.segment_images(boxes=np.array([0, 0, 5, 5]))
    with pytest.raises(InputError, match="SAM2ImageEmbeddings"):
        model.segment_images(embeddings=[np.zeros((1, 256, 64, 64))], boxes=np.array([0, 0, 5, 5]))
    with pytest.raises(InputError, match="input_color_format"):
        model.embed_images(img, input_color_format="hsv")
    with pytest.raises(InputError, match="entries for 2 images"):
        model.segment_images(embeddings=[emb, emb], boxes=[np.array([0, 0, 5, 5])] * 3)
    with pytest.raises(InputError, match="image_hashes"):
        model.embed_images([img, img], image_hashes=["a"])
    assert issubclass(UnknownImageHashError, Sam2EdgeError)


def test_concurrent_segmenting_respects_byte_budget_and_matches_uncached(ckpt):
    from sam2edge import AutoModel
    from sam2edge.cache import Sam2ImageEmbeddingsInMemoryCache

    imgs = [test_images()[n][:, :, ::-1].copy() for n in ("astronaut", "chelsea")]
    plain = AutoModel.from_pretrained(str(ckpt))
    prompt = dict(point_coordinates=np.array([[100, 120]]), point_labels=np.array([1]))
    expected = [plain.segment_images(im, use_embeddings_cache=False, **prompt)[0] for im in imgs]
    one = plain.embed_images(imgs[0], use_embeddings_cache=False)[0].nbytes
    cache = Sam2ImageEmbeddingsInMemoryCache.init(size_limit=10, max_bytes=int(1.5 * one))  # room for one
    model = AutoModel.from_pretrained(str(ckpt), sam2_image_embeddings_cache=cache)
    peak, errors, stop = [0], [], threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], cache.stats()["bytes"])

    def work(k):
        try:
            for j in range(2):
                i = (k + j) % 2
                r = model.segment_images(imgs[i], **prompt)[0]
                np.testing.assert_allclose(r.logits, expected[i].logits, atol=1e-5)
                np.testing.assert_array_equal(r.masks, expected[i].masks)
        except Exception as exc:  # surfaced below
            errors.append(exc)

    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=work, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    watcher.join()
    assert not errors, errors
    stats = cache.stats()
    print(f"concurrent: peak cache bytes {peak[0]} <= budget {stats['max_bytes']}; stats {stats}")
    assert peak[0] <= stats["max_bytes"] and stats["evictions"] >= 1 and len(cache) <= 1
