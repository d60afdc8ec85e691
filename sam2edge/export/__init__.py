"""Export stage: one spec per artifact -> ONNX export -> verification -> TensorRT build."""
