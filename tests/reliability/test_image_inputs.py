"""Bad arguments of the image API: typed errors naming the argument, and no state changed (issue 13).

Probes that failed on the earlier main: mask_threshold='abc', max_batch_size=0, max_sprinkle_area='x'
and embeddings with image_size_hw=(0, 0) crashed with untyped errors; max_hole_area NaN or negative
silently turned the clean-up off; images and embeddings together were accepted; unknown keyword
arguments (multimask_output, point_coords, box) were swallowed and the call did something else; a
label of 2**32 + 1 wrapped to 1.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sam2edge.cache import Sam2ImageEmbeddingsInMemoryCache
from sam2edge.errors import InputError
from tests.reliability.fakes import fake_model

IMG = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def model():
    return fake_model(sam2_image_embeddings_cache=Sam2ImageEmbeddingsInMemoryCache.init(size_limit=4))


@pytest.fixture(scope="module")
def emb(model):
    return model.embed_images(IMG)[0]


@pytest.mark.parametrize("kwargs, needle", [
    ({"max_batch_size": 0}, "max_batch_size must be a positive integer"),
    ({"max_batch_size": 2.5}, "max_batch_size must be a positive integer"),
    ({"max_sprinkle_area": "x"}, "max_sprinkle_area must be a number"),
    ({"max_hole_area": float("nan")}, "max_hole_area must be a finite number"),
    ({"max_hole_area": -1}, "max_hole_area must be >= 0"),
    ({"preprocessing": "fast"}, "preprocessing must be one of"),
])
def test_constructor_refuses(kwargs, needle):
    with pytest.raises(InputError, match=needle):
        fake_model(**kwargs)


@pytest.mark.parametrize("kwargs, needle", [
    ({"mask_threshold": "abc"}, "mask_threshold must be a number"),
    ({"mask_threshold": float("inf")}, "mask_threshold must be a finite number"),
    ({"multimask_output": False}, "did you mean 'multi_mask_output'"),
    ({"point_coords": np.array([[1, 1]])}, "did you mean 'point_coordinates'"),
    ({"box": np.array([1, 1, 5, 5])}, "did you mean 'boxes'"),
    ({"return_logits": "no"}, "return_logits must be True or False"),
    ({"point_labels": np.array([2**32 + 1])}, r"must be 0 \(background\) or 1 \(foreground\)"),
])
def test_segment_images_refuses(model, emb, kwargs, needle):
    args = {"embeddings": emb, "point_coordinates": np.array([[10, 10]]), "point_labels": np.array([1]), **kwargs}
    before = model._sam2_image_embeddings_cache.stats()
    with pytest.raises(InputError, match=needle):
        model.segment_images(**args)
    assert model._sam2_image_embeddings_cache.stats() == before


def test_embeddings_are_checked(model, emb):
    with pytest.raises(InputError, match=r"image_size_hw must be \(height, width\) of positive integers"):
        model.segment_images(embeddings=dataclasses.replace(emb, image_size_hw=(0, 0)), boxes=np.array([1, 1, 5, 5]))
    with pytest.raises(InputError, match="image_embed must have shape"):
        model.segment_images(embeddings=dataclasses.replace(emb, embeddings=np.zeros((1, 256, 32, 32))), boxes=np.array([1, 1, 5, 5]))
    with pytest.raises(InputError, match="not both"):
        model.segment_images(IMG, embeddings=emb, boxes=np.array([1, 1, 5, 5]))


def test_embed_images_and_from_pretrained_refuse_unknown_keywords(model):
    with pytest.raises(InputError, match="did you mean 'image_hashes'"):
        model.embed_images(IMG, image_hash="x")
    from sam2edge import AutoModel

    with pytest.raises(InputError, match="did you mean 'store_dir'"):
        AutoModel.from_pretrained("sam2.1_hiera_tiny", engines="x")
