"""Hiera trunk (SAM2's hierarchical ViT) for one fixed input size.

Tokens stay channels-last, ``[B, H, W, C]``, between blocks. Every block knows its input and
output grid, window size and padding at construction time, so the forward pass is a chain of
static reshapes: no shape arithmetic on tensors, no data-dependent branches, attention through
``F.scaled_dot_product_attention``. State-dict names match the official ``Hiera`` exactly.

Stage layout (hiera_t at 1024²): patch embed 7x7/s4 -> 256² x 96, then stages at 256², 128²,
64², 32² with 96, 192, 384, 768 channels. The first block of stages 2-4 halves the grid by
max-pooling its queries ("Q-pooling") and widens the channels; its window size is still the
previous stage's (the window schedule lags one block), halved on the way out.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from sam2edge.config import HieraConfig
from sam2edge.model.common import MLP, is_tracing

LN_EPS = 1e-6
# Exported graphs run global attention in query chunks of this many tokens. Runtimes without a
# fused attention kernel (ONNX Runtime's CPU provider) otherwise hold the whole score matrix and
# its softmax at once: heads x 4096² floats each, 268 MB apiece for hiera_t's 4 heads at 1024²,
# 537 MB for 8 heads. Every query row is its own softmax, so chunking changes no value; each chunk
# is still a MatMul-Softmax-MatMul that TensorRT fuses. Eager PyTorch uses SDPA's fused kernel.
EXPORT_QUERY_CHUNK = 1024


@dataclass(frozen=True)
class BlockGeometry:
    """Static shapes of one block at the configured image size."""

    in_hw: tuple[int, int]  # token grid entering the block
    window: int  # window side, 0 = global attention over the whole grid
    stride: int  # query pooling stride (1 = none)

    @property
    def out_hw(self) -> tuple[int, int]:
        return (self.in_hw[0] // self.stride, self.in_hw[1] // self.stride)

    @property
    def grid(self) -> tuple[int, int]:
        """Number of windows along (H, W); (1, 1) for global attention."""
        if self.window == 0:
            return (1, 1)
        return (math.ceil(self.in_hw[0] / self.window), math.ceil(self.in_hw[1] / self.window))

    @property
    def padded_hw(self) -> tuple[int, int]:
        """Grid after zero padding to whole windows (equal to in_hw when none is needed)."""
        if self.window == 0:
            return self.in_hw
        return (self.grid[0] * self.window, self.grid[1] * self.window)


def max_pool_hw(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Non-overlapping max pooling of a channels-last grid: [B, H, W, C] -> [B, H//s, W//s, C].

    Same values as ``nn.MaxPool2d(s, s)`` (floor mode) without the NCHW round trip.
    """
    b, h, w, c = x.shape
    ho, wo = h // stride, w // stride
    if (ho * stride, wo * stride) != (h, w):
        x = x[:, : ho * stride, : wo * stride]
    # Elementwise maxima of strided views: several times faster on CPU than amax over two split axes.
    rows = functools.reduce(torch.maximum, x.reshape(b, ho, stride, wo * stride, c).unbind(2))
    return functools.reduce(torch.maximum, rows.reshape(b, ho, wo, stride, c).unbind(3))


def window_partition(x: torch.Tensor, geo: BlockGeometry) -> torch.Tensor:
    """[B, H, W, C] -> [B * nWin, win*win, C] (zero padding to whole windows first)."""
    b, _, _, c = x.shape
    if geo.window == 0:
        return x.reshape(b, geo.in_hw[0] * geo.in_hw[1], c)
    (h, w), (hp, wp), (gh, gw), s = geo.in_hw, geo.padded_hw, geo.grid, geo.window
    if (hp, wp) != (h, w):
        x = F.pad(x, (0, 0, 0, wp - w, 0, hp - h))
    x = x.reshape(b, gh, s, gw, s, c).transpose(2, 3)
    return x.reshape(b * gh * gw, s * s, c)


def window_unpartition(x: torch.Tensor, geo: BlockGeometry, batch: int) -> torch.Tensor:
    """[B * nWin, win'*win', C] -> [B, H', W', C] on the block's output grid, padding cropped.

    win' = window // stride (queries were pooled inside each window).
    """
    c = x.shape[-1]
    ho, wo = geo.out_hw
    if geo.window == 0:
        return x.reshape(batch, ho, wo, c)
    (gh, gw), s = geo.grid, geo.window // geo.stride
    x = x.reshape(batch, gh, gw, s, s, c).transpose(2, 3).reshape(batch, gh * s, gw * s, c)
    if (gh * s, gw * s) != (ho, wo):
        x = x[:, :ho, :wo]
    return x


class MultiScaleAttention(nn.Module):
    """Multi-head self-attention over token groups, with optional max-pooled queries."""

    def __init__(self, dim: int, dim_out: int, num_heads: int, pool_hw: tuple[int, int] | None, stride: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dim_out = dim_out
        self.pool_hw = pool_hw  # (h, w) layout of each token group, needed only to pool queries
        self.stride = stride
        self.scale = 1.0 / math.sqrt(dim_out // num_heads)
        self.qkv = nn.Linear(dim, dim_out * 3)
        self.proj = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [G, N, dim] token groups -> [G, N / stride², dim_out]."""
        g, n, _ = x.shape
        heads, c = self.num_heads, self.dim_out
        # Channel layout of qkv is (3, heads, head_dim).
        if is_tracing():
            # Exported graphs: one Gemm per row block of the weight leaves q, k and v contiguous.
            # The eager form below lowers to a 5-D Transpose + Split of the whole qkv tensor,
            # which cost ONNX Runtime 350 ms per 1024² image on hiera_t (12% of the encoder).
            # The softmax scale is folded into the query weights (constant-folded at export), so the
            # attention below is MatMul(q, Transpose(k)) with no scaling nodes: one Transpose of k per
            # block (shared by the query chunks) that ONNX Runtime fuses where it has one consumer.
            # SDPA's decomposition instead scales q and the transposed k separately, which leaves a
            # standalone 3-D Transpose of every window's keys in the graph (about 60 ms per image on
            # hiera_t, 2 threads).
            scales = (self.scale, 1.0, 1.0)
            q, k, v = (F.linear(x, w * s, b * s)
                       for w, b, s in zip(self.qkv.weight.chunk(3), self.qkv.bias.chunk(3), scales))
        else:
            q, k, v = self.qkv(x).unflatten(-1, (3, c)).unbind(2)  # views, no copies
        if self.stride > 1:
            h, w = self.pool_hw
            q = max_pool_hw(q.reshape(g, h, w, c), self.stride).reshape(g, -1, c)
        # (G, N, heads*D) -> (G, heads, N, D); with one head a reshape (no Transpose in the graph).
        q, k, v = (t.reshape(g, 1, -1, c) if heads == 1 else t.unflatten(-1, (heads, c // heads)).transpose(1, 2)
                   for t in (q, k, v))
        if is_tracing():
            # Global blocks in query chunks (token counts are static here): each query row has its
            # own softmax, so no value changes, and no [heads, N, N] score matrix is ever held.
            kt = k.transpose(-2, -1)
            if q.shape[2] > EXPORT_QUERY_CHUNK:
                out = torch.cat([(c @ kt).softmax(-1) @ v for c in q.split(EXPORT_QUERY_CHUNK, dim=2)], dim=2)
            else:
                out = (q @ kt).softmax(-1) @ v
        else:
            # The explicit scale equals SDPA's default bit for bit.
            out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)  # [G, heads, Nq, head_dim]
        out = out.transpose(1, 2).reshape(g, -1, c)
        return self.proj(out)


class MultiScaleBlock(nn.Module):
    """Pre-norm transformer block on a [B, H, W, C] grid: (windowed) attention + MLP."""

    def __init__(self, dim: int, dim_out: int, num_heads: int, mlp_ratio: float, geo: BlockGeometry) -> None:
        super().__init__()
        self.geo = geo
        self.norm1 = nn.LayerNorm(dim, eps=LN_EPS)
        group_hw = geo.padded_hw if geo.window == 0 else (geo.window, geo.window)
        self.attn = MultiScaleAttention(dim, dim_out, num_heads, group_hw, geo.stride)
        self.norm2 = nn.LayerNorm(dim_out, eps=LN_EPS)
        self.mlp = MLP(dim_out, int(dim_out * mlp_ratio), dim_out, num_layers=2, activation=nn.GELU)
        self.proj = nn.Linear(dim, dim_out) if dim != dim_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, H, W, dim] -> [B, H / stride, W / stride, dim_out]."""
        batch = x.shape[0]
        shortcut = x
        x = self.norm1(x)
        # A widening block takes its shortcut from the *normalised* tokens: pool(proj(norm1(x))).
        if self.proj is not None:
            shortcut = self.proj(x)
        if self.geo.stride > 1:
            shortcut = max_pool_hw(shortcut, self.geo.stride)
        # Zero padding happens after norm1, and padded tokens join attention unmasked.
        y = self.attn(window_partition(x, self.geo))
        x = shortcut + window_unpartition(y, self.geo, batch)
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """Strided convolution from pixels to the first token grid (keeps the official ``proj`` name)."""

    def __init__(self, cfg: HieraConfig) -> None:
        super().__init__()
        k, s, p = cfg.patch_kernel, cfg.patch_stride, cfg.patch_padding
        self.proj = nn.Conv2d(3, cfg.embed_dim, kernel_size=k, stride=s, padding=p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)  # NCHW


def _refresh_after_load(module: Hiera, _incompatible_keys: object) -> None:
    """load_state_dict post-hook (a module-level function so the model stays picklable)."""
    module.refresh_position_embedding()


class Hiera(nn.Module):
    """Hiera trunk for ``image_size`` inputs; returns the four stage outputs (NCHW)."""

    def __init__(self, cfg: HieraConfig, image_size: int = 1024) -> None:
        super().__init__()
        self.cfg = cfg
        self.image_size = image_size
        side = (image_size + 2 * cfg.patch_padding - cfg.patch_kernel) // cfg.patch_stride + 1
        win0 = cfg.window_spec[0]
        if side % win0:
            raise ValueError(f"image_size {image_size} gives a {side}² token grid, not a multiple of window {win0}")
        self.grid_hw = (side, side)
        self.patch_embed = PatchEmbed(cfg)
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.embed_dim, *cfg.window_pos_embed_bkg_spatial_size))
        self.pos_embed_window = nn.Parameter(torch.zeros(1, cfg.embed_dim, win0, win0))
        # Position embedding = bicubic resize of `pos_embed` to the token grid + `pos_embed_window` tiled.
        # It depends on parameters only, so it is computed once into a non-persistent buffer that the
        # forward adds as a plain constant (one initializer in ONNX, no cubic Resize / Tile in the graph).
        # A load_state_dict post-hook recomputes it whenever weights are loaded, on this module or any
        # parent; call refresh_position_embedding() after editing the two parameters in place.
        # (A matmul form of the resize, computed every forward, was 1 ulp off the official op, and deep
        # random-weight trunks amplify that to ~6e-5; the cached F.interpolate result is bit-exact.)
        self.register_buffer("pos_embed_grid", torch.zeros(1, cfg.embed_dim, side, side), persistent=False)
        self.register_load_state_dict_post_hook(_refresh_after_load)
        self.blocks = nn.ModuleList(self._build_blocks(cfg, (side, side)))
        self.stage_ends = tuple(sum(cfg.stages[: i + 1]) - 1 for i in range(len(cfg.stages)))
        self.refresh_position_embedding()

    @staticmethod
    def _build_blocks(cfg: HieraConfig, hw: tuple[int, int]) -> list[MultiScaleBlock]:
        stage_starts = {sum(cfg.stages[:i]) for i in range(1, len(cfg.stages))}
        pool_blocks = sorted(stage_starts)[: cfg.q_pool]
        dim, heads, stage = cfg.embed_dim, cfg.num_heads, 0
        blocks = []
        for i in range(cfg.depth):
            # The window comes from the stage *before* the stage index is bumped: it lags one block.
            window = 0 if i in cfg.global_att_blocks else cfg.window_spec[stage]
            dim_out = dim
            if i in stage_starts:
                dim_out, heads, stage = int(dim * cfg.dim_mul), int(heads * cfg.head_mul), stage + 1
            stride = cfg.q_stride[0] if i in pool_blocks else 1
            if cfg.q_stride[0] != cfg.q_stride[1]:
                raise ValueError("only square q_stride is supported")
            geo = BlockGeometry(hw, window, stride)
            if stride > 1 and (geo.padded_hw[0] % stride or (window and window % stride)):
                raise ValueError(f"block {i}: grid {geo.padded_hw} / window {window} not divisible by q_stride")
            blocks.append(MultiScaleBlock(dim, dim_out, heads, cfg.mlp_ratio, geo))
            dim, hw = dim_out, geo.out_hw
        return blocks

    def position_embedding(self) -> torch.Tensor:
        """[1, C, H, W] position embedding of the first token grid, computed from the current parameters."""
        c = self.cfg.embed_dim
        (h, w), win = self.grid_hw, self.cfg.window_spec[0]
        bkg = F.interpolate(self.pos_embed, size=(h, w), mode="bicubic", align_corners=False)
        tiled = self.pos_embed_window.reshape(1, c, 1, win, 1, win).expand(1, c, h // win, win, w // win, win)
        return bkg + tiled.reshape(1, c, h, w)

    @torch.no_grad()
    def refresh_position_embedding(self) -> None:
        """Recompute the cached ``pos_embed_grid`` buffer from ``pos_embed`` / ``pos_embed_window``."""
        self.pos_embed_grid.copy_(self.position_embedding())

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x [B, 3, S, S] -> 4 stage outputs [B, C_i, H_i, W_i], highest resolution first."""
        x = (self.patch_embed(x) + self.pos_embed_grid).permute(0, 2, 3, 1)
        outputs = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.stage_ends:
                outputs.append(x.permute(0, 3, 1, 2))
        return outputs
