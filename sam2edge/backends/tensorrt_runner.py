"""TensorRT runner on the Runner contract (TensorRT 10.x and 11.x Python API).

* The engine bytes are read and verified against the store manifest (size + sha256) *before*
  ``IRuntime.deserialize_cuda_engine`` sees them (:meth:`ArtifactStore.load_engine_bytes`).
* Device buffers are allocated once at activation, sized from the artifact spec bound to the
  engine's optimisation-profile maxima, through :mod:`sam2edge.backends.cuda_memory`.
* ``infer`` (numpy in/out): ``set_input_shape`` + ``set_tensor_address`` per tensor, async
  uploads, ``execute_async_v3`` on the runner's own stream, async downloads, one synchronise.
* ``infer_torch`` (PyTorch CUDA tensors in/out): zero copy; the tensors' own addresses are
  bound and the work is queued on PyTorch's current stream.

Thread safety: an ``ICudaEngine`` may be shared between threads, an ``IExecutionContext`` may
not. A runner owns one context, so its calls are serialised by the Runner base-class lock
(``thread_safe = False``). For parallel inference make one runner per thread over the same
:class:`TrtEngine` (``TensorRTRunner(spec, engine)``): each gets its own context, buffers and
stream.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from sam2edge.backends.base import Runner
from sam2edge.backends.cuda_memory import DeviceBuffer, DeviceMemory, DeviceOutOfMemoryError, default_memory
from sam2edge.backends.lazy import import_tensorrt, import_torch
from sam2edge.backends.registry import RunnerSources, device_index
from sam2edge.contract.artifacts import ARTIFACTS
from sam2edge.contract.spec import ArtifactSpec
from sam2edge.errors import BackendRuntimeError, EngineMismatchError

log = logging.getLogger(__name__)


def trt_logger(trt: Any, verbose: bool = False) -> Any:
    return trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)


class TrtEngine:
    """A deserialized engine (thread-safe, shareable between runners) and its IO tensor table."""

    def __init__(self, data: bytes, label: str = "engine") -> None:
        trt = import_tensorrt()
        self.trt = trt
        self.runtime = trt.Runtime(trt_logger(trt))
        self.engine = self.runtime.deserialize_cuda_engine(data)
        if self.engine is None:
            raise EngineMismatchError(
                f"TensorRT {trt.__version__} could not deserialize {label}; rebuild it with `sam2edge build`"
            )
        self.io: dict[str, tuple[bool, np.dtype]] = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            self.io[name] = (is_input, np.dtype(trt.nptype(self.engine.get_tensor_dtype(name))))

    @property
    def device_memory_bytes(self) -> int:
        """Device memory of one execution context (``device_memory_size_v2``; the v1 name is gone in 11.x)."""
        value = getattr(self.engine, "device_memory_size_v2", None)
        return int(value if value is not None else self.engine.device_memory_size)

    def profile_max(self, name: str, profile: int = 0) -> tuple[int, ...]:
        return tuple(int(d) for d in self.engine.get_tensor_profile_shape(name, profile)[2])

    def check_against(self, spec: ArtifactSpec) -> None:
        """Engine IO must be exactly the spec's names and dtypes (IO stays fp32/int32 at every precision)."""
        want = {t.name: (True, np.dtype(t.dtype)) for t in spec.inputs}
        want |= {t.name: (False, np.dtype(t.dtype)) for t in spec.outputs}
        if want != self.io:
            raise EngineMismatchError(f"{spec.name}: engine IO {self.io} differs from the spec {want}; rebuild it")


def bind_dims(spec: ArtifactSpec, shapes: Mapping[str, tuple[int, ...]]) -> dict[str, int]:
    """Symbolic dim values implied by concrete input shapes, e.g. {"num_prompts": 3, "num_points": 2}."""
    bound: dict[str, int] = {}
    for t in spec.inputs:
        for d, n in zip(t.shape, shapes[t.name]):
            if not isinstance(d, int):
                bound[d.name] = int(n)
    return bound


def max_shapes(spec: ArtifactSpec, engine: TrtEngine, profile: int = 0) -> dict[str, tuple[int, ...]]:
    """Largest shape of every IO tensor under the engine's profile (buffers are allocated at this size)."""
    inputs = {t.name: engine.profile_max(t.name, profile) for t in spec.inputs}
    dims = bind_dims(spec, inputs)
    return inputs | {t.name: t.shape_at("max", dims) for t in spec.outputs}


class TensorRTRunner(Runner):
    backend = "tensorrt"
    thread_safe = False  # one execution context per runner: calls are serialised (see module doc)

    def __init__(self, spec: ArtifactSpec, engine: TrtEngine | Callable[[], TrtEngine], device_index: int = 0,
                 memory: DeviceMemory | None = None, profile: int = 0) -> None:
        super().__init__(spec)
        self._engine_source = engine
        self.engine: TrtEngine | None = engine if isinstance(engine, TrtEngine) else None
        self.device_index = device_index
        self.memory = memory
        self.profile = profile
        self.context: Any = None
        self.stream: Any = None
        self.buffers: dict[str, DeviceBuffer] = {}

    def _activate_impl(self) -> None:
        if self.engine is None:
            self.engine = self._engine_source()  # type: ignore[operator]
        self.engine.check_against(self.spec)
        self.memory = self.memory or default_memory(self.device_index)
        self.context = self.engine.engine.create_execution_context()
        if self.context is None:
            raise DeviceOutOfMemoryError(
                f"{self.describe()}: could not create an execution context "
                f"({self.engine.device_memory_bytes} bytes of device memory)"
            )
        self.stream = self.memory.new_stream()
        self.context.set_optimization_profile_async(self.profile, self.memory.stream_handle(self.stream))
        for name, shape in max_shapes(self.spec, self.engine, self.profile).items():
            nbytes = int(np.prod(shape)) * self.engine.io[name][1].itemsize
            self.buffers[name] = self.memory.alloc(nbytes)

    def _deactivate_impl(self) -> None:
        assert self.memory is not None
        self.memory.synchronize(self.stream)
        for buf in self.buffers.values():
            self.memory.free(buf)
        self.buffers = {}
        self.memory.close_stream(self.stream)
        self.context = self.stream = None

    def _infer_impl(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self.memory is not None and self.engine is not None
        mem, ctx = self.memory, self.context
        for t in self.spec.inputs:
            arr = np.ascontiguousarray(feeds[t.name], dtype=t.dtype)
            self._set_input_shape(t.name, arr.shape)
            mem.upload(self.buffers[t.name], arr, self.stream)
            ctx.set_tensor_address(t.name, self.buffers[t.name].ptr)
        outputs = {}
        for t in self.spec.outputs:
            outputs[t.name] = np.empty(tuple(ctx.get_tensor_shape(t.name)), dtype=t.dtype)
            ctx.set_tensor_address(t.name, self.buffers[t.name].ptr)
        self._execute(mem.stream_handle(self.stream))
        for name, host in outputs.items():
            mem.download(host, self.buffers[name], self.stream)
        mem.synchronize(self.stream)
        return outputs

    def infer_torch(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """Zero copy: CUDA tensors in, CUDA tensors out, queued on PyTorch's current stream."""
        torch = import_torch()

        self.spec.check_inputs(feeds)
        with self._lock:
            if not self.is_active:
                self.activate()
            ctx = self.context
            device = torch.device("cuda", self.device_index)
            keep = []
            for t in self.spec.inputs:
                x = feeds[t.name].to(device).contiguous()
                keep.append(x)
                self._set_input_shape(t.name, tuple(x.shape))
                ctx.set_tensor_address(t.name, x.data_ptr())
            outputs = {}
            for t in self.spec.outputs:
                shape = tuple(ctx.get_tensor_shape(t.name))
                outputs[t.name] = torch.empty(shape, dtype=getattr(torch, t.dtype), device=device)
                ctx.set_tensor_address(t.name, outputs[t.name].data_ptr())
            self._execute(torch.cuda.current_stream(device).cuda_stream)
            return outputs

    def _set_input_shape(self, name: str, shape: tuple[int, ...]) -> None:
        if not self.context.set_input_shape(name, tuple(int(s) for s in shape)):
            assert self.engine is not None
            raise BackendRuntimeError(
                f"{self.describe()}: input {name!r} shape {tuple(shape)} is outside the engine's profile "
                f"(max {self.engine.profile_max(name, self.profile)}); rebuild with larger --max-* options"
            )

    def _execute(self, stream_handle: int) -> None:
        if not self.context.execute_async_v3(stream_handle):
            raise BackendRuntimeError(f"{self.describe()}: execute_async_v3 failed (see the TensorRT log)")


def create_runners(sources: RunnerSources, device: str, artifacts: Sequence[str]) -> dict[str, Runner]:
    """The registry factory: one TensorRTRunner per artifact; each engine deserializes at activation from
    the bytes ``sources.engine_bytes[name]()`` returns (verified against the engine manifest by the store)."""
    import_tensorrt()
    missing = [n for n in artifacts if n not in sources.engine_bytes]
    if missing:
        raise EngineMismatchError(f"engine set {sources.engine_label} has no engine for {missing}")

    def loader(name: str) -> Callable[[], TrtEngine]:
        return lambda: TrtEngine(sources.engine_bytes[name](), label=f"{sources.engine_label}/{name}.engine")

    return {n: TensorRTRunner(ARTIFACTS[n], loader(n), device_index(device)) for n in artifacts}
