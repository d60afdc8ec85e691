"""The image predictor on ONNX Runtime matches it on PyTorch, and runs without PyTorch at all."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("skimage")

from sam2edge.backends.onnxruntime_runner import make_onnxruntime_runners  # noqa: E402
from sam2edge.backends.torch_runner import make_torch_runners  # noqa: E402
from sam2edge.runtime.image.predictor import SAM2  # noqa: E402
from tests.oracle import test_images  # noqa: E402

PARTS = ("image_encoder", "prompt_decoder")


def _prompts(h: int, w: int) -> list[dict]:
    return [
        {"point_coordinates": np.array([[w * 0.5, h * 0.5]]), "point_labels": np.array([1]), "multi_mask_output": True},
        {"point_coordinates": np.array([[w * 0.3, h * 0.4], [w * 0.7, h * 0.6]]), "point_labels": np.array([1, 0]),
         "multi_mask_output": False},
        {"boxes": np.array([w * 0.2, h * 0.2, w * 0.8, h * 0.9]), "multi_mask_output": False},
    ]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def test_onnxruntime_predictor_matches_torch_predictor(tiny_export):
    cfg = tiny_export.model.cfg
    ort_model = SAM2(make_onnxruntime_runners(tiny_export.onnx_dir, threads=2, artifacts=list(PARTS)), cfg)
    pt_model = SAM2(make_torch_runners(tiny_export.model, artifacts=PARTS), cfg)
    worst_iou, worst_score = 1.0, 0.0
    for img in test_images().values():
        e_ort = ort_model.embed_images(img, input_color_format="rgb")[0]
        e_pt = pt_model.embed_images(img, input_color_format="rgb")[0]
        for prompt in _prompts(*img.shape[:2]):
            a = ort_model.segment_images(embeddings=e_ort, **prompt)[0]
            b = pt_model.segment_images(embeddings=e_pt, **prompt)[0]
            assert np.asarray(a.masks).shape == np.asarray(b.masks).shape
            ious = [_iou(np.asarray(x) > 0, np.asarray(y) > 0) for x, y in zip(a.masks, b.masks)]
            worst_iou = min(worst_iou, *ious)
            worst_score = max(worst_score, float(np.abs(np.asarray(a.scores) - np.asarray(b.scores)).max()))
    print(f"ORT vs torch predictor over {len(test_images())} images x 3 prompts: "
          f"min mask IoU {worst_iou:.6f}, max score diff {worst_score:.2e}")
    assert worst_iou >= 0.999 and worst_score <= 1e-3


NO_TORCH = textwrap.dedent("""
    import sys

    # As if not installed: `import torch` raises ImportError, importlib.util.find_spec("torch") is None.
    for name in ("torch", "torchvision", "onnx", "onnxscript", "sam2"):
        sys.modules[name] = None
    import numpy as np
    from sam2edge import AutoModel

    model = AutoModel.from_pretrained(sys.argv[1], backend="onnxruntime")
    img = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    pred = model.segment_images(img, point_coordinates=np.array([[200.0, 150.0]]), point_labels=np.array([1]),
                                input_color_format="rgb")[0]
    assert np.asarray(pred.masks).shape[-2:] == (300, 400), np.asarray(pred.masks).shape
    assert sys.modules["torch"] is None and sys.modules["onnx"] is None, "a heavy module was imported"
    print("LIGHT-PATH-OK", model.active_backend, np.asarray(pred.masks).shape, np.asarray(pred.scores).round(3))
""")


def test_segments_with_onnxruntime_when_torch_cannot_be_imported(tiny_export):
    res = subprocess.run([sys.executable, "-c", NO_TORCH, str(tiny_export.onnx_dir)], capture_output=True, text=True,
                         timeout=900)
    print(res.stdout[-2000:], res.stderr[-3000:])
    assert res.returncode == 0
    assert "LIGHT-PATH-OK onnxruntime-cpu" in res.stdout
