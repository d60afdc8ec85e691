"""Fixtures for the engine tests: a real export (the export stage's own code) of the randomised tiny model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

EXPORT_SHA = "e0" * 32  # recorded as the "checkpoint" hash of the random weights


@pytest.fixture(scope="session")
def exported_graphs(tmp_path_factory) -> Path:
    """``<store>/sam2.1_hiera_tiny-e0e0e0e0/onnx`` with prompt_decoder and memory_encoder, exported and
    verified by sam2edge.export (legacy exporter, opset 17) from sam2.1 tiny with random weights."""
    torch = pytest.importorskip("torch", reason="exporting graphs needs torch")
    pytest.importorskip("onnx", reason="exporting graphs needs onnx")
    pytest.importorskip("onnxruntime", reason="the export verifies with onnxruntime")
    from sam2edge.export.onnx_export import export_model
    from sam2edge.model import build_model
    from sam2edge.model.testing import randomize_parameters

    torch.set_num_threads(2)
    out = tmp_path_factory.mktemp("store") / f"sam2.1_hiera_tiny-{EXPORT_SHA[:8]}" / "onnx"
    model = build_model("sam2.1_hiera_tiny").eval()
    randomize_parameters(model, 0)
    image = np.random.default_rng(0).integers(0, 255, (256, 320, 3), dtype=np.uint8)
    with torch.no_grad():
        export_model(model, out, {"path": "random-weights", "sha256": EXPORT_SHA},
                     artifacts=["prompt_decoder", "memory_encoder"], images=[image])
    return out


@pytest.fixture(params=[10, 11], ids=["trt10", "trt11"])
def trt_double(request, monkeypatch):
    """The TensorRT / CUDA runtime / AutoCast doubles (tests/tensorrt_double) for TensorRT 10 and 11, on a
    simulated machine with two GPUs that the driver probe reports."""
    from sam2edge.engines import probes
    from tests.tensorrt_double import install

    doubles = install(monkeypatch, major=request.param)
    monkeypatch.setattr(probes, "cuda_driver_gpus", lambda notes: (doubles.gpu.driver_facts(), "12.8"))
    return doubles


@pytest.fixture
def store_copy(exported_graphs, tmp_path) -> Path:
    """A private store holding a copy of the session's export (builds write engines beside it)."""
    import shutil

    dst = tmp_path / exported_graphs.parent.name / "onnx"
    shutil.copytree(exported_graphs, dst)
    return tmp_path
