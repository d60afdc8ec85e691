# ruff: noqa: I001  (imports kept in the document's order)
"""The Roboflow inference_models SAM2 document's examples, with only the imports changed.

Run by tests/test_seed_document.py in a folder holding image.jpg, path/to/image.jpg and
image_0.jpg .. image_3.jpg, with SAM2EDGE_MODELS_DIR pointing at a folder that holds a
random-weight "sam2/hiera_b_plus" checkpoint (no network here). Lines marked "# seed"
are the document's own; the others define what the document leaves undefined
(x1, y1, previous_logits ...) and check the results.
"""

import cv2  # seed
import numpy as np  # seed
from sam2edge import AutoModel  # seed (was: from inference_models import AutoModel)
from sam2edge.cache import Sam2ImageEmbeddingsInMemoryCache  # seed (was inference_models.models.sam2.cache)
from sam2edge.cache import Sam2LowResolutionMasksInMemoryCache  # seed

# -- Usage Example -------------------------------------------------------------------
model = AutoModel.from_pretrained("sam2/hiera_b_plus", api_key="your_api_key")  # seed
image = cv2.imread("path/to/image.jpg")  # seed
embeddings = model.embed_images(image)  # seed
point_coords = np.array([[100, 150]])  # seed
point_labels = np.array([1])  # seed
results = model.segment_images(embeddings=embeddings, point_coordinates=point_coords, point_labels=point_labels)  # seed
masks = results[0].masks  # seed
scores = results[0].scores  # seed
logits = results[0].logits  # seed
best_mask_idx = scores.argmax()  # seed
best_mask = masks[best_mask_idx]  # seed
assert masks.shape == (3, *image.shape[:2]) and scores.shape == (3,) and logits.shape == (3, 256, 256)
assert best_mask.shape == image.shape[:2]

# -- Prompting Options -----------------------------------------------------------------
x1, y1, x2, y2 = 60, 80, 300, 260
point_coords = np.array([[x1, y1], [x2, y2]])  # seed
point_labels = np.array([1, 1])  # seed
assert model.segment_images(embeddings=embeddings, point_coordinates=point_coords, point_labels=point_labels)[0].masks.shape[0] == 3
point_coords = np.array([[x1, y1]])  # seed
point_labels = np.array([0])  # seed
assert model.segment_images(embeddings=embeddings, point_coordinates=point_coords, point_labels=point_labels)[0].scores.shape == (3,)
boxes = np.array([[50, 50, 200, 200]])  # seed
results = model.segment_images(embeddings=embeddings, boxes=boxes)  # seed
assert results[0].masks.shape == (3, *image.shape[:2])
previous_logits = results[0].logits[results[0].scores.argmax()][None]  # the best mask's low-res logits
results = model.segment_images(  # seed
    embeddings=embeddings,  # seed
    point_coordinates=point_coords,  # seed
    point_labels=point_labels,  # seed
    mask_input=previous_logits,  # seed
)  # seed
assert results[0].logits.shape == (3, 256, 256)

# -- Batch Processing --------------------------------------------------------------------
images = [cv2.imread(f"image_{i}.jpg") for i in range(4)]  # seed
embeddings = model.embed_images(images)  # seed
point_coords = [np.array([[100, 150]])] * 4  # seed
point_labels = [np.array([1])] * 4  # seed
results = model.segment_images(embeddings=embeddings, point_coordinates=point_coords, point_labels=point_labels)  # seed
assert len(results) == 4 and all(r.masks.shape == (3, *im.shape[:2]) for r, im in zip(results, images))

# -- 1. Image Embeddings Cache -------------------------------------------------------------
embeddings_cache = Sam2ImageEmbeddingsInMemoryCache.init(  # seed
    size_limit=100,  # seed
    send_to_cpu=True,  # seed
)  # seed
model = AutoModel.from_pretrained(  # seed
    "sam2/hiera_b_plus",  # seed
    api_key="your_api_key",  # seed
    sam2_image_embeddings_cache=embeddings_cache,  # seed
)  # seed
image = cv2.imread("image.jpg")  # seed
embeddings = model.embed_images(image, use_embeddings_cache=True)  # seed
for point in [(100, 150), (200, 250), (300, 350)]:  # seed
    results = model.segment_images(  # seed
        embeddings=embeddings,  # seed
        point_coordinates=np.array([[point[0], point[1]]]),  # seed
        point_labels=np.array([1]),  # seed
    )  # seed
    assert results[0].masks.shape == (3, *image.shape[:2])
again = model.embed_images(image, use_embeddings_cache=True)
assert np.array_equal(again[0].embeddings, embeddings[0].embeddings)

# -- 2. Low-Resolution Masks Cache -----------------------------------------------------------
masks_cache = Sam2LowResolutionMasksInMemoryCache.init(  # seed
    size_limit=500,  # seed
    send_to_cpu=True,  # seed
)  # seed
model = AutoModel.from_pretrained(  # seed
    "sam2/hiera_b_plus",  # seed
    api_key="your_api_key",  # seed
    sam2_image_embeddings_cache=embeddings_cache,  # seed
    sam2_low_resolution_masks_cache=masks_cache,  # seed
)  # seed
results = model.segment_images(  # seed
    image,  # seed
    point_coordinates=np.array([[100, 150]]),  # seed
    point_labels=np.array([1]),  # seed
    use_mask_input_cache=True,  # seed
)  # seed
refined_results = model.segment_images(  # seed
    image,  # seed
    point_coordinates=np.array([[100, 150], [120, 160]]),  # seed
    point_labels=np.array([1, 1]),  # seed
    use_mask_input_cache=True,  # seed
)  # seed
# The refinement really used the cached mask: without it the result differs.
plain = model.segment_images(image, point_coordinates=np.array([[100, 150], [120, 160]]), point_labels=np.array([1, 1]))
assert not np.allclose(plain[0].logits, refined_results[0].logits)
print("seed document: all examples ran")
