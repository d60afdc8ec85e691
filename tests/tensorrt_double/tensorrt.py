"""The fake ``tensorrt`` module for one TensorRT version (10.x or 11.x; 8.x only for the version gate).

Its attribute set follows the real bindings of that version (python/src/infer/pyCore.cpp, pyGraph.cpp,
pyFoundationalTypes.cpp of the 10.16 and 11.1 releases): in 11 the weak-typing builder flags, the
EXPLICIT_BATCH network flag, ``ILayer.precision`` / ``set_output_type`` and ``ICudaEngine.device_memory_size``
are gone, so code that touches them fails here as it would there.
"""

from __future__ import annotations

import types
from typing import Any

from tests.tensorrt_double import trt_builder as tb
from tests.tensorrt_double import trt_runtime as tr
from tests.tensorrt_double.gpu import FakeGpu
from tests.tensorrt_double.trt_common import DataType, Dims, IHostMemory, ILogger, Library, Severity, nptype


def make_tensorrt(gpu: FakeGpu, version: str) -> tuple[types.ModuleType, Library]:
    """The module and its :class:`Library` state (the log and counters tests read)."""
    lib = Library(version, gpu)
    lib.builder_flags = tb.builder_flag_enum(lib.major)
    lib.network_flags = tb.network_flag_enum(lib.major)
    mod = types.ModuleType("tensorrt")
    mod.__version__ = version
    mod.__file__ = __file__

    class Logger(ILogger):
        INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = (Severity.INTERNAL_ERROR, Severity.ERROR, Severity.WARNING,
                                                         Severity.INFO, Severity.VERBOSE)

        def __init__(self, min_severity: Severity = Severity.WARNING) -> None:
            self.min_severity = Severity(min_severity)
            self.seen: list[tuple[Severity, str]] = []

        def log(self, severity: Severity, msg: str) -> None:
            self.seen.append((severity, msg))

    class Runtime(tr.Runtime):
        def __init__(self, logger: Any) -> None:
            super().__init__(lib, logger)

    class Builder(tb.Builder):
        def __init__(self, logger: Any) -> None:
            super().__init__(lib, logger)

    names: dict[str, Any] = {
        "Logger": Logger, "ILogger": ILogger, "Runtime": Runtime, "Builder": Builder, "OnnxParser": tb.OnnxParser,
        "DataType": DataType, "Dims": Dims, "nptype": nptype, "IHostMemory": IHostMemory,
        "TensorIOMode": tr.TensorIOMode, "ICudaEngine": tr.ICudaEngine, "IExecutionContext": tr.IExecutionContext,
        "BuilderFlag": lib.builder_flags, "NetworkDefinitionCreationFlag": lib.network_flags,
        "MemoryPoolType": tb.MemoryPoolType, "LayerType": tb.LayerType, "IProgressMonitor": tb.IProgressMonitor,
        "ITimingCache": tb.ITimingCache, "IBuilderConfig": tb.IBuilderConfig, "INetworkDefinition": tb.INetworkDefinition,
        "float32": DataType.FLOAT, "float16": DataType.HALF, "bfloat16": DataType.BF16, "int8": DataType.INT8,
        "int32": DataType.INT32, "int64": DataType.INT64, "bool": DataType.BOOL, "uint8": DataType.UINT8,
    }
    for name, value in names.items():
        setattr(mod, name, value)
    return mod, lib
