"""A simulated CUDA machine: devices with memory accounting, the current device per host thread, streams,
sticky errors. The fake CUDA runtime (:mod:`.cudart`) and the fake TensorRT (:mod:`.tensorrt`) share one.

Every rule it enforces is a documented CUDA behaviour (cited where enforced); where the documentation
leaves a choice, it takes the stricter one, because a double laxer than the real library hides bugs.

* Current device PER HOST THREAD, device 0 until the thread calls ``cudaSetDevice`` (CUDA Runtime API,
  cudaSetDevice: "Sets device as the current device for the calling host thread ... Any device memory
  subsequently allocated from this host thread using cudaMalloc() ... will be physically resident on device
  ... Any streams or events created from this host thread will be associated with device"; cudaGetDevice:
  "Returns in *device the current device for the calling host thread").
* Allocations are 256-byte aligned (CUDA C++ Programming Guide, Device Memory Accesses: "Any address of a
  variable residing in global memory or returned by one of the memory allocation routines from the driver
  or runtime API is always aligned to at least 256 bytes") and counted against the device's memory:
  an allocation that does not fit fails with cudaErrorMemoryAllocation (cudaMalloc: "cudaErrorMemoryAllocation
  ... in case of failure"); :meth:`FakeGpu.leaks` lists what is still allocated.
* Sticky errors (cudaError_t, cudaErrorIllegalAddress: "This leaves the process in an inconsistent state and
  any further CUDA work will return the same error"): once :attr:`sticky` is set, every call fails with it.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass, field
from enum import IntEnum


class CudaError(IntEnum):
    """The members of cuda-python's ``cudaError_t`` the doubles use (values of driver_types.h)."""

    cudaSuccess = 0
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorNoDevice = 100
    cudaErrorInvalidDevice = 101
    cudaErrorInvalidResourceHandle = 400
    cudaErrorIllegalAddress = 700
    cudaErrorLaunchFailure = 719


class MemcpyKind(IntEnum):
    """cuda-python's ``cudaMemcpyKind``."""

    cudaMemcpyHostToHost = 0
    cudaMemcpyHostToDevice = 1
    cudaMemcpyDeviceToHost = 2
    cudaMemcpyDeviceToDevice = 3
    cudaMemcpyDefault = 4


ALIGNMENT = 256
DEVICE_SPAN = 1 << 40  # device d owns the fake address range [(d + 1) * SPAN, (d + 2) * SPAN)


class CudaFailure(Exception):
    """Raised inside the doubles to abort a call with a CUDA error code (turned into a return value)."""

    def __init__(self, error: CudaError, what: str = "") -> None:
        super().__init__(f"{error.name}: {what}")
        self.error = error


@dataclass
class Allocation:
    ptr: int
    nbytes: int
    device: int
    owner: str  # "cudaMalloc" | "engine" | "context" | ...
    data: bytearray = field(repr=False, default_factory=bytearray)


@dataclass
class Device:
    index: int
    name: str
    total: int
    used: int = 0
    next_ptr: int = 0

    @property
    def free(self) -> int:
        return self.total - self.used


@dataclass
class Stream:
    handle: int
    device: int


class FakeGpu:
    """The shared state of the fake driver: devices, allocations, streams, per-thread current device, errors."""

    def __init__(self, devices: int = 2, memory: int = 2 << 30, name: str = "NVIDIA Fake GPU",
                 compute_capability: str = "8.9") -> None:
        self.lock = threading.RLock()
        self.devices = [Device(i, name, memory, next_ptr=(i + 1) * DEVICE_SPAN) for i in range(devices)]
        self.compute_capability = compute_capability
        self.allocations: dict[int, Allocation] = {}
        self.streams: dict[int, Stream] = {}
        self._next_stream = 0x5000
        self._tls = threading.local()
        self.sticky: CudaError | None = None  # every call fails with it (a corrupted context)
        self.pending: CudaError | None = None  # reported by the next synchronising call (an asynchronous fault)
        self.fail_allocations_after: int | None = None  # that many more allocations succeed, then OOM
        self.calls: list[tuple[str, int, str]] = []  # (api, device current on the calling thread, thread name)

    # -- the current device, per host thread ------------------------------------------------
    def current_device(self) -> int:
        return getattr(self._tls, "device", 0)

    def set_device(self, index: int) -> None:
        if not 0 <= index < len(self.devices):
            raise CudaFailure(CudaError.cudaErrorInvalidDevice, f"device {index} of {len(self.devices)}")
        self._tls.device = index

    def record(self, api: str) -> None:
        self.calls.append((api, self.current_device(), threading.current_thread().name))

    def check_sticky(self) -> None:
        if self.sticky is not None:
            raise CudaFailure(self.sticky, "a previous error left the CUDA context unusable")

    # -- memory ------------------------------------------------------------------------------
    def malloc(self, nbytes: int, owner: str = "cudaMalloc", device: int | None = None) -> Allocation:
        """An allocation on ``device`` (default: the calling thread's current device)."""
        with self.lock:
            self.check_sticky()
            dev = self.devices[self.current_device() if device is None else device]
            size = max(int(nbytes), 1)
            rounded = -(-size // ALIGNMENT) * ALIGNMENT
            if self.fail_allocations_after is not None:
                if self.fail_allocations_after <= 0:
                    raise CudaFailure(CudaError.cudaErrorMemoryAllocation, f"{nbytes} bytes (injected)")
                self.fail_allocations_after -= 1
            if rounded > dev.free:
                raise CudaFailure(CudaError.cudaErrorMemoryAllocation, f"{nbytes} bytes, {dev.free} free")
            alloc = Allocation(dev.next_ptr, size, dev.index, owner, bytearray(size))
            dev.next_ptr += rounded + ALIGNMENT  # a gap: an access past the end lands in no allocation
            dev.used += rounded
            self.allocations[alloc.ptr] = alloc
            return alloc

    def free(self, ptr: int, owner: str = "cudaMalloc") -> None:
        with self.lock:
            self.check_sticky()
            alloc = self.allocations.get(int(ptr))
            if alloc is None or alloc.owner != owner:
                raise CudaFailure(CudaError.cudaErrorInvalidValue, f"{ptr:#x} is not a live {owner} allocation")
            del self.allocations[alloc.ptr]
            self.devices[alloc.device].used -= -(-alloc.nbytes // ALIGNMENT) * ALIGNMENT

    def release(self, alloc: Allocation) -> None:
        """Free what the library itself owns (engine weights, context memory), whatever the error state."""
        with self.lock:
            if self.allocations.pop(alloc.ptr, None) is not None:
                self.devices[alloc.device].used -= -(-alloc.nbytes // ALIGNMENT) * ALIGNMENT

    def find(self, ptr: int, nbytes: int) -> tuple[Allocation, int] | None:
        """The allocation holding ``[ptr, ptr + nbytes)`` and the offset, or None (not device memory)."""
        with self.lock:
            for alloc in self.allocations.values():
                if alloc.ptr <= ptr and ptr + nbytes <= alloc.ptr + alloc.nbytes:
                    return alloc, ptr - alloc.ptr
        return None

    def is_device_pointer(self, ptr: int) -> bool:
        return DEVICE_SPAN <= ptr < (len(self.devices) + 1) * DEVICE_SPAN

    def read(self, ptr: int, nbytes: int, device: int | None = None) -> bytes:
        found = self.find(ptr, nbytes)
        if found is None or (device is not None and found[0].device != device):
            raise CudaFailure(CudaError.cudaErrorIllegalAddress, f"read of {nbytes} bytes at {ptr:#x}")
        alloc, off = found
        return bytes(alloc.data[off:off + nbytes])

    def write(self, ptr: int, data: bytes, device: int | None = None) -> None:
        found = self.find(ptr, len(data))
        if found is None or (device is not None and found[0].device != device):
            raise CudaFailure(CudaError.cudaErrorIllegalAddress, f"write of {len(data)} bytes at {ptr:#x}")
        alloc, off = found
        alloc.data[off:off + len(data)] = data

    @staticmethod
    def read_host(ptr: int, nbytes: int) -> bytes:
        return ctypes.string_at(ptr, nbytes)

    @staticmethod
    def write_host(ptr: int, data: bytes) -> None:
        ctypes.memmove(ptr, data, len(data))

    # -- streams -----------------------------------------------------------------------------
    def new_stream(self) -> Stream:
        with self.lock:
            self.check_sticky()
            self._next_stream += 0x10
            stream = Stream(self._next_stream, self.current_device())
            self.streams[stream.handle] = stream
            return stream

    def stream(self, handle: int) -> Stream | None:
        """A live stream; handle 0 is the legacy default stream of the calling thread's current device."""
        if int(handle) == 0:
            return Stream(0, self.current_device())
        return self.streams.get(int(handle))

    def destroy_stream(self, handle: int) -> None:
        with self.lock:
            self.check_sticky()
            if self.streams.pop(int(handle), None) is None:
                raise CudaFailure(CudaError.cudaErrorInvalidResourceHandle, f"stream {int(handle):#x}")

    def synchronize(self) -> None:
        """Work runs when it is enqueued; a synchronising call reports a pending asynchronous fault once
        (which becomes sticky when it is of the sticky kind, like an illegal address)."""
        self.check_sticky()
        if self.pending is not None:
            error, self.pending = self.pending, None
            if error in (CudaError.cudaErrorIllegalAddress, CudaError.cudaErrorLaunchFailure):
                self.sticky = error
            raise CudaFailure(error, "reported by a synchronising call")

    # -- what tests assert ---------------------------------------------------------------------
    def leaks(self, owners: tuple[str, ...] = ("cudaMalloc", "engine", "context")) -> list[Allocation]:
        with self.lock:
            return [a for a in self.allocations.values() if a.owner in owners]

    def used(self, device: int) -> int:
        return self.devices[device].used

    def driver_facts(self) -> list[tuple[int, str, str, int, int, bool]]:
        """(index, name, compute capability, total, free, integrated) per device, as a driver probe reports."""
        return [(d.index, d.name, self.compute_capability, d.total, d.free, False) for d in self.devices]
