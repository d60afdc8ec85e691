"""The fake TensorRT runtime: ``Runtime``, ``ICudaEngine``, ``IExecutionContext``.

Behaviours enforced (TensorRT 10.16 / 11.1 include/NvInferRuntime.h and python/docstrings/infer/pyCoreDoc.h
unless said otherwise):

* ``Runtime.deserialize_cuda_engine`` returns None for a plan it cannot read or one built by another TensorRT
  version ("Returns: The ICudaEngine, or None if it could not be deserialized"; Troubleshooting FAQ, "Are
  engines portable across TensorRT versions? By default, no"). The engine is bound to the calling thread's
  current device and its weights are allocated there (Troubleshooting FAQ, "How do I use TensorRT on
  multiple GPUs?": "Each ICudaEngine object is bound to a specific GPU when it is instantiated, either by the
  builder or on deserialization. To select the GPU, use cudaSetDevice() before calling the builder or
  deserializing the engine. Each IExecutionContext is bound to the same GPU as the engine from which it was
  created. When calling execute() or enqueue(), ensure that the thread is associated with the correct device
  by calling cudaSetDevice() if necessary."). Creating a context or enqueueing from a thread whose current
  device is another one fails here (stricter than undefined behaviour).
* ``create_execution_context`` allocates ``device_memory_size_v2`` bytes on the engine's device and returns
  None when they do not fit (ICudaEngine::createExecutionContext returns nullptr on failure). Engine and
  context memory is released when the Python object is (no explicit destroy since TensorRT 10).
* ``set_input_shape`` returns False for a name that is not an input, a wrong rank, a static dimension that
  differs, or a shape outside the optimization profile (setInputShape: "Each dimension must agree with the
  network dimension unless the latter was -1"; IOptimizationProfile: "A runtime error will be raised if the
  input tensor dimensions fall outside the valid range for this profile").
* ``set_tensor_address`` returns False for an unknown name or an address that is not 256-byte aligned
  (setTensorAddress: "The pointer must have at least 256-byte alignment."; setInputTensorAddress /
  setOutputTensorAddress: "false if the provided name does not map to an ... tensor, does not meet alignment
  requirements"); the previous address stays bound.
* ``execute_async_v3`` returns False (nothing raises) unless: every input shape is set, every IO address is
  set and lies in device memory of the engine's device large enough for the tensor, the calling thread's
  current device is the engine's, the stream exists and belongs to the current device (CUDA Programming Guide,
  Stream and Event Behavior: "A kernel launch will fail if it is issued to a stream that is not associated to
  the current device"). The default stream works but is counted and warned about (enqueueV3: "Using default
  stream may lead to performance issues due to additional cudaDeviceSynchronize() calls by TensorRT ...
  Please use non-default stream instead.").
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np

from tests.tensorrt_double.gpu import CudaError, CudaFailure
from tests.tensorrt_double.trt_common import DataType, Dims, Library, Plan, Severity, nptype


class TensorIOMode:
    NONE, INPUT, OUTPUT = "NONE", "INPUT", "OUTPUT"


class Runtime:
    def __init__(self, lib: Library, logger: Any) -> None:
        lib.adopt_logger(logger, "createInferRuntime")
        self._lib, self.logger = lib, logger

    def deserialize_cuda_engine(self, serialized_engine: Any) -> ICudaEngine | None:
        lib = self._lib
        plan = Plan.decode(bytes(serialized_engine))
        if plan is None:
            lib.log(self.logger, Severity.ERROR, "IRuntime::deserializeCudaEngine: the plan is not a serialized engine")
            return None
        if plan.header["version"] != lib.version:
            lib.log(self.logger, Severity.ERROR, f"The engine plan file is not compatible with this version of TensorRT, "
                    f"expecting library version {lib.version} got {plan.header['version']}")
            return None
        device = lib.gpu.current_device()
        if plan.header["device_name"] != lib.gpu.devices[device].name:
            lib.log(self.logger, Severity.ERROR, "the engine was built for another GPU model")
            return None
        try:
            weights = lib.gpu.malloc(len(plan.onnx), owner="engine", device=device)
        except CudaFailure as exc:
            lib.log(self.logger, Severity.ERROR, f"deserializeCudaEngine: {exc}")
            return None
        return ICudaEngine(lib, self.logger, plan, device, weights)


class ICudaEngine:
    def __init__(self, lib: Library, logger: Any, plan: Plan, device: int, weights: Any) -> None:
        self._lib, self._logger, self._plan, self.device = lib, logger, plan, device
        self._io = {t["name"]: t for t in plan.header["io"]}
        self._names = [t["name"] for t in plan.header["io"]]
        self._session: Any = None
        weakref.finalize(self, lib.gpu.release, weights)

    def __getattr__(self, name: str) -> Any:
        if name == "device_memory_size" and self._lib.major < 11:  # deprecated in 10.1, gone in 11 (pyCore.cpp)
            return self.device_memory_size_v2
        raise AttributeError(f"'tensorrt.ICudaEngine' object has no attribute {name!r}")

    num_optimization_profiles = 1

    @property
    def num_io_tensors(self) -> int:
        return len(self._names)

    @property
    def device_memory_size_v2(self) -> int:
        return int(self._plan.header["context_bytes"])

    def get_tensor_name(self, index: int) -> str:
        return self._names[index]

    def get_tensor_mode(self, name: str) -> str:
        t = self._io.get(name)
        return TensorIOMode.NONE if t is None else (TensorIOMode.INPUT if t["input"] else TensorIOMode.OUTPUT)

    def get_tensor_dtype(self, name: str) -> DataType:
        return DataType(self._io[name]["dtype"])

    def get_tensor_shape(self, name: str) -> Dims:
        return Dims(d if isinstance(d, int) else -1 for d in self._io[name]["dims"])

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[Dims]:
        if profile_index != 0 or name not in self._plan.header["profile"]:
            raise ValueError(f"get_tensor_profile_shape: no profile {profile_index} shapes for {name!r}")
        return [Dims(s) for s in self._plan.header["profile"][name]]

    def create_execution_context(self, strategy: Any = None) -> IExecutionContext | None:
        lib = self._lib
        if lib.gpu.current_device() != self.device:
            lib.log(self._logger, Severity.ERROR, f"createExecutionContext: the calling thread's current device "
                    f"{lib.gpu.current_device()} is not the engine's device {self.device}")
            return None
        try:
            memory = lib.gpu.malloc(self.device_memory_size_v2, owner="context", device=self.device)
        except CudaFailure as exc:
            lib.log(self._logger, Severity.ERROR, f"createExecutionContext: {exc}")
            return None
        return IExecutionContext(self, memory)

    def session(self) -> Any:
        if self._session is None:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = 2
            opts.log_severity_level = 3
            self._session = ort.InferenceSession(self._plan.onnx, opts, providers=["CPUExecutionProvider"])
        return self._session


class IExecutionContext:
    def __init__(self, engine: ICudaEngine, memory: Any) -> None:
        self.engine = engine
        self._lib = engine._lib
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._addresses: dict[str, int] = {}
        self.profile = 0
        weakref.finalize(self, self._lib.gpu.release, memory)

    def _error(self, msg: str) -> bool:
        self._lib.log(self.engine._logger, Severity.ERROR, msg)
        return False

    def set_optimization_profile_async(self, profile_index: int, stream_handle: int) -> bool:
        if profile_index != 0:
            return self._error(f"setOptimizationProfileAsync: profile {profile_index} out of range")
        if self._lib.gpu.stream(int(stream_handle)) is None:
            return self._error("setOptimizationProfileAsync: invalid stream")
        self._shapes.clear()
        return True

    def set_input_shape(self, name: str, shape: Any) -> bool:
        t = self.engine._io.get(name)
        shape = tuple(int(s) for s in shape)
        if t is None or not t["input"]:
            return self._error(f"setInputShape: {name!r} is not an input tensor")
        dims = t["dims"]
        if len(shape) != len(dims):
            return self._error(f"setInputShape: {name!r} has rank {len(dims)}, got {shape}")
        lo, _, hi = self.engine._plan.header["profile"].get(name, (dims, dims, dims))
        for axis, (d, s) in enumerate(zip(dims, shape)):
            if isinstance(d, int) and d != s:
                return self._error(f"setInputShape: {name!r} axis {axis} is static {d}, got {s}")
            if not lo[axis] <= s <= hi[axis]:
                return self._error(f"setInputShape: {name!r} shape {shape} is outside the profile [{lo}, {hi}]")
        self._shapes[name] = shape
        return True

    def _bound_dims(self) -> dict[str, int]:
        out = {}
        for name, shape in self._shapes.items():
            for d, s in zip(self.engine._io[name]["dims"], shape):
                if isinstance(d, str):
                    out[d] = s
        return out

    def get_tensor_shape(self, name: str) -> Dims:
        t = self.engine._io[name]
        if t["input"] and name in self._shapes:
            return Dims(self._shapes[name])
        bound = self._bound_dims()
        return Dims(d if isinstance(d, int) else bound.get(d, -1) if d else -1 for d in t["dims"])

    def set_tensor_address(self, name: str, memory: int) -> bool:
        if name not in self.engine._io:
            return self._error(f"setTensorAddress: {name!r} is not an input or output tensor")
        if int(memory) % 256:
            return self._error(f"setTensorAddress: {name!r} address {int(memory):#x} is not 256-byte aligned")
        self._addresses[name] = int(memory)
        return True

    def get_tensor_address(self, name: str) -> int:
        return self._addresses.get(name, 0)

    def execute_async_v3(self, stream_handle: int) -> bool:
        lib, gpu, engine = self._lib, self._lib.gpu, self.engine
        if gpu.sticky is not None:
            return self._error(f"enqueueV3: CUDA error {gpu.sticky.name}")
        if gpu.current_device() != engine.device:
            return self._error(f"enqueueV3: the calling thread's current device {gpu.current_device()} is not the "
                               f"engine's device {engine.device} (call cudaSetDevice on this thread first)")
        stream = gpu.stream(int(stream_handle))
        if stream is None or stream.device != gpu.current_device():
            return self._error("enqueueV3: the stream is invalid or belongs to another device (cudaErrorInvalidResourceHandle)")
        if int(stream_handle) == 0:
            lib.default_stream_enqueues += 1
            lib.log(engine._logger, Severity.WARNING, "Using default stream in enqueueV3() may lead to performance "
                    "issues due to additional calls to cudaStreamSynchronize() by TensorRT")
        if lib.fail_next_execute == "false":
            lib.fail_next_execute = None
            return self._error("enqueueV3: injected failure")
        feeds = {}
        for name, t in engine._io.items():
            shape = tuple(self.get_tensor_shape(name))
            if any(s < 0 for s in shape):
                return self._error(f"enqueueV3: the shape of {name!r} is not fully specified: {shape}")
            nbytes = int(np.prod(shape)) * np.dtype(nptype(DataType(t["dtype"]))).itemsize
            ptr = self._addresses.get(name, 0)
            found = gpu.find(ptr, nbytes) if ptr else None
            if found is None or found[0].device != engine.device:
                return self._error(f"enqueueV3: {name!r} needs {nbytes} bytes of device memory on device "
                                   f"{engine.device} at its address {ptr:#x}")
            if t["input"]:
                feeds[name] = np.frombuffer(gpu.read(ptr, nbytes), dtype=nptype(DataType(t["dtype"]))).reshape(shape)
        outputs = engine.session().run(None, feeds)
        for out, t in zip(outputs, [t for t in engine._io.values() if not t["input"]]):
            want = tuple(self.get_tensor_shape(t["name"]))
            if out.shape != want:
                return self._error(f"enqueueV3: {t['name']!r} came out {out.shape}, expected {want}")
            gpu.write(self._addresses[t["name"]], np.ascontiguousarray(out, nptype(DataType(t["dtype"]))).tobytes())
        if lib.fail_next_execute == "illegal-address":
            lib.fail_next_execute = None
            gpu.pending = CudaError.cudaErrorIllegalAddress
        return True
