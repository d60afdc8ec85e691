"""Helpers for tests and benchmarks: random weights in the official format.

Model weights cannot be downloaded everywhere this project is tested, so parity tests and
benchmarks use checkpoints with random weights. Every tensor of the state dict is
randomised, including the ones initialised to zero or one (biases, LayerNorm affine,
layer-scale gammas, learned embeddings), because a zero hides a wrong wiring.

BatchNorm statistics (EdgeTAM's RepViT trunk) are the exception that needs data: random
running means and variances let activations grow without bound through 20 residual blocks
(measured: 1.7e5 after RepViT's third stage), where a trained network's statistics keep them
O(1). :func:`calibrate_batchnorm` sets them from one forward pass, as training would, and
:func:`randomize_model` does both for any of our models.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch


def random_tensor_like(name: str, ref: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A random tensor of ``ref``'s shape and dtype, scaled so activations stay O(1).

    Matrices and kernels get std 1/sqrt(fan_in); LayerNorm and BatchNorm scales 1 + 0.2*N(0,1);
    BatchNorm running variances exp(0.2*N(0,1)) (positive); every other vector (biases, gammas,
    running means) 0.1*N(0,1); the prompt encoder's Gaussian matrix N(0,1).
    """
    import torch

    if not ref.is_floating_point():
        return ref.clone()
    shape = tuple(ref.shape)
    noise = torch.randn(shape, generator=gen, dtype=torch.float32)
    leaf = name.rsplit(".", 1)[-1]
    is_norm = "norm" in name or ".ln" in name or "layer_norm" in name or ".bn." in name
    if "positional_encoding_gaussian_matrix" in name:
        out = noise
    elif leaf == "running_var":
        out = torch.exp(0.2 * noise)
    elif leaf == "weight" and len(shape) == 1 and is_norm:
        out = 1.0 + 0.2 * noise
    elif len(shape) >= 2 and leaf != "bias":
        fan_in = max(1, math.prod(shape[1:]))
        out = noise * max(0.05, 1.0 / math.sqrt(fan_in))
    else:
        out = 0.1 * noise
    return out.to(ref.dtype)


def randomize_parameters(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Overwrite every entry of ``module.state_dict()`` with random values, in place.

    The order is the state dict's, so the same seed gives the same weights for any module
    with the same keys (ours and the official one).
    """
    import torch

    gen = torch.Generator().manual_seed(seed)
    state = module.state_dict()
    new_state = {k: random_tensor_like(k, v, gen) for k, v in state.items()}
    module.load_state_dict(new_state, strict=True)
    return module


def calibrate_batchnorm(module: torch.nn.Module, *inputs: torch.Tensor) -> torch.nn.Module:
    """Set every BatchNorm's running statistics to those of one forward pass of ``module(*inputs)``.

    The statistics become the batch's (mean, unbiased variance), as after training on that
    data; the module is left in eval mode. Returns ``module``.
    """
    import torch

    norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    saved = [(m, m.momentum) for m in norms]
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average: one batch -> exactly its statistics
            m.train()
        with torch.no_grad():
            module(*inputs)
    finally:
        for m, momentum in saved:
            m.momentum = momentum
        module.eval()
    return module


def randomize_model(model: torch.nn.Module, seed: int = 0, calibration_size: int = 256) -> torch.nn.Module:
    """:func:`randomize_parameters`, then, where the image trunk has BatchNorm (EdgeTAM), calibrate it
    on a seeded N(0,1) image of ``calibration_size``² pixels. SAM2 models: exactly randomize_parameters."""
    import torch

    randomize_parameters(model, seed)
    trunk = model.image_encoder.trunk
    if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in trunk.modules()):
        gen = torch.Generator().manual_seed(seed)
        image = torch.randn(1, 3, calibration_size, calibration_size, generator=gen)
        calibrate_batchnorm(trunk, image)
    return model.eval()
