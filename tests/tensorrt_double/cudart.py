"""A fake ``cuda.bindings.runtime`` (cuda-python / cuda-bindings) over a :class:`~.gpu.FakeGpu`.

The calling convention is cuda-python's: every function returns a tuple whose first item is a
``cudaError_t`` and whose other items are the results (TensorRT's samples/python/common_runtime.py,
``cuda_call``: ``err, res = call[0], call[1:]``); nothing raises. Streams are ``cudaStream_t``
objects that convert with ``int()``.

Behaviours enforced, with the documentation they follow:

* ``cudaSetDevice`` changes the current device of the calling host thread only (CUDA Runtime API,
  cudaSetDevice); ``cudaMalloc`` and ``cudaStreamCreate`` use the calling thread's current device.
* ``cudaMalloc`` returns 256-byte aligned addresses and fails with cudaErrorMemoryAllocation when the
  device is full (CUDA Programming Guide, Device Memory Accesses; cudaMalloc).
* ``cudaFree`` of an address that cudaMalloc did not return, or twice, fails with cudaErrorInvalidValue
  (cudaFree: "cudaErrorInvalidValue"); ``cudaFree(0)`` does nothing ("If devPtr is 0, no operation is performed").
* ``cudaMemcpyAsync`` checks the kind against the pointers and the ranges against the allocations. A copy
  may use a stream of another device (CUDA Programming Guide, Stream and Event Behavior: "a memory copy will
  succeed even if it is issued to a stream that is not associated to the current device"). With pageable
  host memory the copy is complete on return (CUDA Runtime API, API synchronization behavior: "For transfers
  from device memory to pageable host memory, the function will return only once the copy has completed";
  host to device: "the source buffer may be reused right away"), which is what the double does.
* A synchronising call reports an asynchronous fault; a sticky fault fails every later call
  (cudaError_t, cudaErrorIllegalAddress).
"""

from __future__ import annotations

import types
from typing import Any

from tests.tensorrt_double.gpu import CudaError, CudaFailure, FakeGpu, MemcpyKind

RUNTIME_VERSION = 12060  # what cudaRuntimeGetVersion reports: 1000 * major + 10 * minor


class cudaStream_t:  # noqa: N801 - cuda-python's name
    def __init__(self, handle: int = 0) -> None:
        self._handle = int(handle)

    def __int__(self) -> int:
        return self._handle

    def getPtr(self) -> int:  # noqa: N802 - cuda-python's name
        return self._handle

    def __repr__(self) -> str:
        return f"<cudaStream_t {self._handle:#x}>"


def make_cudart(gpu: FakeGpu) -> types.ModuleType:
    """The fake module; ``gpu`` holds the state every call reads and changes."""
    mod = types.ModuleType("cuda.bindings.runtime")
    mod.cudaError_t = CudaError
    mod.cudaMemcpyKind = MemcpyKind
    mod.cudaStream_t = cudaStream_t

    def api(fn: Any) -> Any:
        def call(*args: Any) -> tuple:
            gpu.record(fn.__name__)
            try:
                out = fn(*args)
            except CudaFailure as exc:
                return (exc.error,)
            return (CudaError.cudaSuccess, *(out if isinstance(out, tuple) else (() if out is None else (out,))))

        call.__name__ = fn.__name__
        setattr(mod, fn.__name__, call)
        return call

    @api
    def cudaSetDevice(device: int) -> None:  # noqa: N802
        gpu.check_sticky()
        gpu.set_device(int(device))

    @api
    def cudaGetDevice() -> int:  # noqa: N802
        return gpu.current_device()

    @api
    def cudaGetDeviceCount() -> int:  # noqa: N802
        return len(gpu.devices)

    @api
    def cudaRuntimeGetVersion() -> int:  # noqa: N802
        return RUNTIME_VERSION

    @api
    def cudaMemGetInfo() -> tuple[int, int]:  # noqa: N802
        gpu.check_sticky()
        dev = gpu.devices[gpu.current_device()]
        return dev.free, dev.total

    @api
    def cudaMalloc(size: int) -> int:  # noqa: N802
        return gpu.malloc(int(size)).ptr

    @api
    def cudaFree(ptr: int) -> None:  # noqa: N802
        if int(ptr) == 0:
            return
        gpu.free(int(ptr))

    @api
    def cudaStreamCreate() -> cudaStream_t:  # noqa: N802
        return cudaStream_t(gpu.new_stream().handle)

    @api
    def cudaStreamDestroy(stream: Any) -> None:  # noqa: N802
        gpu.destroy_stream(int(stream))

    @api
    def cudaStreamSynchronize(stream: Any) -> None:  # noqa: N802
        if gpu.stream(int(stream)) is None:
            gpu.check_sticky()
            raise CudaFailure(CudaError.cudaErrorInvalidResourceHandle, f"stream {int(stream):#x}")
        gpu.synchronize()

    @api
    def cudaDeviceSynchronize() -> None:  # noqa: N802
        gpu.synchronize()

    @api
    def cudaMemcpyAsync(dst: int, src: int, count: int, kind: Any, stream: Any) -> None:  # noqa: N802
        gpu.check_sticky()
        dst, src, count, kind = int(dst), int(src), int(count), MemcpyKind(int(kind))
        if gpu.stream(int(stream)) is None:
            raise CudaFailure(CudaError.cudaErrorInvalidResourceHandle, f"stream {int(stream):#x}")
        if kind == MemcpyKind.cudaMemcpyHostToDevice:
            if gpu.is_device_pointer(src) or gpu.find(dst, count) is None:
                raise CudaFailure(CudaError.cudaErrorInvalidValue, f"H2D {count} bytes {src:#x} -> {dst:#x}")
            gpu.write(dst, gpu.read_host(src, count))
        elif kind == MemcpyKind.cudaMemcpyDeviceToHost:
            if gpu.is_device_pointer(dst) or gpu.find(src, count) is None:
                raise CudaFailure(CudaError.cudaErrorInvalidValue, f"D2H {count} bytes {src:#x} -> {dst:#x}")
            gpu.write_host(dst, gpu.read(src, count))
        elif kind == MemcpyKind.cudaMemcpyDeviceToDevice:
            if gpu.find(src, count) is None or gpu.find(dst, count) is None:
                raise CudaFailure(CudaError.cudaErrorInvalidValue, f"D2D {count} bytes {src:#x} -> {dst:#x}")
            gpu.write(dst, gpu.read(src, count))
        else:
            raise CudaFailure(CudaError.cudaErrorInvalidValue, f"memcpy kind {kind.name} is not simulated")

    @api
    def cudaGetErrorName(error: Any) -> bytes:  # noqa: N802
        return CudaError(int(error)).name.encode()

    return mod
