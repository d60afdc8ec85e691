"""Test doubles for TensorRT, the CUDA runtime (cuda-python) and ModelOpt AutoCast, strict to their documented
contracts, so the TensorRT builder, verification and runner run end to end without a GPU.

``install(monkeypatch, major)`` puts a fake ``tensorrt`` (10.16 or 11.1; 8.5 for the version gate), a fake
``cuda.bindings.runtime`` and a fake ``modelopt.onnx.autocast`` into ``sys.modules`` over one simulated
machine (:class:`~.gpu.FakeGpu`). Each module's docstring lists the behaviours it enforces and the
documentation each follows. Nothing here imports sam2edge.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from typing import Any

from tests.tensorrt_double.autocast import make_autocast
from tests.tensorrt_double.cudart import make_cudart
from tests.tensorrt_double.gpu import FakeGpu
from tests.tensorrt_double.tensorrt import make_tensorrt
from tests.tensorrt_double.trt_common import Library

VERSIONS = {8: "8.5.2.2", 10: "10.16.0.72", 11: "11.1.0.106"}
CUDA_BINDINGS_VERSION = "12.9.4"


@dataclass
class Doubles:
    gpu: FakeGpu
    trt: types.ModuleType
    lib: Library
    cudart: types.ModuleType
    autocast_calls: list[dict[str, Any]]

    @property
    def major(self) -> int:
        return self.lib.major


def install(monkeypatch: Any, major: int = 10, devices: int = 2, memory: int = 2 << 30) -> Doubles:
    """Install the doubles into ``sys.modules`` for one test (``monkeypatch`` undoes it)."""
    gpu = FakeGpu(devices, memory)
    trt, lib = make_tensorrt(gpu, VERSIONS[major])
    cudart = make_cudart(gpu)
    cuda, bindings = types.ModuleType("cuda"), types.ModuleType("cuda.bindings")
    cuda.__path__, bindings.__path__ = [], []  # packages, as the real ones
    bindings.__version__ = CUDA_BINDINGS_VERSION
    bindings.runtime, cuda.bindings = cudart, bindings
    autocast, calls = make_autocast()
    modelopt, modelopt_onnx = types.ModuleType("modelopt"), types.ModuleType("modelopt.onnx")
    modelopt.__path__, modelopt_onnx.__path__ = [], []
    modelopt.onnx, modelopt_onnx.autocast = modelopt_onnx, autocast
    for name, module in {"tensorrt": trt, "cuda": cuda, "cuda.bindings": bindings, "cuda.bindings.runtime": cudart,
                         "modelopt": modelopt, "modelopt.onnx": modelopt_onnx, "modelopt.onnx.autocast": autocast}.items():
        monkeypatch.setitem(sys.modules, name, module)
    return Doubles(gpu, trt, lib, cudart, calls)
