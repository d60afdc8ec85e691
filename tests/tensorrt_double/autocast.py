"""A fake ``modelopt.onnx.autocast`` (NVIDIA ModelOpt, modelopt/onnx/autocast/convert.py).

``convert_to_mixed_precision`` keeps the real signature (keyword names and defaults), so a call with a
misspelt or removed option fails here as it would there. Its conversion is a documented stand-in: the fp32
graph comes back unchanged (the fake engine computes in fp32 anyway). What it records: each call's options,
and whether the call would have run AutoCast's reference run, which the real function does whenever
``data_max`` is finite (``if (data_max is not None and data_max != np.inf) or graph_sanitizer.custom_ops:
ref_runner = ReferenceRunner(...)``): that run marks every intermediate tensor as a graph output and runs
ONNX Runtime on random inputs (modelopt/onnx/autocast/referencerunner.py).
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np


def make_autocast() -> tuple[types.ModuleType, list[dict[str, Any]]]:
    calls: list[dict[str, Any]] = []
    mod = types.ModuleType("modelopt.onnx.autocast")

    def convert_to_mixed_precision(onnx_path: str, low_precision_type: str = "fp16", nodes_to_exclude: list[str] | None = None,
                                   op_types_to_exclude: list[str] | None = None, nodes_to_include: list[str] | None = None,
                                   op_types_to_include: list[str] | None = None, data_max: float = 512,
                                   init_max: float = float(np.finfo(np.float16).max), keep_io_types: bool = False,
                                   calibration_data: str | None = None, custom_rule: Any = None,
                                   init_conversion_max_bytes: int | None = None, providers: list[str] | None = None,
                                   trt_plugins: list[str] | None = None, trt_plugins_precision: list[str] | None = None,
                                   max_depth_of_reduction: int | None = None, opset: int | None = None,
                                   use_local_type_inference: bool = False) -> Any:
        import onnx

        assert low_precision_type in ("fp16", "bf16"), "low_precision_type must be either fp16 or bf16"
        reference_run = data_max is not None and data_max != np.inf
        calls.append({"onnx_path": onnx_path, "low_precision_type": low_precision_type, "keep_io_types": keep_io_types,
                      "nodes_to_exclude": list(nodes_to_exclude or []), "data_max": data_max, "reference_run": reference_run})
        return onnx.load(onnx_path)

    mod.convert_to_mixed_precision = convert_to_mixed_precision
    return mod, calls
