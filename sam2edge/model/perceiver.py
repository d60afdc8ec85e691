"""EdgeTAM's 2-D spatial perceiver: one memory frame of 64x64 tokens -> 512 latent tokens.

The memory encoder's output (64 channels on the 64x64 grid) is compressed before it enters
the memory bank, so memory attention reads 512 tokens per frame instead of 4096:

* 256 **global** latents (learned queries) cross-attend to the whole frame, whose keys and
  values carry the frame's sine position encoding (added after the key/value projection);
* 256 **2-D** latents, one per 4x4 window of the grid (a 16x16 grid of windows), each
  cross-attend to the 16 tokens of its own window, without position encoding.

Both sets run through the same ``depth`` layers (cross-attention, feed-forward, and with
``use_self_attn`` self-attention + feed-forward; pre-norm, residual), then one final
LayerNorm. Output: [global latents ; 2-D latents] = [B, 512, 64]. Their position encoding
is a constant: zeros for the global latents, the 16x16 sine encoding for the 2-D ones.

Each frame is compressed on its own (the batch axis is objects, the latents are learned
constants), so compressing once when the frame is encoded and storing the result is exact.
Parameter names follow the official ``spatial_perceiver.*`` keys.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from sam2edge.config import PerceiverConfig
from sam2edge.model.common import sine_position_encoding_2d


def _feed_forward(dim: int, mult: int) -> nn.Sequential:
    """LayerNorm -> Linear (no bias) -> GELU -> Linear (no bias), under the keys 0, 1, 3."""
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim * mult, bias=False), nn.GELU(),
                         nn.Linear(dim * mult, dim, bias=False))


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, heads: int) -> torch.Tensor:
    """Multi-head softmax attention over the last two axes. q [..., L, H*D], k/v [..., N, H*D] -> [..., L, H*D].

    Always called with 4-D tensors [batch, heads, tokens, D] (what the ONNX exporter's attention takes):
    one or two leading axes (batch, or batch and windows) are merged into the first.
    """

    def split(t: torch.Tensor) -> torch.Tensor:  # [..., T, H*D] -> [prod(...), H, T, D]
        return t.unflatten(-1, (heads, -1)).transpose(-2, -3).flatten(0, -4)

    out = F.scaled_dot_product_attention(split(q), split(k), split(v))  # [prod(...), H, L, D]
    return out.transpose(1, 2).flatten(-2).reshape(q.shape)


class LatentCrossAttention(nn.Module):
    """Latents attend to input tokens; an optional position encoding is added to projected keys and values."""

    def __init__(self, dim: int, dim_head: int, heads: int) -> None:
        super().__init__()
        inner = dim_head * heads
        self.heads = heads
        self.norm_x = nn.LayerNorm(dim)
        self.norm_latents = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, latents: torch.Tensor, x: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor:
        """latents [..., L, C], x [..., N, C], pos [..., N, C] or None -> [..., L, C]."""
        q = self.to_q(self.norm_latents(latents))
        k, v = self.to_kv(self.norm_x(x)).chunk(2, dim=-1)
        if pos is not None:
            k, v = k + pos, v + pos
        return self.to_out(_attend(q, k, v, self.heads))


class LatentSelfAttention(nn.Module):
    """Pre-norm self-attention among latents (``norm``, ``to_q``, ``to_kv``, ``to_out``)."""

    def __init__(self, dim: int, dim_head: int, heads: int) -> None:
        super().__init__()
        inner = dim_head * heads
        self.heads = heads
        self.norm = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        k, v = self.to_kv(h).chunk(2, dim=-1)
        return self.to_out(_attend(self.to_q(h), k, v, self.heads))


class PerceiverLayer(nn.Module):
    """Cross-attention + feed-forward, then (optionally) self-attention + feed-forward; all residual."""

    def __init__(self, cfg: PerceiverConfig) -> None:
        super().__init__()
        self.attn = LatentCrossAttention(cfg.dim, cfg.dim_head, cfg.heads)
        self.ff = _feed_forward(cfg.dim, cfg.ff_mult)
        self.use_self_attn = cfg.use_self_attn
        if cfg.use_self_attn:
            self.self_attn = LatentSelfAttention(cfg.dim, cfg.dim_head, cfg.heads)
            self.self_ff = _feed_forward(cfg.dim, cfg.ff_mult)

    def forward(self, latents: torch.Tensor, x: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor:
        latents = latents + self.attn(latents, x, pos)
        latents = latents + self.ff(latents)
        if self.use_self_attn:
            latents = latents + self.self_attn(latents)
            latents = latents + self.self_ff(latents)
        return latents


class SpatialPerceiver(nn.Module):
    """Compress memory frames: features [B,C,H,W] -> latents [B, num_latents + num_latents_2d, C].

    Args:
        cfg: the perceiver's hyper-parameters (C = cfg.dim).
        feat_size: (H, W) of the memory grid (64, 64); it must split into the 2-D latent grid.
    """

    def __init__(self, cfg: PerceiverConfig, feat_size: tuple[int, int] = (64, 64)) -> None:
        super().__init__()
        self.cfg = cfg
        height, width = feat_size
        grid = cfg.grid_2d
        if grid * grid != cfg.num_latents_2d or height % grid or width % grid:
            raise ValueError(f"{cfg.num_latents_2d} 2-D latents must form a square grid dividing {feat_size}")
        self.feat_size = (height, width)
        self.window = (height // grid, width // grid)
        self.latents = nn.Parameter(torch.zeros(cfg.num_latents, cfg.dim))
        self.latents_2d = nn.Parameter(torch.zeros(cfg.num_latents_2d, cfg.dim))
        self.layers = nn.ModuleList(PerceiverLayer(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim)
        # Position encoding of the input grid (keys/values of the global latents) and of the output.
        frame_pos = sine_position_encoding_2d(height, width, cfg.dim).flatten(2).transpose(1, 2)
        self.register_buffer("frame_pos", frame_pos.contiguous(), persistent=False)  # [1, H*W, C]
        latent_pos = torch.cat((torch.zeros(1, cfg.num_latents, cfg.dim),
                                sine_position_encoding_2d(grid, grid, cfg.dim).flatten(2).transpose(1, 2)), dim=1)
        self.register_buffer("latent_pos", latent_pos.contiguous(), persistent=False)  # [1, L, C]

    @property
    def num_tokens(self) -> int:
        return self.cfg.tokens

    def _windows(self, features: torch.Tensor) -> torch.Tensor:
        """[B,C,H,W] -> [B, G*G, wh*ww, C]: window (i, j) of the G x G grid is row i*G + j."""
        c = features.shape[1]
        (height, width), (wh, ww) = self.feat_size, self.window
        x = features.reshape(-1, c, height // wh, wh, width // ww, ww)
        return x.permute(0, 2, 4, 3, 5, 1).reshape(-1, (height // wh) * (width // ww), wh * ww, c)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features [B,C,H,W] (memory encoder output) -> latents [B, L, C], global latents first.

        Their position encoding is the constant buffer ``latent_pos`` [1, L, C].
        """
        tokens = features.flatten(2).transpose(1, 2)  # [B, H*W, C]
        glob = self.latents.unsqueeze(0).expand(tokens.shape[0], -1, -1)
        for layer in self.layers:
            glob = layer(glob, tokens, self.frame_pos)
        windows = self._windows(features)  # [B, G*G, 16, C]
        local = self.latents_2d.unsqueeze(1).unsqueeze(0).expand(windows.shape[0], -1, -1, -1)  # [B, G*G, 1, C]
        for layer in self.layers:
            local = layer(local, windows, None)
        return self.norm(torch.cat((glob, local.squeeze(2)), dim=1))
