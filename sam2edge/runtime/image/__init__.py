"""The image API (Roboflow ``inference_models`` SAM2): predictor, prompt checks, result types, caches."""
