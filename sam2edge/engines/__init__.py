"""Engines: the device fingerprint, the artifact/engine store, backend selection and fallback.

* :mod:`~sam2edge.engines.fingerprint` probes the machine (CUDA driver through ``libcuda``,
  Jetson release and power mode, installed backends) into plain, recordable dataclasses.
* :mod:`~sam2edge.engines.store` lays out ONNX artifacts and TensorRT engine sets on disk and
  refuses stale, mismatched or damaged engines before anything is deserialized.
* :mod:`~sam2edge.runtime.selection` is a pure decision over a recorded device description:
  which backend, in the order TensorRT -> ONNX Runtime CUDA -> PyTorch CUDA -> ONNX Runtime
  CPU -> PyTorch CPU, fits the free memory, and why every other one was excluded.
* :mod:`~sam2edge.runtime.fallback` turns a decision into runners and falls back at run time
  on typed errors.

Nothing here imports torch, onnxruntime or tensorrt at import time.
"""
