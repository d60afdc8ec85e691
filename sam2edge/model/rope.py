"""Axial 2-D rotary position encoding (RoPE) in real arithmetic.

SAM2's memory attention rotates queries and keys by angles that depend on each token's
(x, y) position on the 64x64 feature grid. The official code multiplies complex numbers;
complex tensors do not export to ONNX, so here every rotation is written out on real
(even, odd) channel pairs:

    out_even = x_even * cos - x_odd * sin
    out_odd  = x_even * sin + x_odd * cos

which is exactly the real and imaginary part of (x_even + i x_odd) * (cos + i sin).

Angle layout for head dimension D (D divisible by 4): pair j < D/4 turns with the token's
column x at frequency theta^(-4j/D); pair D/4 + j turns with its row y at the same
frequency. Tokens are numbered row-major, so token t sits at x = t % W, y = t // W.
"""

from __future__ import annotations

import torch


def axial_rope_angles(head_dim: int, height: int, width: int, theta: float = 10000.0) -> torch.Tensor:
    """Rotation angles of every token of a height x width grid -> [H*W, head_dim // 2] (fp32)."""
    if head_dim % 4 != 0:
        raise ValueError(f"axial RoPE needs head_dim divisible by 4, got {head_dim}")
    quarter = head_dim // 4
    # Same fp32 recipe as the reference (arange over the even-by-4 indices, then 1/theta^(k/D)),
    # so the tables agree bit for bit.
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 4)[:quarter].float() / head_dim))
    token = torch.arange(height * width, dtype=torch.float32)
    col = token % width
    row = torch.div(token, width, rounding_mode="floor")
    return torch.cat((torch.outer(col, inv_freq), torch.outer(row, inv_freq)), dim=-1)


def axial_rope_tables(head_dim: int, height: int, width: int, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(cos, sin) tables, each [H*W, head_dim // 2], for :func:`apply_rope`."""
    angles = axial_rope_angles(head_dim, height, width, theta)
    return torch.cos(angles), torch.sin(angles)


def interleaved_rope_tables(head_dim: int, height: int, width: int, theta: float = 10000.0) -> torch.Tensor:
    """[2, H*W, head_dim] tables for :func:`rotate_projected`: cos repeated per pair, and
    (-sin, +sin) per pair."""
    cos, sin = axial_rope_tables(head_dim, height, width, theta)
    return torch.stack((cos.repeat_interleave(2, dim=-1), torch.stack((-sin, sin), dim=-1).flatten(-2)))


def swap_pairs(t: torch.Tensor) -> torch.Tensor:
    """Swap entries 2j and 2j+1 along dim 0 (rows of a Linear weight, or its bias)."""
    return t.unflatten(0, (-1, 2)).flip(1).flatten(0, 1)


def rotate_projected(y: torch.Tensor, y_swapped: torch.Tensor, cos2: torch.Tensor, sin2: torch.Tensor) -> torch.Tensor:
    """:func:`apply_rope` of y given y with its pairs swapped (from a second set of weight rows).

    y, y_swapped: [..., N, D]; cos2, sin2: [N, D] from :func:`interleaved_rope_tables` -> [..., N, D].
    Bit for bit what apply_rope computes: even*cos + odd*(-sin) and odd*cos + even*sin are the same
    IEEE operations as even*cos - odd*sin and even*sin + odd*cos. Two elementwise passes and no
    strided views, stacks or reshapes (which the ONNX exporters lower to Split/Squeeze/Concat).
    """
    return y * cos2 + y_swapped * sin2


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved channel pairs of x.

    x: [..., N, D]; cos, sin: [N, D/2] (broadcast over the leading dims) -> [..., N, D].
    """
    pairs = x.unflatten(-1, (-1, 2))  # [..., N, D/2, 2]
    even, odd = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1)
    return rotated.flatten(-2)


def apply_rope_per_frame(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate a stack of F frames with the same per-frame table.

    x: [B, F*N, D] (frames concatenated along tokens); cos, sin: [N, D/2] -> [B, F*N, D].
    F comes from the shape alone (a reshape with -1), so an exported graph keeps it dynamic.
    """
    tokens_per_frame = cos.shape[0]
    framed = x.unflatten(1, (-1, tokens_per_frame))  # [B, F, N, D]
    return apply_rope(framed, cos, sin).flatten(1, 2)
