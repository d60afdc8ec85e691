"""Triton Python-backend model: one sam2edge artifact on sam2edge's ONNX Runtime runner.

``sam2edge triton-repo --platform python`` copies this file into each model's version folder as
``model.py``, with the artifact's ONNX file and a copy of the ``sam2edge`` package beside it (so
the backend's Python needs only numpy and onnxruntime). The model's ``config.pbtxt`` parameters
name the artifact, its file and the sha256 the export recorded: the ONNX session is created from
bytes verified against that hash, and a spec digest that differs from this sam2edge's is refused.

With ``max_batch_size > 0`` (the image encoder) Triton's dynamic batcher hands several requests
to one ``execute``: their images are concatenated on the batch axis, run once and split back. A
request that fails gets its own error response; the others are answered.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

_HERE = os.path.dirname(os.path.abspath(__file__))
if os.path.isdir(os.path.join(_HERE, "sam2edge")) and sys.path[:1] != [_HERE]:
    sys.path.insert(0, _HERE)  # the sam2edge written beside this file, not another one on the path


def config_parameters(config: Mapping[str, Any]) -> dict[str, str]:
    """The string parameters of a parsed model config."""
    return {k: str(v.get("string_value", "")) for k, v in dict(config.get("parameters", {})).items()}


def concatenate(feeds: Sequence[Mapping[str, np.ndarray]], names: Sequence[str]) -> tuple[dict[str, np.ndarray], list[int]]:
    """Requests' inputs joined on the batch axis (axis 0 of every tensor), with each request's row count."""
    sizes = [int(f[names[0]].shape[0]) for f in feeds]
    return {n: np.concatenate([f[n] for f in feeds]) for n in names}, sizes


def split(outputs: Mapping[str, np.ndarray], sizes: Sequence[int]) -> list[dict[str, np.ndarray]]:
    """A batched call's outputs cut back into one dict per request (``sizes`` rows each)."""
    bounds = np.cumsum([0, *sizes])
    return [{n: a[bounds[i]:bounds[i + 1]] for n, a in outputs.items()} for i in range(len(sizes))]


def providers_for(args: Mapping[str, Any]) -> list[Any]:
    """ONNX Runtime providers of this instance: CUDA on a GPU instance (its device), else the CPU."""
    if str(args.get("model_instance_kind", "CPU")).upper() == "GPU":
        return [("CUDAExecutionProvider", {"device_id": int(args.get("model_instance_device_id", 0))}),
                "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class TritonPythonModel:
    """The Python backend's entry point (``initialize`` / ``execute`` / ``finalize``)."""

    def initialize(self, args: dict[str, Any]) -> None:
        from sam2edge.backends.onnxruntime_runner import OnnxRuntimeRunner
        from sam2edge.contract import serving
        from sam2edge.contract.edgetam_artifacts import specs_for_variant
        from sam2edge.contract.manifest import RecordedFile
        from sam2edge.errors import EngineMismatchError

        self.pb = importlib.import_module("triton_python_backend_utils")
        config = json.loads(args["model_config"])
        params = config_parameters(config)
        self.spec = specs_for_variant(params.get(serving.PARAM_VARIANT))[params[serving.PARAM_ARTIFACT]]
        if params.get(serving.PARAM_SPEC) != serving.spec_digest(self.spec):
            raise EngineMismatchError(f"{config.get('name')}: written for another {self.spec.name} interface than the "
                                      "sam2edge beside it; rewrite the repository with `sam2edge triton-repo`")
        path = Path(args["model_repository"]) / str(args["model_version"]) / params[serving.PARAM_FILE]
        recorded = RecordedFile(path, params[serving.PARAM_FILE_SHA256], int(params[serving.PARAM_FILE_SIZE]))
        providers = providers_for(args)
        threads = int(params[serving.PARAM_THREADS]) if params.get(serving.PARAM_THREADS) else None
        self.runner = OnnxRuntimeRunner(self.spec, path, providers=providers, threads=threads,
                                        strict=len(providers) > 1, recorded=recorded)
        self.runner.activate()
        self.batched = int(config.get("max_batch_size", 0) or 0) > 0

    def _feeds(self, request: Any) -> dict[str, np.ndarray]:
        return {t.name: self.pb.get_input_tensor_by_name(request, t.name).as_numpy() for t in self.spec.inputs}

    def _response(self, outputs: Mapping[str, np.ndarray]) -> Any:
        tensors = [self.pb.Tensor(n, np.ascontiguousarray(outputs[n])) for n in self.spec.output_names]
        return self.pb.InferenceResponse(output_tensors=tensors)

    def _error(self, exc: BaseException) -> Any:
        return self.pb.InferenceResponse(error=self.pb.TritonError(f"{type(exc).__name__}: {exc}"))

    def execute(self, requests: list[Any]) -> list[Any]:
        feeds: list[dict[str, np.ndarray] | BaseException] = []
        for request in requests:
            try:
                feed = self._feeds(request)
                self.spec.check_inputs(feed)
                feeds.append(feed)
            except Exception as exc:  # noqa: BLE001 - answered as this request's error
                feeds.append(exc)
        good = [i for i, f in enumerate(feeds) if isinstance(f, dict)]
        results: dict[int, Any] = {}
        if self.batched and len(good) > 1:
            try:
                joined, sizes = concatenate([feeds[i] for i in good], self.spec.input_names)
                for i, out in zip(good, split(self.runner.infer(joined, check=False), sizes)):
                    results[i] = self._response(out)
            except Exception as exc:  # noqa: BLE001 - every request of the failed batch gets the error
                results.update({i: self._error(exc) for i in good})
        else:
            for i in good:
                try:
                    results[i] = self._response(self.runner.infer(feeds[i], check=False))
                except Exception as exc:  # noqa: BLE001
                    results[i] = self._error(exc)
        return [results[i] if i in results else self._error(feeds[i]) for i in range(len(requests))]

    def finalize(self) -> None:
        self.runner.deactivate()
