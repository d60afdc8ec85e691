"""What the fake TensorRT's builder and runtime share: data types, the logger, the plan format, the library state.

Plan format (a stand-in for a real plan; the runtime refuses anything else, as ``deserialize_cuda_engine``
returns None for a plan it cannot read): ``MAGIC``, a 4-byte header length, a JSON header (TensorRT version,
the device name it was built on, IO tensors, the profile, whether strongly typed, the layers pinned to fp32)
and the ONNX model the engine was "built" from. The fake engine runs that graph with ONNX Runtime on the CPU,
so a built engine computes exactly what its ONNX graph computes (in fp32 whatever the precision flags), and
verification against ONNX Runtime is checkable.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np

from tests.tensorrt_double.gpu import FakeGpu

MAGIC = b"FAKE-TRT-PLAN\x00"


class DataType(IntEnum):
    """tensorrt.DataType (python/src/infer/pyFoundationalTypes.cpp: FLOAT, HALF, BF16, INT8, INT32, INT64, BOOL, UINT8)."""

    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    FP8 = 6
    BF16 = 7
    INT64 = 8


NUMPY = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8, DataType.INT32: np.int32,
         DataType.INT64: np.int64, DataType.BOOL: np.bool_, DataType.UINT8: np.uint8}
FROM_ONNX = {1: DataType.FLOAT, 10: DataType.HALF, 16: DataType.BF16, 3: DataType.INT8, 6: DataType.INT32,
             7: DataType.INT64, 9: DataType.BOOL, 2: DataType.UINT8}
FLOATS = frozenset({DataType.FLOAT, DataType.HALF, DataType.BF16})


def nptype(trt_type: DataType) -> type:
    """tensorrt.nptype (python/packaging/bindings_wheel/tensorrt/__init__.py): TypeError for bf16/fp8."""
    if trt_type in NUMPY:
        return NUMPY[trt_type]
    raise TypeError("Could not resolve TensorRT datatype to an equivalent numpy datatype.")


class Severity(IntEnum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


class ILogger:
    """tensorrt.ILogger: the application-implemented logging interface."""

    Severity = Severity

    def log(self, severity: Severity, msg: str) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class Dims(tuple):
    """tensorrt.Dims: a sequence of ints."""

    def __new__(cls, values: Any = ()) -> Dims:
        return super().__new__(cls, (int(v) for v in values))


@dataclass
class Library:
    """The state of one fake ``tensorrt`` module: its version, the GPU, the log, counters tests read."""

    version: str
    gpu: FakeGpu
    messages: list[tuple[Severity, str]] = field(default_factory=list)
    first_logger: Any = None
    logger_mismatches: int = 0
    default_stream_enqueues: int = 0
    fail_next_execute: str | None = None  # "false": enqueue refused; "illegal-address": a fault found at sync

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    def log(self, logger: Any, severity: Severity, msg: str) -> None:
        self.messages.append((severity, msg))
        if logger is not None and severity <= getattr(logger, "min_severity", Severity.VERBOSE):
            logger.log(severity, msg)

    def errors(self) -> list[str]:
        return [m for s, m in self.messages if s <= Severity.ERROR]

    def adopt_logger(self, logger: Any, api: str) -> None:
        """IBuilder/IRuntime creation: the first logger becomes the global one; another one is reported
        (TensorRT logs "The logger passed into createInferRuntime differs from one already provided for an
        existing builder, runtime, or refitter. Uses of the global logger, returned by nvinfer1::getLogger(),
        will return the existing value.")."""
        if not isinstance(logger, ILogger):
            raise TypeError(f"{api}: logger must be a tensorrt.ILogger, got {type(logger).__name__}")
        if self.first_logger is None:
            self.first_logger = logger
        elif logger is not self.first_logger:
            self.logger_mismatches += 1
            self.log(logger, Severity.INFO, f"The logger passed into {api} differs from one already provided for an "
                     "existing builder, runtime, or refitter. Uses of the global logger, returned by "
                     "nvinfer1::getLogger(), will return the existing value.")


@dataclass
class Plan:
    header: dict[str, Any]
    onnx: bytes

    def encode(self) -> bytes:
        head = json.dumps(self.header).encode()
        return MAGIC + struct.pack("<I", len(head)) + head + self.onnx

    @classmethod
    def decode(cls, data: bytes) -> Plan | None:
        data = bytes(data)
        if not data.startswith(MAGIC) or len(data) < len(MAGIC) + 4:
            return None
        (n,) = struct.unpack("<I", data[len(MAGIC):len(MAGIC) + 4])
        start = len(MAGIC) + 4
        try:
            header = json.loads(data[start:start + n])
        except ValueError:
            return None
        return cls(header, data[start + n:])


class IHostMemory(bytes):
    """tensorrt.IHostMemory: a buffer (``bytes(plan)`` works) with ``nbytes``."""

    @property
    def nbytes(self) -> int:
        return len(self)
