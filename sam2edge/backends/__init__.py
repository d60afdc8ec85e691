"""One runner per library on the shared contract (PyTorch, ONNX Runtime, TensorRT), the backend registry,
and the one lazy-import helper for the heavy libraries."""
