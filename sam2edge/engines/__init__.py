"""ONNX folder -> verified TensorRT engines for this device: build, precision policy, verification,
the device fingerprint and probes, and the artifact store on disk. Never imports the export stage."""
