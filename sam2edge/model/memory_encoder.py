"""Memory encoder: fuses a frame's features with its predicted mask into a memory entry.

mask [B,1,1024,1024] -> mask downsampler (x16) -> + pix_feat_proj(pix_feat) -> two ConvNeXt
blocks -> out_proj (256 -> 64). Parameter names match the official ``memory_encoder.*``
state dict (``load_state_dict(strict=True)`` after stripping the prefix). The 64-channel
sine position encoding of the output grid is a constant buffer.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from sam2edge.model.common import LayerNorm2d, is_tracing, sine_position_encoding_2d


def _gemm_form(x: torch.Tensor) -> bool:
    """Whether a 1x1 convolution on ``x`` runs as a GEMM: eager on the CPU only."""
    return not is_tracing() and x.device.type == "cpu"


def pointwise(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """A 1x1 convolution with a [Cout, Cin] weight: [B, Cin, H, W] -> [B, Cout, H, W].

    Eager CPU runs it as one batched GEMM (baddbmm, the bias as its addend): torch's mkldnn
    convolution ran these 1x1 layers at 96-143 GFLOP/s where the GEMM ran at 164-192 (2 threads,
    8 objects, 64x64: 256->1024 179 vs 105 ms, 1024->256 159 vs 90, 256->256 30 vs 22). Exported
    graphs and other devices keep the convolution.
    """
    if not _gemm_form(x):
        return F.conv2d(x, weight[:, :, None, None], bias)
    b, _, h, w = x.shape
    out = torch.baddbmm(bias[None, :, None].expand(b, -1, h * w), weight.expand(b, -1, -1), x.flatten(2))
    return out.view(b, -1, h, w)


def _conv1x1(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``pointwise`` with an nn.Conv2d's [Cout, Cin, 1, 1] weight.

    Traced, it calls the module itself, so the exported Conv keeps the parameter's own name as
    its initializer (a reshaped weight would be folded into an anonymous constant).
    """
    if not _gemm_form(x):
        return conv(x)
    return pointwise(x, conv.weight.flatten(1), conv.bias)


class MaskDownsampler(nn.Module):
    """Four (conv 3x3 stride 2, LayerNorm2d, GELU) stages, channels 1->4->16->64->256, then 1x1 conv.

    ``encoder`` keeps the official Sequential indices (convs at 0,3,6,9, norms at 1,4,7,10,
    final 1x1 conv at 12). [B,1,S,S] -> [B,embed_dim,S/16,S/16].
    """

    def __init__(self, embed_dim: int = 256, num_stages: int = 4, stride: int = 2) -> None:
        super().__init__()
        stages: list[nn.Module] = []
        channels = 1
        for _ in range(num_stages):
            out_channels = channels * stride * stride
            stages += [
                nn.Conv2d(channels, out_channels, kernel_size=3, stride=stride, padding=1),
                LayerNorm2d(out_channels),
                nn.GELU(),
            ]
            channels = out_channels
        stages.append(nn.Conv2d(channels, embed_dim, kernel_size=1))
        self.encoder = nn.Sequential(*stages)

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        *stages, last = self.encoder
        for stage in stages:
            mask = stage(mask)
        return _conv1x1(last, mask)


class ConvNeXtBlock(nn.Module):
    """Depthwise 7x7 conv, LayerNorm2d, pointwise MLP (x4, GELU), layer scale, residual.

    The pointwise layers are stored as ``nn.Linear`` (official names ``pwconv1/pwconv2``)
    but run as 1x1 convolutions, which keeps the tensor in NCHW (no permutes in the graph).
    [B,C,H,W] -> [B,C,H,W].
    """

    def __init__(self, dim: int = 256, kernel_size: int = 7, expansion: int = 4) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = LayerNorm2d(dim)
        self.pwconv1 = nn.Linear(dim, expansion * dim)
        self.pwconv2 = nn.Linear(expansion * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), 1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.dwconv(x))
        h = F.gelu(pointwise(h, self.pwconv1.weight, self.pwconv1.bias))
        h = pointwise(h, self.pwconv2.weight, self.pwconv2.bias)
        return x + self.gamma[:, None, None] * h


class Fuser(nn.Module):
    """A stack of ConvNeXt blocks under the official ``fuser.layers.N`` names."""

    def __init__(self, dim: int = 256, num_layers: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(ConvNeXtBlock(dim) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


class MemoryEncoder(nn.Module):
    """Encode (frame features, mask) into a memory frame and its position encoding.

    Args:
        in_dim: channels of the frame features (256).
        out_dim: channels of the memory (64).
        feat_size: (H, W) of the feature grid (64, 64); the mask is 16x larger.
    """

    def __init__(self, in_dim: int = 256, out_dim: int = 64, feat_size: tuple[int, int] = (64, 64)) -> None:
        super().__init__()
        self.mask_downsampler = MaskDownsampler(in_dim)
        self.pix_feat_proj = nn.Conv2d(in_dim, in_dim, kernel_size=1)
        self.fuser = Fuser(in_dim)
        self.out_proj = nn.Conv2d(in_dim, out_dim, kernel_size=1)
        pos = sine_position_encoding_2d(feat_size[0], feat_size[1], out_dim)
        self.register_buffer("pos_enc", pos, persistent=False)  # [1, out_dim, H, W]

    def forward(self, pix_feat: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pix_feat [B,256,64,64] raw image features (no no_mem_embed); mask [B,1,1024,1024]
        already mapped to mask-encoder range by the caller (sigmoid or binarised, x20 - 10).

        Returns (features [B,64,64,64], pos [B,64,64,64]).
        """
        x = _conv1x1(self.pix_feat_proj, pix_feat) + self.mask_downsampler(mask)
        x = _conv1x1(self.out_proj, self.fuser(x))
        return x, self.pos_enc.expand(x.shape[0], -1, -1, -1)
