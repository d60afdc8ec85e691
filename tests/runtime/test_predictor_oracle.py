"""End-to-end parity of the image predictor with the official SAM2ImagePredictor.

Same random-weight checkpoint (every tensor randomised), scikit-image photographs, exact
(PyTorch) preprocessing. The official predictor imports torchvision only for ToTensor /
Resize / Normalize; where torchvision is absent (no CPU wheel here) tests/torchvision_shim.py
provides those three with their documented semantics (bilinear, antialias on).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.oracle import official_model, requires_oracle, test_images

torch = pytest.importorskip("torch")
pytestmark = [requires_oracle, pytest.mark.oracle]

NAME = "sam2.1_hiera_tiny"
IMAGES = ("astronaut", "coffee", "chelsea")
TOL = 1e-4
WORST: dict[str, float] = {}


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    from tests.torchvision_shim import install

    print(f"\noracle transforms from: {install()}")
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    from sam2edge import AutoModel

    official = official_model(NAME)
    ckpt = tmp_path_factory.mktemp("ckpt") / f"{NAME}.pt"
    torch.save({"model": official.state_dict()}, ckpt)
    ours = AutoModel.from_pretrained(str(ckpt), preprocessing="exact")
    oracle = SAM2ImagePredictor(official)
    embeds = {}
    for name in IMAGES:
        img = test_images()[name]
        embeds[name] = ours.embed_images(img, input_color_format="rgb")[0]
    yield ours, oracle, embeds
    print("\nworst differences vs official SAM2ImagePredictor:")
    for k, v in sorted(WORST.items()):
        print(f"  {k:40s} {v:.3e}")


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _compare(case: str, ours, ref_masks, ref_scores, ref_logits) -> None:
    ref_masks = np.asarray(ref_masks).reshape(np.shape(ours.masks))
    ref_scores = np.asarray(ref_scores).reshape(np.shape(ours.scores))
    ref_logits = np.asarray(ref_logits).reshape(np.shape(ours.logits))
    ious = [_iou(m, r) for m, r in zip(ours.masks.reshape(-1, *ours.masks.shape[-2:]), ref_masks.reshape(-1, *ref_masks.shape[-2:]))]
    ds = float(np.abs(ours.scores - ref_scores).max())
    dl = float(np.abs(ours.logits - ref_logits).max())
    WORST[f"{case} scores"] = max(WORST.get(f"{case} scores", 0.0), ds)
    WORST[f"{case} logits"] = max(WORST.get(f"{case} logits", 0.0), dl)
    WORST[f"{case} 1-IoU"] = max(WORST.get(f"{case} 1-IoU", 0.0), 1 - min(ious))
    assert min(ious) >= 0.999, f"{case}: mask IoU {min(ious):.5f}"
    assert ds <= TOL, f"{case}: scores differ by {ds:.3e}"
    assert dl <= TOL, f"{case}: low-res logits differ by {dl:.3e}"


def _set(oracle, name):
    if getattr(oracle, "_sam2edge_image", None) != name:
        oracle.set_image(test_images()[name])
        oracle._sam2edge_image = name


def _prompts(name: str, seed: int):
    h, w = test_images()[name].shape[:2]
    rng = np.random.default_rng(seed)
    pts = np.stack([rng.uniform(0, w, 3), rng.uniform(0, h, 3)], axis=1).astype(np.float32)
    x0, y0 = rng.uniform(0, w / 2), rng.uniform(0, h / 2)
    box = np.array([x0, y0, x0 + rng.uniform(20, w / 2), y0 + rng.uniform(20, h / 2)], dtype=np.float32)
    return pts, box


@pytest.mark.parametrize("image", IMAGES)
@pytest.mark.parametrize("multimask", [True, False])
def test_points_boxes_and_combinations(pair, image, multimask):
    ours, oracle, embeds = pair
    _set(oracle, image)
    pts, box = _prompts(image, seed=len(image))
    cases = {
        "1 positive point": dict(point_coords=pts[:1], point_labels=np.array([1])),
        "positive + negative points": dict(point_coords=pts[:2], point_labels=np.array([1, 0])),
        "box": dict(box=box),
        "box + points": dict(point_coords=pts[:2], point_labels=np.array([1, 0]), box=box),
    }
    for case, kw in cases.items():
        m, s, lo = oracle.predict(multimask_output=multimask, **kw)
        r = ours.segment_images(
            embeddings=embeds[image], point_coordinates=kw.get("point_coords"), point_labels=kw.get("point_labels"),
            boxes=kw.get("box"), multi_mask_output=multimask,
        )[0]
        _compare(f"{case} mm={multimask}", r, m, s, lo)


@pytest.mark.parametrize("image", IMAGES)
def test_mask_refinement(pair, image):
    ours, oracle, embeds = pair
    _set(oracle, image)
    pts, _ = _prompts(image, seed=7)
    m, s, lo = oracle.predict(point_coords=pts[:1], point_labels=np.array([1]), multimask_output=True)
    prev = lo[np.argmax(s)][None]
    m2, s2, lo2 = oracle.predict(point_coords=pts[:2], point_labels=np.array([1, 1]), mask_input=prev, multimask_output=False)
    r = ours.segment_images(embeddings=embeds[image], point_coordinates=pts[:2], point_labels=np.array([1, 1]),
                            mask_input=prev, multi_mask_output=False)[0]
    _compare("mask refinement", r, m2, s2, lo2)


def test_batched_boxes_one_image(pair):
    ours, oracle, embeds = pair
    _set(oracle, "coffee")
    h, w = test_images()["coffee"].shape[:2]
    boxes = np.array([[10, 20, 200, 220], [150, 50, 500, 390], [300, 100, w - 1, h - 1]], dtype=np.float32)
    for mm in (False, True):
        m, s, lo = oracle.predict(box=boxes, multimask_output=mm)
        r = ours.segment_images(embeddings=embeds["coffee"], boxes=boxes, multi_mask_output=mm)[0]
        assert r.masks.shape == (3, 3 if mm else 1, h, w)
        _compare(f"3 boxes batched mm={mm}", r, m, s, lo)


def test_batched_images_broadcast_prompt(pair):
    ours, oracle, embeds = pair
    names = ["astronaut", "chelsea"]
    imgs = [test_images()[n] for n in names]
    oracle.set_image_batch(imgs)
    pt = np.array([[120.0, 140.0]], dtype=np.float32)
    ms, ss, los = oracle.predict_batch([pt, pt], [np.array([1]), np.array([1])], multimask_output=True)
    results = ours.segment_images(imgs, input_color_format="rgb", point_coordinates=pt, point_labels=np.array([1]))
    assert len(results) == 2
    for r, m, s, lo in zip(results, ms, ss, los):
        _compare("batched images, broadcast point", r, m, s, lo)
    oracle._sam2edge_image = None
