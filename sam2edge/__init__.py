"""sam2edge: SAM2 interactive segmentation for edge and on-prem deployment.

Importing this package pulls in neither PyTorch, ONNX Runtime nor TensorRT; the heavy
modules load on first use.
"""

from __future__ import annotations

from typing import Any

from sam2edge.config import get_config, resolve_name, variant_names
from sam2edge.errors import Sam2EdgeError

__version__ = "0.1.0"
__all__ = ["AutoModel", "SAM2", "SAM2Prediction", "get_config", "resolve_name", "variant_names", "Sam2EdgeError"]

_LAZY = {
    "AutoModel": ("sam2edge.runtime.image.predictor", "SAM2"),
    "SAM2": ("sam2edge.runtime.image.predictor", "SAM2"),
    "SAM2Prediction": ("sam2edge.runtime.image.types", "SAM2Prediction"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'sam2edge' has no attribute {name!r}")
