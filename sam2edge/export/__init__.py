"""Checkpoint -> verified ONNX folder: export, graph rewrites, verification against PyTorch, the static
TensorRT-parser check. Needs torch and onnx; never imports the engines stage."""
