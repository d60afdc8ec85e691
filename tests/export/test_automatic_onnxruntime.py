"""generate_masks on ONNX Runtime gives the masks it gives on PyTorch, and runs without PyTorch at all.

Reuses the session's one export of random tiny weights (``tiny_export``). Plain random weights
give nearly the same mask for every point, so the filters are relaxed (IoU and stability off,
NMS only for exact duplicates) to compare many masks, single-mask and mask-to-mask included
(crops are backend-independent host logic, compared with the official generator in
tests/runtime/test_automatic_oracle.py).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("skimage")

from sam2edge.backends.onnxruntime_runner import make_onnxruntime_runners  # noqa: E402
from sam2edge.backends.torch_runner import make_torch_runners  # noqa: E402
from sam2edge.contract.artifacts import Artifact  # noqa: E402
from sam2edge.runtime.image.predictor import SAM2  # noqa: E402
from tests.oracle import test_images  # noqa: E402

PARTS = Artifact.IMAGE
RELAXED = dict(points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)


def _image() -> np.ndarray:
    return cv2.resize(test_images()["coffee"], (200, 150), interpolation=cv2.INTER_AREA)


def _match(a: list[dict], b: list[dict]) -> tuple[float, float, float]:
    """One-to-one match by mask IoU -> (min IoU, max |d predicted_iou|, max |d stability|)."""
    from scipy.optimize import linear_sum_assignment

    assert len(a) == len(b)
    x = np.stack([r["segmentation"].ravel() for r in a]).astype(np.float32)
    y = np.stack([r["segmentation"].ravel() for r in b]).astype(np.float32)
    inter = x @ y.T
    iou = inter / np.maximum(x.sum(1)[:, None] + y.sum(1)[None] - inter, 1)
    # Ties (duplicate masks) are broken by predicted IoU so that pairs carry the same scores.
    score = iou - 1e-3 * np.abs(np.array([r["predicted_iou"] for r in a])[:, None] - [r["predicted_iou"] for r in b])
    rows, cols = linear_sum_assignment(-score)
    d_iou = max(abs(a[i]["predicted_iou"] - b[j]["predicted_iou"]) for i, j in zip(rows, cols))
    d_stab = max(abs(a[i]["stability_score"] - b[j]["stability_score"]) for i, j in zip(rows, cols))
    return float(iou[rows, cols].min()), d_iou, d_stab


@pytest.mark.parametrize("extra", [{}, {"use_m2m": True, "multimask_output": False}])
def test_onnxruntime_masks_match_torch(tiny_export, extra):
    pytest.importorskip("scipy")
    cfg = tiny_export.model.cfg
    ort_model = SAM2(make_onnxruntime_runners(tiny_export.onnx_dir, threads=2, artifacts=list(PARTS)), cfg,
                     preprocessing="exact")
    pt_model = SAM2(make_torch_runners(tiny_export.model, artifacts=PARTS), cfg, preprocessing="exact")
    a = ort_model.generate_masks(_image(), input_color_format="rgb", **RELAXED, **extra)
    b = pt_model.generate_masks(_image(), input_color_format="rgb", **RELAXED, **extra)
    min_iou, d_iou, d_stab = _match(a, b)
    print(f"generate_masks ORT vs torch {extra or 'multimask'}: {len(a)} masks, min IoU {min_iou:.5f}, "
          f"max |d predicted_iou| {d_iou:.1e}, max |d stability| {d_stab:.1e}")
    assert len(a) >= 16
    assert min_iou >= 0.99 and d_iou <= 1e-3 and d_stab <= 1e-3


NO_TORCH = textwrap.dedent("""
    import sys
    sys.modules["torch"] = None  # any torch import fails: the light runtime
    import numpy as np
    from sam2edge.backends.onnxruntime_runner import make_onnxruntime_runners
    from sam2edge.config import get_config
    from sam2edge.contract.artifacts import Artifact
    from sam2edge.runtime.image.predictor import SAM2

    runners = make_onnxruntime_runners(sys.argv[1], threads=2, artifacts=list(Artifact.IMAGE))
    model = SAM2(runners, get_config("sam2.1_hiera_tiny"))
    image = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    recs = model.generate_masks(image, points_per_side=2, pred_iou_thresh=0, stability_score_thresh=0,
                                output_mode="coco_rle")
    assert recs and all(isinstance(r["segmentation"]["counts"], str) for r in recs)
    print(len(recs), model.preprocessing)
""")


def test_generate_masks_without_torch(tiny_export):
    proc = subprocess.run([sys.executable, "-c", NO_TORCH, str(tiny_export.onnx_dir)], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[1] == "opencv"
