"""Memory attention: conditions the current frame's features on the memory bank.

Four pre-norm transformer layers (single-head self-attention with axial RoPE on queries and
keys, single-head cross-attention to the memory with RoPE on the queries and on the spatial
memory keys, ReLU feed-forward), then a final LayerNorm. Parameter names match the official
``memory_attention.*`` state dict, so ``load_state_dict(strict=True)`` works after stripping
the prefix.

Layout is batch-first throughout ([B, tokens, channels]): no transposes inside the graph and
a natural shape for ONNX / TensorRT profiles. The memory comes in two inputs instead of one
concatenated tensor plus a Python count of pointer tokens:

- ``memory_spatial`` [B, F*4096, 64]: F memory frames of 64x64 tokens (rotated with RoPE);
- ``obj_ptrs`` [B, K, 64]: object-pointer tokens (not rotated), K may be 0.

F and K are read from tensor shapes only, so both stay dynamic in an exported graph.

EdgeTAM changes two things, both constructor arguments: the number of layers (2), and the
memory frames, which hold 512 perceiver latents instead of 64x64 tokens. There the keys of
a frame's first 256 latents (global) are not rotated and its last 256 (one per 4x4 window)
are rotated by their position on a 16x16 grid (``memory_grid``, ``memory_prefix_tokens``).
The unrotated rows of the key table are cos = 1, sin = 0: a rotation by zero is exact.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from sam2edge.model.common import sine_position_encoding_2d
from sam2edge.model.rope import apply_rope, apply_rope_per_frame, axial_rope_tables


class _Projections(nn.Module):
    """Single-head attention projections under the official names (q/k/v/out_proj)."""

    def __init__(self, d_model: int, kv_dim: int) -> None:
        super().__init__()
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(kv_dim, d_model)
        self.v_proj = nn.Linear(kv_dim, d_model)
        self.out_proj = nn.Linear(d_model, d_model)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Single-head softmax attention. q [B,Nq,D], k/v [B,Nk,D] -> [B,Nq,D]."""
    # A unit head axis lets PyTorch pick its fused CPU/GPU kernels; it exports as MatMul/Softmax.
    out = F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1))
    return out.squeeze(1)


class MemoryAttentionLayer(nn.Module):
    """One pre-norm layer: RoPE self-attention, RoPE cross-attention to memory, ReLU MLP."""

    def __init__(self, d_model: int, kv_dim: int, dim_feedforward: int) -> None:
        super().__init__()
        self.self_attn = _Projections(d_model, d_model)
        self.cross_attn_image = _Projections(d_model, kv_dim)
        self.linear1 = nn.Linear(d_model, dim_feedforward)
        self.linear2 = nn.Linear(dim_feedforward, d_model)
        self.norm1 = nn.LayerNorm(d_model)
        self.norm2 = nn.LayerNorm(d_model)
        self.norm3 = nn.LayerNorm(d_model)

    def forward(
        self,
        x: torch.Tensor,
        mem_keys_spatial: torch.Tensor,
        mem_keys_ptr: torch.Tensor,
        mem_values: torch.Tensor,
        rope_q: tuple[torch.Tensor, torch.Tensor],
        rope_k: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        """x [B,N,D]; mem_keys_spatial [B,F*T,C] (memory + pos); mem_keys_ptr [B,K,C] (pointers + pos);
        mem_values [B,F*T+K,C] (memory then pointers); rope_q = (cos, sin) [N,D/2] of the current
        frame's tokens, rope_k [T,D/2] of one memory frame's tokens -> [B,N,D]."""
        cos, sin = rope_q
        sa = self.self_attn
        h = self.norm1(x)
        q = apply_rope(sa.q_proj(h), cos, sin)
        k = apply_rope(sa.k_proj(h), cos, sin)
        x = x + sa.out_proj(_attend(q, k, sa.v_proj(h)))

        ca = self.cross_attn_image
        q = apply_rope(ca.q_proj(self.norm2(x)), cos, sin)
        k_spatial = apply_rope_per_frame(ca.k_proj(mem_keys_spatial), *rope_k)
        k = torch.cat((k_spatial, ca.k_proj(mem_keys_ptr)), dim=1)
        x = x + ca.out_proj(_attend(q, k, ca.v_proj(mem_values)))

        return x + self.linear2(F.relu(self.linear1(self.norm3(x))))


class MemoryAttention(nn.Module):
    """SAM2 memory attention with real-valued RoPE and an export-friendly interface.

    Args:
        d_model: token width of the current frame (256).
        num_layers: number of layers (4).
        kv_dim: channel width of memory tokens and object-pointer tokens (64).
        feat_size: (H, W) of the current frame's feature grid (64, 64); N = H*W tokens.
        rope_theta: RoPE base frequency.
        dim_feedforward: hidden width of the feed-forward block.
        memory_grid: (H, W) grid of a memory frame's rotated tokens; None: feat_size (SAM2).
        memory_prefix_tokens: unrotated tokens at the start of every memory frame (EdgeTAM: 256).
            A memory frame holds T = memory_prefix_tokens + H*W tokens.
    """

    def __init__(
        self,
        d_model: int = 256,
        num_layers: int = 4,
        kv_dim: int = 64,
        feat_size: tuple[int, int] = (64, 64),
        rope_theta: float = 1e4,
        dim_feedforward: int = 2048,
        memory_grid: tuple[int, int] | None = None,
        memory_prefix_tokens: int = 0,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.kv_dim = kv_dim
        self.feat_size = tuple(feat_size)
        self.layers = nn.ModuleList(MemoryAttentionLayer(d_model, kv_dim, dim_feedforward) for _ in range(num_layers))
        self.norm = nn.LayerNorm(d_model)
        height, width = self.feat_size
        rope = torch.stack(axial_rope_tables(d_model, height, width, rope_theta))
        self.register_buffer("rope_table", rope, persistent=False)  # [2 (cos, sin), N, D/2]
        self.own_key_table = memory_grid is not None or memory_prefix_tokens > 0
        if self.own_key_table:
            grid_h, grid_w = memory_grid or self.feat_size
            cos_k, sin_k = axial_rope_tables(d_model, grid_h, grid_w, rope_theta)
            keep = torch.stack((torch.ones(memory_prefix_tokens, d_model // 2), torch.zeros(memory_prefix_tokens, d_model // 2)))
            key_table = torch.cat((keep, torch.stack((cos_k, sin_k))), dim=1)
            self.register_buffer("key_rope_table", key_table, persistent=False)  # [2, T, D/2]
        # The image encoder's position encoding of the current frame: [1, N, D], a constant.
        pos = sine_position_encoding_2d(height, width, d_model).flatten(2).transpose(1, 2).contiguous()
        self.register_buffer("curr_pos_default", pos, persistent=False)

    @property
    def num_tokens(self) -> int:
        return self.feat_size[0] * self.feat_size[1]

    def _rope_tables(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin), each [N, D/2], in x's dtype.

        The no-op slice to x's token count ties the tables to an input: the legacy ONNX exporter
        then stores them once instead of folding a fresh copy into each of their 64 uses (a
        160 MB file instead of 32 MB).
        """
        return self.rope_table[:, : x.shape[1]].to(x.dtype).unbind(0)

    def _key_rope_tables(self, x: torch.Tensor, rope_q: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin), each [T, D/2], for one memory frame's keys: the query tables unless the memory
        has its own layout (EdgeTAM)."""
        if not self.own_key_table:
            return rope_q
        cos, sin = self.key_rope_table.to(x.dtype).unbind(0)
        return cos, sin

    def forward(
        self,
        curr: torch.Tensor,
        curr_pos: torch.Tensor | None,
        memory_spatial: torch.Tensor,
        memory_spatial_pos: torch.Tensor,
        obj_ptrs: torch.Tensor,
        obj_ptrs_pos: torch.Tensor,
    ) -> torch.Tensor:
        """Condition the current frame on F memory frames and K object-pointer tokens.

        Args:
            curr: [B, N, D] current-frame tokens (N = H*W = 4096 row-major, D = 256).
            curr_pos: [B or 1, N, D] their position encoding, or None for the built-in
                sine encoding (what the image encoder produces; a constant).
            memory_spatial: [B, F*T, C] memory-frame tokens, frames concatenated (C = 64; T = N,
                or the memory_prefix_tokens + memory_grid tokens given at construction).
            memory_spatial_pos: [B, F*T, C] their positions (sine + temporal encoding).
            obj_ptrs: [B, K, C] object-pointer tokens (K >= 0).
            obj_ptrs_pos: [B, K, C] their temporal positions.

        Returns:
            [B, N, D] conditioned features (row-major tokens; reshape to [B, D, H, W] with
            ``out.transpose(1, 2).unflatten(2, (H, W))``).
        """
        if curr_pos is None:
            curr_pos = self.curr_pos_default
        x = curr + 0.1 * curr_pos
        keys_spatial = memory_spatial + memory_spatial_pos
        keys_ptr = obj_ptrs + obj_ptrs_pos
        values = torch.cat((memory_spatial, obj_ptrs), dim=1)
        rope_q = self._rope_tables(x)
        rope_k = self._key_rope_tables(x, rope_q)
        for layer in self.layers:
            x = layer(x, keys_spatial, keys_ptr, values, rope_q, rope_k)
        return self.norm(x)

    def forward_seq_first(
        self,
        curr: torch.Tensor | list[torch.Tensor],
        memory: torch.Tensor,
        curr_pos: torch.Tensor | list[torch.Tensor] | None,
        memory_pos: torch.Tensor,
        num_obj_ptr_tokens: int = 0,
    ) -> torch.Tensor:
        """The official call convention (for parity tests and drop-in use; not for export).

        curr, curr_pos: [N, B, D] or a one-element list of it; memory, memory_pos: [M, B, C]
        with the last ``num_obj_ptr_tokens`` rows being object pointers -> [N, B, D].
        """
        if isinstance(curr, list):
            (curr,) = curr
        if isinstance(curr_pos, list):
            (curr_pos,) = curr_pos
        num_spatial = memory.shape[0] - num_obj_ptr_tokens
        # The reference adds no input position encoding when curr_pos is None.
        curr_pos = torch.zeros_like(curr) if curr_pos is None else curr_pos
        out = self(
            curr.transpose(0, 1),
            curr_pos.transpose(0, 1),
            memory[:num_spatial].transpose(0, 1),
            memory_pos[:num_spatial].transpose(0, 1),
            memory[num_spatial:].transpose(0, 1),
            memory_pos[num_spatial:].transpose(0, 1),
        )
        return out.transpose(0, 1)
