"""The fake TensorRT builder: ``Builder``, ``INetworkDefinition`` from ``OnnxParser``, ``IBuilderConfig``,
``IOptimizationProfile``, ``ITimingCache``, ``IProgressMonitor``.

Behaviours enforced (TensorRT 10.16 / 11.1 include/NvInfer.h, python/src/infer/*.cpp, pyCoreDoc.h):

* TensorRT 11 has no ``BuilderFlag.FP16/BF16/INT8/OBEY_PRECISION_CONSTRAINTS/PREFER_PRECISION_CONSTRAINTS``
  and no ``ILayer.precision`` / ``set_output_type`` (pyCore.cpp, pyGraph.cpp of 11.1); every network is
  strongly typed (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``: "Deprecated: always enabled").
* TensorRT 10: ``ILayer.set_output_type`` on a layer whose outputs are not floating point is refused with an
  error (NvInfer.h, ILayer::setOutputType: "the output type of all layers that are shape operations must be
  DataType::kINT32, and all attempts to set the output type to some other data type will be ignored except
  for issuing an error message"); with ``OBEY_PRECISION_CONSTRAINTS`` the build then fails ("build fails with
  an error message"). Strongly typed networks reject ``precision`` and ``set_output_type`` ("Strongly-typed
  networks reject calls to method setPrecision / setOutputType").
* A network with dynamic inputs needs a profile covering each of them with min <= opt <= max and the static
  dimensions unchanged (IOptimizationProfile), or ``build_serialized_network`` returns None.
* ``IBuilderConfig.set_timing_cache(cache, ignore_mismatch=False)`` returns False for a cache made on another
  device, and then ``get_timing_cache()`` returns None (set_timing_cache: "A failure will be reported if the
  CUDA device property in the provided cache is different from current environment"; get_timing_cache:
  "or `None` if no timing cache is set"). ``create_timing_cache(b"")`` makes an empty cache.
* The builder is bound to the calling thread's current device when it is created (Troubleshooting FAQ,
  multiple GPUs), and the plan records that device's name.
"""

from __future__ import annotations

import json
from enum import IntEnum
from pathlib import Path
from typing import Any

from tests.tensorrt_double.trt_common import FLOATS, FROM_ONNX, DataType, IHostMemory, Library, Plan, Severity

LAYER_TYPES = {"Conv": "CONVOLUTION", "ConvTranspose": "DECONVOLUTION", "MatMul": "MATRIX_MULTIPLY", "Gemm": "MATRIX_MULTIPLY",
               "LayerNormalization": "NORMALIZATION", "Softmax": "SOFTMAX", "Reshape": "SHUFFLE", "Transpose": "SHUFFLE",
               "Squeeze": "SHUFFLE", "Unsqueeze": "SHUFFLE", "ReduceMean": "REDUCE", "ReduceSum": "REDUCE", "Cast": "CAST",
               "Constant": "CONSTANT", "Gather": "GATHER", "Shape": "SHAPE", "Slice": "SLICE", "Concat": "CONCATENATION",
               "Resize": "RESIZE", "Where": "SELECT", "Range": "FILL", "Expand": "SLICE"}


class LayerType(IntEnum):
    CONVOLUTION, DECONVOLUTION, MATRIX_MULTIPLY, ELEMENTWISE, NORMALIZATION, SOFTMAX, SHUFFLE, REDUCE, CAST = range(9)
    CONSTANT, GATHER, SHAPE, SLICE, CONCATENATION, RESIZE, SELECT, FILL, UNARY, ACTIVATION = range(9, 19)


class MemoryPoolType(IntEnum):
    WORKSPACE = 0
    DLA_MANAGED_SRAM = 1
    TACTIC_SHARED_MEMORY = 5


COMMON_FLAGS = {"DEBUG": 2, "GPU_FALLBACK": 3, "REFIT": 4, "DISABLE_TIMING_CACHE": 5, "TF32": 6, "SPARSE_WEIGHTS": 7,
                "VERSION_COMPATIBLE": 13, "STRIP_PLAN": 19, "STRICT_NANS": 24}
WEAK_TYPING_FLAGS = {"FP16": 0, "INT8": 1, "OBEY_PRECISION_CONSTRAINTS": 9, "PREFER_PRECISION_CONSTRAINTS": 10,
                     "FP8": 15, "BF16": 17}


def builder_flag_enum(major: int) -> type[IntEnum]:
    return IntEnum("BuilderFlag", {**COMMON_FLAGS, **(WEAK_TYPING_FLAGS if major < 11 else {})})


def network_flag_enum(major: int) -> type[IntEnum]:
    if major < 11:
        return IntEnum("NetworkDefinitionCreationFlag", {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1})
    return IntEnum("NetworkDefinitionCreationFlag", {"STRONGLY_TYPED": 0})


class ITensor:
    def __init__(self, name: str, dtype: DataType, dims: list[Any]) -> None:
        self.name, self.dtype, self.dims = name, dtype, dims

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(d if isinstance(d, int) else -1 for d in self.dims)


class ILayer:
    """TensorRT 11 layer: name, type, outputs; no per-layer precision (strong typing only)."""

    def __init__(self, network: INetworkDefinition, name: str, op: str, outputs: list[ITensor]) -> None:
        self._network, self.name, self._outputs = network, name, outputs
        self.type = LayerType[LAYER_TYPES.get(op, "ELEMENTWISE")]

    @property
    def num_outputs(self) -> int:
        return len(self._outputs)

    def get_output(self, index: int) -> ITensor:
        return self._outputs[index]


class ILayer10(ILayer):
    """TensorRT 10 layer: also ``precision`` and ``set_output_type`` (deprecated in 10.12, gone in 11)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._precision: DataType | None = None
        self.output_types: dict[int, DataType] = {}

    @property
    def precision(self) -> DataType:
        return self._precision if self._precision is not None else DataType.FLOAT

    @precision.setter
    def precision(self, dtype: DataType) -> None:
        if self._network.strongly_typed:
            self._network.reject(f"{self.name}: strongly-typed networks reject setPrecision")
            return
        self._precision = DataType(dtype)

    def set_output_type(self, index: int, dtype: DataType) -> None:
        if self._network.strongly_typed:
            self._network.reject(f"{self.name}: strongly-typed networks reject setOutputType")
            return
        if self._outputs[index].dtype not in FLOATS and DataType(dtype) in FLOATS:
            self._network.reject(f"{self.name}: output {index} ({self._outputs[index].dtype.name}) is a shape/index "
                                 f"tensor; setOutputType({DataType(dtype).name}) is ignored")
            return
        self.output_types[index] = DataType(dtype)


class INetworkDefinition:
    def __init__(self, lib: Library, logger: Any, strongly_typed: bool) -> None:
        self._lib, self._logger, self.strongly_typed = lib, logger, strongly_typed
        self.layers: list[ILayer] = []
        self.inputs: list[ITensor] = []
        self.outputs: list[ITensor] = []
        self.onnx: bytes = b""
        self.constraint_errors: list[str] = []

    def reject(self, msg: str) -> None:
        self.constraint_errors.append(msg)
        self._lib.log(self._logger, Severity.ERROR, msg)

    num_layers = property(lambda self: len(self.layers))
    num_inputs = property(lambda self: len(self.inputs))
    num_outputs = property(lambda self: len(self.outputs))

    def get_layer(self, index: int) -> ILayer:
        return self.layers[index]

    def get_input(self, index: int) -> ITensor:
        return self.inputs[index]

    def get_output(self, index: int) -> ITensor:
        return self.outputs[index]


class ParserError:
    def __init__(self, desc: str) -> None:
        self._desc = desc

    def desc(self) -> str:
        return self._desc

    def __str__(self) -> str:
        return self._desc


class OnnxParser:
    def __init__(self, network: INetworkDefinition, logger: Any) -> None:
        self.network, self.logger = network, logger
        self.errors: list[ParserError] = []

    num_errors = property(lambda self: len(self.errors))

    def get_error(self, index: int) -> ParserError:
        return self.errors[index]

    def parse_from_file(self, model: str) -> bool:
        import onnx

        if not Path(model).is_file():
            self.errors.append(ParserError(f"Failed to open file: {model}"))
            return False
        proto = onnx.load(model)  # external data beside the file, as the real parser reads it
        typed = onnx.shape_inference.infer_shapes(proto)
        types = {v.name: v.type.tensor_type for v in (*typed.graph.value_info, *typed.graph.input, *typed.graph.output)}
        net = self.network

        def tensor(name: str) -> ITensor:
            tt = types.get(name)
            dtype = FROM_ONNX.get(tt.elem_type, DataType.FLOAT) if tt is not None else DataType.FLOAT
            dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tt.shape.dim] if tt else []
            return ITensor(name, dtype, dims)

        inits = {i.name for i in proto.graph.initializer}
        net.inputs = [tensor(i.name) for i in proto.graph.input if i.name not in inits]
        net.outputs = [tensor(o.name) for o in proto.graph.output]
        layer_cls = ILayer10 if net._lib.major < 11 else ILayer
        net.layers = [layer_cls(net, n.name or f"{n.op_type}_{i}", n.op_type, [tensor(o) for o in n.output if o])
                      for i, n in enumerate(proto.graph.node)]
        net.onnx = proto.SerializeToString()
        return True


class IOptimizationProfile:
    def __init__(self) -> None:
        self.shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

    def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:  # noqa: A002 - the binding's names
        self.shapes[input] = tuple(tuple(int(v) for v in s) for s in (min, opt, max))

    def get_shape(self, input: str) -> list[tuple[int, ...]]:  # noqa: A002
        return list(self.shapes[input])


class ITimingCache:
    def __init__(self, device_name: str, entries: int = 0) -> None:
        self.device_name, self.entries = device_name, entries

    def serialize(self) -> IHostMemory:
        return IHostMemory(b"FAKE-TIMING-CACHE" + json.dumps({"device": self.device_name, "entries": self.entries}).encode())


class IProgressMonitor:
    def __init__(self) -> None:
        pass


class IBuilderConfig:
    def __init__(self, builder: Builder) -> None:
        self._builder = builder
        self.flags: set[Any] = {builder._lib.builder_flags["TF32"]}  # TF32 is on by default
        self.pools: dict[MemoryPoolType, int] = {}
        self.profiles: list[IOptimizationProfile] = []
        self._cache: ITimingCache | None = None
        self.progress_monitor: Any = None

    def set_flag(self, flag: Any) -> None:
        self.flags.add(flag)

    def clear_flag(self, flag: Any) -> None:
        self.flags.discard(flag)

    def get_flag(self, flag: Any) -> bool:
        return flag in self.flags

    def set_memory_pool_limit(self, pool: MemoryPoolType, pool_size: int) -> None:
        self.pools[MemoryPoolType(pool)] = int(pool_size)

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        self.profiles.append(profile)
        return len(self.profiles) - 1

    def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache | None:
        data = bytes(serialized_timing_cache)
        if not data:
            return ITimingCache(self._builder.device_name)
        if not data.startswith(b"FAKE-TIMING-CACHE"):
            self._builder._log(Severity.ERROR, "createTimingCache: the serialized cache is corrupt")
            return None
        head = json.loads(data[len(b"FAKE-TIMING-CACHE"):])
        return ITimingCache(head["device"], head["entries"])

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        if cache.device_name != self._builder.device_name and not ignore_mismatch:
            self._builder._log(Severity.ERROR, "setTimingCache: the timing cache was made on another device")
            return False
        self._cache = cache
        return True

    def get_timing_cache(self) -> ITimingCache | None:
        return self._cache


class Builder:
    def __init__(self, lib: Library, logger: Any) -> None:
        lib.adopt_logger(logger, "createInferBuilder")
        self._lib, self.logger = lib, logger
        self.device = lib.gpu.current_device()
        self.device_name = lib.gpu.devices[self.device].name

    def _log(self, severity: Severity, msg: str) -> None:
        self._lib.log(self.logger, severity, msg)

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        strong = self._lib.major >= 11 or bool(int(flags) & (1 << int(self._lib.network_flags["STRONGLY_TYPED"])))
        return INetworkDefinition(self._lib, self.logger, strong)

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig(self)

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def build_serialized_network(self, network: INetworkDefinition, config: IBuilderConfig) -> IHostMemory | None:
        problems = self._problems(network, config)
        for p in problems:
            self._log(Severity.ERROR, p)
        if problems:
            return None
        monitor = config.progress_monitor
        if monitor is not None:
            monitor.phase_start("Building engine", None, 1)
            monitor.step_complete("Building engine", 0)
            monitor.phase_finish("Building engine")
        if config._cache is not None:
            config._cache.entries += len(network.layers)
        pinned = [layer.name for layer in network.layers if getattr(layer, "_precision", None) == DataType.FLOAT]
        header = {"version": self._lib.version, "device_name": self.device_name, "strongly_typed": network.strongly_typed,
                  "flags": sorted(f.name for f in config.flags), "pinned_fp32": pinned,
                  "profile": {k: [list(s) for s in v] for k, v in (config.profiles[0].shapes if config.profiles else {}).items()},
                  "io": [{"name": t.name, "input": True, "dtype": int(t.dtype), "dims": t.dims} for t in network.inputs]
                  + [{"name": t.name, "input": False, "dtype": int(t.dtype), "dims": t.dims} for t in network.outputs],
                  "context_bytes": (1 << 20) + len(network.onnx) // 4}
        return IHostMemory(Plan(header, network.onnx).encode())

    def _problems(self, network: INetworkDefinition, config: IBuilderConfig) -> list[str]:
        out = []
        if not network.inputs:
            out.append("build_serialized_network: the network has no inputs (was it parsed?)")
        obey = "OBEY_PRECISION_CONSTRAINTS" in {f.name for f in config.flags}
        if network.constraint_errors and obey:
            out.append(f"{len(network.constraint_errors)} layer precision constraints cannot be met under "
                       f"OBEY_PRECISION_CONSTRAINTS: {network.constraint_errors[0]}")
        shapes = config.profiles[0].shapes if config.profiles else {}
        for t in network.inputs:
            if all(isinstance(d, int) for d in t.dims):
                continue
            if t.name not in shapes:
                out.append(f"network input {t.name!r} has dynamic dimensions but no optimization profile shapes")
                continue
            lo, opt, hi = shapes[t.name]
            if not len(lo) == len(opt) == len(hi) == len(t.dims):
                out.append(f"profile of {t.name!r}: rank differs from the network's {t.dims}")
            elif not all(a <= b <= c for a, b, c in zip(lo, opt, hi)):
                out.append(f"profile of {t.name!r}: need min <= opt <= max, got {lo} {opt} {hi}")
            elif any(isinstance(d, int) and not d == a == c for d, a, c in zip(t.dims, lo, hi)):
                out.append(f"profile of {t.name!r} changes a static dimension of {t.dims}")
        return out
