"""The one place the optional heavy libraries are imported outside ``model/`` and ``export/``.

torch, onnx, onnxruntime, TensorRT, the CUDA runtime bindings and Triton's gRPC client are imported on first use
through these functions, so ``import sam2edge`` and the light runtime need none of them. A
missing library raises :class:`~sam2edge.errors.BackendUnavailableError` with the install
command; :func:`available` asks whether one is installed without importing it.
"""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

from sam2edge.errors import BackendUnavailableError

INSTALL_HINTS = {
    "torch": "pip install 'sam2edge[torch]' (CPU-only machines: pip install torch --index-url "
             "https://download.pytorch.org/whl/cpu)",
    "onnx": "pip install 'sam2edge[export]'",
    "onnxruntime": "pip install 'sam2edge[onnx]' (GPU boxes: 'sam2edge[onnx-gpu]')",
    "tensorrt": "pip install 'sam2edge[tensorrt]' (CUDA 13 drivers: 'sam2edge[tensorrt-cu13]'); on Jetson: JetPack's "
                "python3-libnvinfer and pip install 'sam2edge[jetson]'",
    "cuda": "pip install 'sam2edge[tensorrt]' (cuda-python)",
    "tritonclient": "pip install 'sam2edge[triton]' (tritonclient[grpc])",
}


def available(module: str) -> bool:
    """Whether ``module`` can be imported here (found on the path; not imported)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def loaded(module: str) -> Any | None:
    """The module if something already imported it, else None (never imports)."""
    return sys.modules.get(module)


def _missing(module: str, purpose: str, exc: ImportError) -> BackendUnavailableError:
    hint = INSTALL_HINTS.get(module.split(".")[0], f"pip install {module}")
    return BackendUnavailableError(f"{purpose} needs {module}: {hint} ({exc})")


# Plain import statements (not importlib) so that import-linter sees every heavy import in this file.
def import_torch(purpose: str = "the PyTorch backend") -> Any:
    try:
        import torch
    except ImportError as exc:
        raise _missing("torch", purpose, exc) from exc
    return torch


def import_onnx(purpose: str = "reading ONNX graphs") -> Any:
    try:
        import onnx
    except ImportError as exc:
        raise _missing("onnx", purpose, exc) from exc
    return onnx


def import_onnxruntime(purpose: str = "the ONNX Runtime backend") -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise _missing("onnxruntime", purpose, exc) from exc
    return onnxruntime


# TensorRT 8.x (JetPack 5) builds implicit-batch networks that the ONNX parser refuses, lacks BF16, the
# name-based IO API of 10 (set_input_shape / set_tensor_address / execute_async_v3) is new in 8.5 and the
# IProgressMonitor in 10.0: the code here is written against 10.x and 11.x only.
MIN_TENSORRT_MAJOR = 10


def tensorrt_major(trt: Any) -> int:
    """The major version of an imported ``tensorrt`` module (``"10.16.0.72"`` -> 10; 0 when unreadable)."""
    head = str(getattr(trt, "__version__", "0")).split(".")[0]
    return int(head) if head.isdigit() else 0


def import_tensorrt(purpose: str = "the TensorRT backend") -> Any:
    """``tensorrt``, refused (BackendUnavailableError) below :data:`MIN_TENSORRT_MAJOR`."""
    try:
        import tensorrt
    except ImportError as exc:
        raise _missing("tensorrt", purpose, exc) from exc
    if tensorrt_major(tensorrt) < MIN_TENSORRT_MAJOR:
        raise BackendUnavailableError(
            f"{purpose} needs TensorRT >= {MIN_TENSORRT_MAJOR}, this is TensorRT {getattr(tensorrt, '__version__', '?')} "
            "(JetPack 5 ships 8.5: use JetPack 6 or later, or the ONNX Runtime / PyTorch backends)"
        )
    return tensorrt


def import_cudart(purpose: str = "TensorRT device memory") -> Any:
    """cuda-python's runtime module: ``cuda.bindings.runtime`` (cuda-bindings >= 12.6) or ``cuda.cudart``."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart  # type: ignore[no-redef]
        except ImportError as exc:
            raise _missing("cuda", purpose, exc) from exc
    return cudart


def import_tritonclient_grpc(purpose: str = "the Triton backend") -> Any:
    """``tritonclient.grpc`` (with ``tritonclient.utils``): the client of a Triton Inference Server."""
    try:
        import tritonclient.grpc
    except ImportError as exc:
        raise _missing("tritonclient", purpose, exc) from exc
    return tritonclient.grpc


def triton_server_error(purpose: str = "the Triton backend") -> type[BaseException]:
    """``tritonclient.utils.InferenceServerException``: what the client raises for any failed call."""
    try:
        from tritonclient.utils import InferenceServerException
    except ImportError as exc:
        raise _missing("tritonclient", purpose, exc) from exc
    return InferenceServerException


def import_triton_model_config(purpose: str = "reading Triton model configs") -> Any:
    """``tritonclient.grpc.model_config_pb2``: the ModelConfig protobuf a ``config.pbtxt`` parses into."""
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError as exc:
        raise _missing("tritonclient", purpose, exc) from exc
    return model_config_pb2
