"""Device memory for the TensorRT runner: one small interface, two implementations.

Why ``cuda-python`` (NVIDIA's ``cuda.bindings``) and not ``pycuda``:

* it is NVIDIA's maintained binding, ships prebuilt wheels for x86-64 and aarch64 (Jetson),
  and needs no compiler or CUDA toolkit at install time; pycuda builds a C++ extension
  against the toolkit, which fails on the minimal Jetson images we target;
* it uses the device's *primary* context through the runtime API, the same context PyTorch
  and TensorRT use, where ``pycuda.autoinit`` creates its own context that must be pushed
  and popped around every TensorRT call when PyTorch is also present;
* TensorRT's own samples (``samples/python/common_runtime.py``) use it since TensorRT 10.

When PyTorch with CUDA is present, :class:`TorchMemory` allocates through PyTorch's caching
allocator instead, so engine inputs/outputs can be PyTorch tensors (zero copy) and the
memory is shared with the PyTorch backend rather than fragmented between two allocators.

All errors are typed: :class:`DeviceOutOfMemoryError` (a :class:`BackendRuntimeError`, so the
backend layer falls back) and :class:`BackendUnavailableError` when there is no usable GPU.

The current device is a property of the calling *host thread* (CUDA Runtime API, ``cudaSetDevice``:
"Sets device as the current device for the calling host thread"; allocations, streams and kernel
launches of that thread go to it). :meth:`DeviceMemory.make_current` must therefore be called on the
thread that is about to work, before every piece of work, not once at creation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from sam2edge.backends.lazy import available, import_cudart, import_torch
from sam2edge.errors import BackendRuntimeError, BackendUnavailableError


class DeviceOutOfMemoryError(BackendRuntimeError):
    """A device allocation that did not fit in the free GPU memory."""


@dataclass
class DeviceBuffer:
    """A device allocation: raw address, capacity in bytes, and the object that owns it."""

    ptr: int
    nbytes: int
    owner: Any = None  # a torch.Tensor for TorchMemory; None for cudaMalloc'd memory


class DeviceMemory(ABC):
    """Allocate device buffers, copy host <-> device on a stream, synchronise."""

    name: str = "abstract"

    def __init__(self, device_index: int = 0) -> None:
        self.device_index = device_index

    @abstractmethod
    def make_current(self) -> None:
        """Make this memory's device the calling thread's current device (cheap; call before any work)."""

    @abstractmethod
    def alloc(self, nbytes: int) -> DeviceBuffer: ...

    @abstractmethod
    def free(self, buf: DeviceBuffer) -> None: ...

    @abstractmethod
    def new_stream(self) -> Any: ...

    @abstractmethod
    def stream_handle(self, stream: Any) -> int:
        """The ``cudaStream_t`` as an int, for ``IExecutionContext.execute_async_v3``."""

    @abstractmethod
    def upload(self, dst: DeviceBuffer, src: np.ndarray, stream: Any) -> None: ...

    @abstractmethod
    def download(self, dst: np.ndarray, src: DeviceBuffer, stream: Any) -> None: ...

    @abstractmethod
    def synchronize(self, stream: Any) -> None: ...

    def close_stream(self, stream: Any) -> None:  # noqa: B027 - optional hook
        pass


class CudaPythonMemory(DeviceMemory):
    """cudaMalloc / cudaMemcpyAsync through cuda-python. Works without PyTorch.

    Host arrays are ordinary (pageable) numpy memory: the copy is staged by the driver, which
    is correct on every platform; callers synchronise before reading outputs.
    """

    name = "cuda-python"

    def __init__(self, device_index: int = 0) -> None:
        super().__init__(device_index)
        self.rt = import_cudart()
        self.make_current(unavailable=True)

    def make_current(self, unavailable: bool = False) -> None:
        self._check(self.rt.cudaSetDevice(self.device_index), f"cudaSetDevice({self.device_index})", unavailable=unavailable)

    def _check(self, result: Any, what: str, nbytes: int | None = None, unavailable: bool = False) -> Any:
        err = result[0] if isinstance(result, tuple) else result
        if int(err) == 0:
            return result[1] if isinstance(result, tuple) and len(result) > 1 else None
        name = getattr(err, "name", str(err))
        if int(err) == int(self.rt.cudaError_t.cudaErrorMemoryAllocation):
            raise DeviceOutOfMemoryError(f"{what}: out of device memory allocating {nbytes} bytes ({name})")
        if unavailable:
            raise BackendUnavailableError(f"{what} failed: {name}; is there a CUDA GPU and driver?")
        raise BackendRuntimeError(f"{what} failed: {name}")

    def alloc(self, nbytes: int) -> DeviceBuffer:
        ptr = self._check(self.rt.cudaMalloc(max(int(nbytes), 1)), "cudaMalloc", nbytes)
        return DeviceBuffer(int(ptr), int(nbytes))

    def free(self, buf: DeviceBuffer) -> None:
        if buf.ptr:
            self._check(self.rt.cudaFree(buf.ptr), "cudaFree")
            buf.ptr = 0

    def new_stream(self) -> Any:
        return self._check(self.rt.cudaStreamCreate(), "cudaStreamCreate")

    def stream_handle(self, stream: Any) -> int:
        return int(stream)

    def upload(self, dst: DeviceBuffer, src: np.ndarray, stream: Any) -> None:
        src = np.ascontiguousarray(src)
        if src.nbytes > dst.nbytes:
            raise BackendRuntimeError(f"upload of {src.nbytes} bytes into a {dst.nbytes}-byte device buffer")
        kind = self.rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.rt.cudaMemcpyAsync(dst.ptr, src.ctypes.data, src.nbytes, kind, stream), "cudaMemcpyAsync H2D")

    def download(self, dst: np.ndarray, src: DeviceBuffer, stream: Any) -> None:
        if not dst.flags.c_contiguous or dst.nbytes > src.nbytes:
            raise BackendRuntimeError("download needs a contiguous host array no larger than the device buffer")
        kind = self.rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.rt.cudaMemcpyAsync(dst.ctypes.data, src.ptr, dst.nbytes, kind, stream), "cudaMemcpyAsync D2H")

    def synchronize(self, stream: Any) -> None:
        self._check(self.rt.cudaStreamSynchronize(stream), "cudaStreamSynchronize")

    def close_stream(self, stream: Any) -> None:
        self._check(self.rt.cudaStreamDestroy(stream), "cudaStreamDestroy")


class TorchMemory(DeviceMemory):
    """Device memory from PyTorch's caching allocator; buffers are uint8 CUDA tensors."""

    name = "torch"

    def __init__(self, device_index: int = 0) -> None:
        super().__init__(device_index)
        torch = import_torch("device memory through PyTorch")
        if not torch.cuda.is_available():
            raise BackendUnavailableError("PyTorch sees no CUDA device")
        self.torch = torch
        self.device = torch.device("cuda", device_index)
        self.make_current()

    def make_current(self) -> None:
        self.torch.cuda.set_device(self.device)  # cudaSetDevice on the calling thread

    def alloc(self, nbytes: int) -> DeviceBuffer:
        try:
            t = self.torch.empty(max(int(nbytes), 1), dtype=self.torch.uint8, device=self.device)
        except self.torch.cuda.OutOfMemoryError as exc:
            raise DeviceOutOfMemoryError(f"out of device memory allocating {nbytes} bytes: {exc}") from exc
        return DeviceBuffer(int(t.data_ptr()), int(nbytes), owner=t)

    def free(self, buf: DeviceBuffer) -> None:
        buf.owner, buf.ptr = None, 0

    def new_stream(self) -> Any:
        return self.torch.cuda.Stream(device=self.device)

    def stream_handle(self, stream: Any) -> int:
        return int(stream.cuda_stream)

    def upload(self, dst: DeviceBuffer, src: np.ndarray, stream: Any) -> None:
        src = np.ascontiguousarray(src)
        host = self.torch.from_numpy(src.reshape(-1).view(np.uint8))
        with self.torch.cuda.stream(stream):
            dst.owner[: src.nbytes].copy_(host, non_blocking=False)

    def download(self, dst: np.ndarray, src: DeviceBuffer, stream: Any) -> None:
        host = self.torch.from_numpy(dst.reshape(-1).view(np.uint8))
        with self.torch.cuda.stream(stream):
            host.copy_(src.owner[: dst.nbytes], non_blocking=False)

    def synchronize(self, stream: Any) -> None:
        stream.synchronize()


def default_memory(device_index: int = 0, prefer: str = "auto") -> DeviceMemory:
    """PyTorch's allocator when PyTorch sees a GPU (zero-copy with torch tensors), else cuda-python.

    ``prefer``: "auto", "torch" or "cuda-python".
    """
    if prefer in ("auto", "torch"):
        if available("torch") and import_torch().cuda.is_available():
            return TorchMemory(device_index)
        if prefer == "torch":
            raise BackendUnavailableError("device memory through PyTorch needs torch with a CUDA device")
    return CudaPythonMemory(device_index)
