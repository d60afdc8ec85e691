"""TensorRT and CUDA tests that need the real libraries and a GPU; they skip, with the reason, elsewhere.

On a GPU machine with TensorRT: build the prompt-decoder and memory-encoder engines (fp32 and
fp16) from real exported graphs into a store, load them through the verified path, and compare
them with ONNX Runtime fp32 (mask IoU for fp16).
"""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest

from sam2edge.engines.fingerprint import probe_device
from sam2edge.errors import BackendUnavailableError

HAS_GPU = bool(probe_device().gpus)
needs_gpu = pytest.mark.skipif(not HAS_GPU, reason="no CUDA GPU on this machine (the CUDA driver reports none)")
needs_trt = pytest.mark.skipif(importlib.util.find_spec("tensorrt") is None,
                               reason="TensorRT is not installed here (pip install 'sam2edge[tensorrt]' on a GPU machine)")
has_cuda_python = importlib.util.find_spec("cuda") is not None and importlib.util.find_spec("cuda.bindings") is not None


@pytest.mark.skipif(not has_cuda_python or HAS_GPU, reason="needs cuda-python installed on a machine without a GPU")
def test_cuda_python_without_driver_is_unavailable():
    from sam2edge.backends.cuda_memory import CudaPythonMemory, default_memory

    with pytest.raises(BackendUnavailableError, match="cudaSetDevice"):
        CudaPythonMemory()
    with pytest.raises(BackendUnavailableError):
        default_memory()


def test_tensorrt_runner_without_tensorrt_is_unavailable():
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("TensorRT is installed here")
    from sam2edge.backends.lazy import import_tensorrt

    with pytest.raises(BackendUnavailableError, match="tensorrt"):
        import_tensorrt()


@needs_gpu
@pytest.mark.parametrize("prefer", ["cuda-python", "torch"])
def test_device_memory_round_trip(prefer):
    from sam2edge.backends.cuda_memory import default_memory

    if prefer == "cuda-python" and not has_cuda_python:
        pytest.skip("cuda-python is not installed")
    if prefer == "torch":
        torch = pytest.importorskip("torch")
        if not torch.cuda.is_available():
            pytest.skip("torch has no CUDA")
    mem = default_memory(0, prefer=prefer)
    stream = mem.new_stream()
    host = np.arange(1 << 20, dtype=np.float32)
    buf = mem.alloc(host.nbytes)
    mem.upload(buf, host, stream)
    back = np.empty_like(host)
    mem.download(back, buf, stream)
    mem.synchronize(stream)
    mem.free(buf)
    assert (back == host).all()


@needs_gpu
@needs_trt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_build_load_and_verify_engines(tmp_path, exported_graphs, precision):
    pytest.importorskip("onnxruntime")
    from sam2edge.backends.registry import create_runners
    from sam2edge.contract.artifacts import ARTIFACTS
    from sam2edge.contract.parity import compare_outputs
    from sam2edge.engines.build import build_engines
    from sam2edge.engines.store import ArtifactStore

    onnx_dir = tmp_path / exported_graphs.parent.name / "onnx"
    shutil.copytree(exported_graphs, onnx_dir)
    store = ArtifactStore(tmp_path)
    onnx = store.find_onnx("sam2.1_hiera_tiny")
    engines = build_engines(onnx, store=store, precision=precision, limits={"num_prompts": 4},
                            artifacts=["prompt_decoder", "memory_encoder"], verify=False)
    assert store.problems(engines, engines.fingerprint, onnx) == []
    runners = create_runners("tensorrt", store.runner_sources(onnx, engines), "cuda:0", ("prompt_decoder", "memory_encoder"))
    import onnxruntime as ort

    for name, runner in runners.items():
        spec = ARTIFACTS[name]
        feeds = spec.dummy_inputs("opt", seed=1)
        if name == "prompt_decoder":
            feeds["has_mask_input"][:] = 0
            feeds["point_labels"][:] = 1
            feeds["point_coords"] = np.abs(feeds["point_coords"]) * 300
        sess = ort.InferenceSession(str(onnx_dir / f"{name}.onnx"), providers=["CPUExecutionProvider"])
        ref = dict(zip(spec.output_names, sess.run(None, feeds)))
        fig = compare_outputs(ref, runner.infer(feeds))
        print(precision, name, fig)
        if precision == "fp32":
            assert all(f["max_abs_diff"] < 1e-3 for f in fig.values())
        if "masks" in fig:
            assert fig["masks"]["mask_iou_min"] > (0.99 if precision == "fp32" else 0.9)
        runner.deactivate()
