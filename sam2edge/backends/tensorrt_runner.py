"""TensorRT runner on the Runner contract (TensorRT 10.x and 11.x Python API).

* The engine bytes are read and verified against the store manifest (size + sha256) *before*
  ``IRuntime.deserialize_cuda_engine`` sees them (:meth:`ArtifactStore.load_engine_bytes`).
* Device buffers are allocated once at activation, sized from the artifact spec bound to the
  engine's optimisation-profile maxima, through :mod:`sam2edge.backends.cuda_memory`.
* ``infer`` (numpy in/out): ``set_input_shape`` + ``set_tensor_address`` per tensor, async
  uploads, ``execute_async_v3`` on the runner's own stream, async downloads, one synchronise.
* ``infer_torch`` (PyTorch CUDA tensors in/out): zero copy; the tensors' own (256-byte aligned)
  addresses are bound and the work runs on the runner's stream, ordered after PyTorch's current one.
* Device binding: TensorRT binds an engine to the calling thread's current device when it is
  deserialized and each context to its engine's device; the runner makes its device current before
  deserializing and at the start of every inference and teardown, on whichever thread calls.
* Every ``set_tensor_address`` / ``set_input_shape`` / ``execute_async_v3`` result is checked; an input
  outside the engine's profile is an :class:`InputError` (the caller's, no backend fallback).
* Activation that fails part-way and deactivation after a CUDA error release everything they can and
  log what failed; deactivation never raises, so the fallback to the next backend can proceed.

Thread safety: an ``ICudaEngine`` may be shared between threads, an ``IExecutionContext`` may
not. A runner owns one context, so its calls are serialised by the Runner base-class lock
(``thread_safe = False``). For parallel inference make one runner per thread over the same
:class:`TrtEngine` (``TensorRTRunner(spec, engine)``): each gets its own context, buffers and
stream.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np

from sam2edge.backends.base import Runner
from sam2edge.backends.cuda_memory import DeviceBuffer, DeviceMemory, DeviceOutOfMemoryError, default_memory
from sam2edge.backends.lazy import import_tensorrt, import_torch
from sam2edge.backends.registry import RunnerSources, device_index
from sam2edge.contract.artifacts import BATCH, NUM_MEMORY_FRAMES, NUM_OBJECTS, NUM_POINTS, NUM_PROMPTS
from sam2edge.contract.edgetam_artifacts import specs_for_variant
from sam2edge.contract.spec import ArtifactSpec, Dim
from sam2edge.errors import BackendRuntimeError, EngineMismatchError, InputError

log = logging.getLogger(__name__)


_LOGGERS: dict[int, tuple[Any, Any]] = {}
ALIGNMENT = 256  # IExecutionContext::setTensorAddress: "The pointer must have at least 256-byte alignment."


def trt_logger(trt: Any, verbose: bool = False) -> Any:
    """The process's one TensorRT logger (per ``tensorrt`` module), at WARNING or VERBOSE.

    TensorRT keeps the first logger given to a builder or runtime as its global logger and reports every
    other one ("The logger passed into createInferRuntime differs from one already provided ..."); a logger
    must also outlive every object created with it (NvInferRuntime.h, ILogger). So there is one, kept here.
    """
    entry = _LOGGERS.get(id(trt))
    if entry is None or entry[0] is not trt:
        entry = _LOGGERS[id(trt)] = (trt, trt.Logger(trt.Logger.WARNING))
    logger = entry[1]
    logger.min_severity = trt.Logger.VERBOSE if verbose else trt.Logger.WARNING
    return logger


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


# The build option that raises each dim's profile maximum (the message of an out-of-profile input).
LIMIT_OPTIONS = {BATCH.name: "--max-batch", NUM_OBJECTS.name: "--max-batch", NUM_PROMPTS.name: "--max-prompts",
                 NUM_POINTS.name: "--max-points", NUM_MEMORY_FRAMES.name: "--max-memory-frames"}


class TensorRTRunner(Runner):
    backend = "tensorrt"
    thread_safe = False  # one execution context per runner: calls are serialised (see module doc)

    def __init__(self, spec: ArtifactSpec, engine: TrtEngine | Callable[[], TrtEngine], device_index: int = 0,
                 memory: DeviceMemory | None = None, profile: int = 0) -> None:
        super().__init__(spec)
        self._engine_source = engine
        self.engine: TrtEngine | None = engine if isinstance(engine, TrtEngine) else None
        self._owns_engine = False  # deserialized here (released at deactivation), not handed in
        self.device_index = device_index
        self.memory = memory
        self.profile = profile
        self.context: Any = None
        self.stream: Any = None
        self.buffers: dict[str, DeviceBuffer] = {}

    # -- lifecycle ----------------------------------------------------------------------------
    def _activate_impl(self) -> None:
        try:
            self._acquire()
        except BaseException:
            self._release()  # an out-of-memory part-way must not leave buffers, stream or context behind
            raise

    def _acquire(self) -> None:
        self.memory = self.memory or default_memory(self.device_index)
        # TensorRT binds an engine to the device current on the calling thread when it is deserialized, and
        # each context to its engine's device (Troubleshooting FAQ, "How do I use TensorRT on multiple GPUs?").
        self.memory.make_current()
        if self.engine is None:
            self.engine = self._engine_source()  # type: ignore[operator]
            self._owns_engine = True
        self.engine.check_against(self.spec)
        self.context = self.engine.engine.create_execution_context()
        if self.context is None:
            raise DeviceOutOfMemoryError(
                f"{self.describe()}: could not create an execution context "
                f"({self.engine.device_memory_bytes} bytes of device memory)"
            )
        self.stream = self.memory.new_stream()
        if not self.context.set_optimization_profile_async(self.profile, self.memory.stream_handle(self.stream)):
            raise BackendRuntimeError(f"{self.describe()}: the engine has no optimization profile {self.profile}")
        for name, shape in max_shapes(self.spec, self.engine, self.profile).items():
            nbytes = int(np.prod(shape)) * self.engine.io[name][1].itemsize
            self.buffers[name] = self.memory.alloc(nbytes)

    def _deactivate_impl(self) -> None:
        self._release()

    def _release(self) -> None:
        """Release everything this runner holds. Every step runs even when an earlier one fails (after a sticky
        CUDA error every CUDA call fails); failures are logged, never raised, so that a fallback can proceed."""
        mem, stream, buffers = self.memory, self.stream, self.buffers
        steps: list[tuple[str, Callable[[], Any]]] = []
        if mem is not None:
            steps.append(("making the device current", mem.make_current))
            if stream is not None:
                steps.append(("synchronising the stream", lambda: mem.synchronize(stream)))
            steps.append(("releasing the execution context", self._drop_context))
            steps += [(f"freeing {name}", partial(mem.free, buf)) for name, buf in buffers.items()]
            if stream is not None:
                steps.append(("destroying the stream", lambda: mem.close_stream(stream)))
        try:
            for what, step in steps:
                try:
                    step()
                except Exception as exc:  # noqa: BLE001 - teardown goes on; the error is reported
                    log.warning("%s: %s failed during teardown: %s", self.describe(), what, str(exc))  # text: no traceback kept
        finally:
            self.context, self.stream, self.buffers = None, None, {}
            if self._owns_engine:  # its weights leave the device too (the next activation deserializes again)
                self.engine, self._owns_engine = None, False

    def _drop_context(self) -> None:
        self.context = None  # TensorRT >= 10 releases a context with its last Python reference

    # -- inference ----------------------------------------------------------------------------
    def _infer_impl(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        assert self.memory is not None and self.engine is not None
        mem, ctx = self.memory, self.context
        mem.make_current()  # this thread may not be the one that activated the runner
        arrays = {t.name: np.ascontiguousarray(feeds[t.name], dtype=t.dtype) for t in self.spec.inputs}
        self._check_profile({name: a.shape for name, a in arrays.items()})
        for name, arr in arrays.items():
            self._set_input_shape(name, arr.shape)
            mem.upload(self.buffers[name], arr, self.stream)
            self._bind(name, self.buffers[name].ptr)
        outputs = {}
        for t in self.spec.outputs:
            outputs[t.name] = np.empty(tuple(ctx.get_tensor_shape(t.name)), dtype=t.dtype)
            self._bind(t.name, self.buffers[t.name].ptr)
        self._execute(mem.stream_handle(self.stream))
        for name, host in outputs.items():
            mem.download(host, self.buffers[name], self.stream)
        mem.synchronize(self.stream)
        return outputs

    def infer_torch(self, feeds: Mapping[str, Any]) -> dict[str, Any]:
        """Zero copy: CUDA tensors in, CUDA tensors out, ordered after the caller's current stream.

        The work runs on the runner's own stream (TensorRT synchronises the whole device around the legacy
        default stream: execute_async_v3, "Please use non-default stream instead"): it waits for the caller's
        current stream before and the caller's stream waits for it after. An input that is not 256-byte
        aligned (a slice) is copied first.
        """
        torch = import_torch()

        self.spec.check_inputs(feeds)
        with self._lock:
            if not self.is_active:
                self.activate()
            assert self.memory is not None
            self.memory.make_current()
            device = torch.device("cuda", self.device_index)
            caller = torch.cuda.current_stream(device)
            ours = torch.cuda.ExternalStream(self.memory.stream_handle(self.stream), device=device)
            inputs = {}
            for t in self.spec.inputs:
                x = feeds[t.name].to(device).contiguous()
                inputs[t.name] = x if x.data_ptr() % ALIGNMENT == 0 else x.clone()  # fresh blocks are aligned
            self._check_profile({name: tuple(x.shape) for name, x in inputs.items()})
            for name, x in inputs.items():
                self._set_input_shape(name, tuple(x.shape))
                self._bind(name, x.data_ptr())
            outputs = {}
            for t in self.spec.outputs:
                shape = tuple(self.context.get_tensor_shape(t.name))
                outputs[t.name] = torch.empty(shape, dtype=getattr(torch, t.dtype), device=device)
                self._bind(t.name, outputs[t.name].data_ptr())
            ours.wait_stream(caller)  # inputs and outputs were made on the caller's stream
            self._execute(self.memory.stream_handle(self.stream))
            caller.wait_stream(ours)
            for x in (*inputs.values(), *outputs.values()):
                x.record_stream(ours)
            return outputs

    def _check_profile(self, shapes: Mapping[str, tuple[int, ...]]) -> None:
        """InputError (the caller's, not the backend's: no fallback) for a shape outside the engine's profile."""
        assert self.engine is not None
        for t in self.spec.inputs:
            lo, _, hi = (tuple(int(d) for d in s) for s in self.engine.engine.get_tensor_profile_shape(t.name, self.profile))
            got = tuple(int(d) for d in shapes[t.name])
            if all(a <= g <= b for a, g, b in zip(lo, got, hi)):
                continue
            dims = [d.name for d, a, g, b in zip(t.shape, lo, got, hi) if isinstance(d, Dim) and not a <= g <= b]
            fix = ", ".join(f"{LIMIT_OPTIONS[d]} for {d}" for d in dims if d in LIMIT_OPTIONS) or "larger --max-* options"
            raise InputError(
                f"{self.describe()}: input {t.name!r} has shape {got}, outside the engine's profile {lo}..{hi} "
                f"({', '.join(dims)}); split the call, or rebuild the engines with {fix}"
            )

    def _set_input_shape(self, name: str, shape: tuple[int, ...]) -> None:
        if not self.context.set_input_shape(name, tuple(int(s) for s in shape)):
            raise BackendRuntimeError(f"{self.describe()}: set_input_shape({name!r}, {tuple(shape)}) failed (see the TensorRT log)")

    def _bind(self, name: str, ptr: int) -> None:
        """``set_tensor_address``, checked: a refused address leaves the previous one bound (stale outputs)."""
        if ptr % ALIGNMENT:
            raise BackendRuntimeError(f"{self.describe()}: {name!r} at {ptr:#x} is not {ALIGNMENT}-byte aligned")
        if not self.context.set_tensor_address(name, int(ptr)):
            raise BackendRuntimeError(f"{self.describe()}: TensorRT refused the address {ptr:#x} of {name!r}")

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

    specs = specs_for_variant(sources.variant)
    return {n: TensorRTRunner(specs[n], loader(n), device_index(device)) for n in artifacts}
