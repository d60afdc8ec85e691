"""The SAM2 networks in our own PyTorch code (requires torch)."""

from sam2edge.model.sam2 import DecoderOutput, ImageFeatures, SAM2Model, build_model

__all__ = ["SAM2Model", "build_model", "ImageFeatures", "DecoderOutput"]
