"""Helpers for tests and benchmarks: random weights in the official format.

Model weights cannot be downloaded everywhere this project is tested, so parity tests and
benchmarks use checkpoints with random weights. Every tensor of the state dict is
randomised, including the ones initialised to zero or one (biases, LayerNorm affine,
layer-scale gammas, learned embeddings), because a zero hides a wrong wiring.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch


def random_tensor_like(name: str, ref: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A random tensor of ``ref``'s shape and dtype, scaled so activations stay O(1).

    Matrices and kernels get std 1/sqrt(fan_in); LayerNorm scales 1 + 0.2*N(0,1); every
    other vector (biases, gammas) 0.1*N(0,1); the prompt encoder's Gaussian matrix N(0,1).
    """
    import torch

    if not ref.is_floating_point():
        return ref.clone()
    shape = tuple(ref.shape)
    noise = torch.randn(shape, generator=gen, dtype=torch.float32)
    leaf = name.rsplit(".", 1)[-1]
    is_norm = "norm" in name or ".ln" in name or "layer_norm" in name
    if "positional_encoding_gaussian_matrix" in name:
        out = noise
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
