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

Cost (per object, 4096 queries, F memory frames, D = 256): each layer's cross-attention
scores and weighted sum are 2 x 4096 x F*4096 x 256 multiply-adds, 80-90% of the work. What
is done about it:

- the current frame is shared: given ``curr`` with batch 1, layer 0's self-attention and its
  cross-attention queries (object-independent) are computed once for all B objects;
- the cross-attention attends over the 64-channel memory itself and projects afterwards
  (softmax rows sum to 1, so P @ (M Wv' + bv) = (P @ M) Wv' + bv), with out_proj and v_proj
  composed into one 64 -> 256 map: the weighted sum costs 64 channels instead of 256 (a 4x
  smaller second MatMul). This is the exported graphs' form, as plain attention in query
  chunks (ONNX Runtime and TensorRT run plain MatMul-Softmax-MatMul well). Eager PyTorch, on
  the CPU as on CUDA, keeps v_proj and the fused SDPA kernel (it needs equal key and value
  widths): its blocked kernel keeps the scores in cache, while torch's separate MatMul,
  softmax and MatMul over a [chunk, F*4096] score block do not. Measured on the CPU (the
  memory-attention artifact alone, 1 object, 4 pointers, hiera_t, wall ms, interleaved
  medians; narrow in query chunks of 128, the fastest eager chunk): at 2 threads narrow vs fused
  2509 vs 2150 at F = 2, 3001 vs 2521 at F = 3, 3106 vs 2836 at F = 4, 5351 vs 4669 at F = 7,
  and a wash at F = 1 (1624 vs 1549, 1608 vs 1738 in two runs); at 1 thread a wash too (F = 1
  2613 vs 2697, F = 4 6195 vs 6067);
- RoPE is a second projection with pair-swapped weight rows plus two elementwise passes
  (``rope.rotate_projected``), bit-identical to the pairwise form;
- exported plain attention folds the softmax scale (1/16, exact) into the query weights and
  runs in query chunks, so no [B, 4096, F*4096] score matrix is held at once.

EdgeTAM changes two things, both constructor arguments: the number of layers (2), and the
memory frames, which hold 512 perceiver latents instead of 64x64 tokens. There the keys of
a frame's first 256 latents (global) are not rotated and its last 256 (one per 4x4 window)
are rotated by their position on a 16x16 grid (``memory_grid``, ``memory_prefix_tokens``).
The unrotated rows of the key table are cos = 1, sin = 0: a rotation by zero is exact, so both
families run the same graph with their own key table (``key_rope_table``).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from sam2edge.model.common import is_tracing, sine_position_encoding_2d
from sam2edge.model.rope import interleaved_rope_tables, rotate_projected, swap_pairs

# Query chunks of the plain (unfused) attention in exported graphs. Every query row is its own
# softmax, so chunking changes no value; it bounds the score block to [B, chunk, F*4096] (a whole
# [B, 4096, F*4096] is 470 MB per object at F = 7) and keeps more of it in cache. Each chunk is a
# plain MatMul-Softmax-MatMul (TensorRT fuses it). Measured on the cross-attention core (4096
# queries, 4 memory frames, 64-channel values, 1 thread, CPU time): ONNX Runtime whole 713 ms,
# chunks of 1024 / 512 / 256 / 128 / 64: 578 / 566 / 549 / 604 / 685 ms.
EXPORT_QUERY_CHUNK = 512


class _Projections(nn.Module):
    """Single-head attention projections under the official names (q/k/v/out_proj)."""

    def __init__(self, d_model: int, kv_dim: int) -> None:
        super().__init__()
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(kv_dim, d_model)
        self.v_proj = nn.Linear(kv_dim, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    @staticmethod
    def rotated(proj: nn.Linear, x: torch.Tensor, rope: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        """RoPE(proj(x)) * scale. x [..., N, in] (any leading dims); rope [2, N, D] -> [..., N, D].

        A second projection with the pair-swapped weight rows gives proj(x) with its pairs swapped
        (two GEMMs, no strided views or Split copies in the graph). A power-of-two scale (the
        softmax's 1/16) is exact, so folding it into the weights changes no bit.
        """
        y = F.linear(x, proj.weight * scale, proj.bias * scale)
        y_swapped = F.linear(x, swap_pairs(proj.weight) * scale, swap_pairs(proj.bias) * scale)
        return rotate_projected(y, y_swapped, rope[0], rope[1])


def _plain_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, chunk: int) -> torch.Tensor:
    """softmax(q k^T) v in query chunks, q pre-scaled. q [1 or B, Nq, D] (broadcast over k's batch),
    k [B, Nk, D], v [B, Nk, Dv] (Dv may differ from D) -> [B, Nq, Dv]."""
    kt = k.transpose(1, 2)
    if q.shape[1] <= chunk:
        return (q @ kt).softmax(-1) @ v
    return torch.cat([(c @ kt).softmax(-1) @ v for c in q.split(chunk, dim=1)], dim=1)


def _fused_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """PyTorch's fused SDPA kernel (it needs equal q, k and v widths), through a unit head axis.
    q [1 or B, Nq, D] (broadcast over k's batch), k and v [B, Nk, D] -> [B, Nq, D]."""
    q = q.expand(k.shape[0], -1, -1)
    return F.scaled_dot_product_attention(q.unsqueeze(1), k.unsqueeze(1), v.unsqueeze(1), scale=scale).squeeze(1)


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
        self.scale = 1.0 / math.sqrt(d_model)  # single head: head_dim = d_model

    def forward(
        self,
        x: torch.Tensor,
        mem_keys_spatial: torch.Tensor,
        mem_keys_ptr: torch.Tensor,
        mem_values: torch.Tensor,
        rope: torch.Tensor,
        rope_k: torch.Tensor,
    ) -> torch.Tensor:
        """x [1 or B,N,D]; mem_keys_spatial [B,F*T,C] (memory + pos); mem_keys_ptr [B,K,C] (pointers + pos);
        mem_values [B,F*T+K,C] (memory then pointers); rope [2,N,D] of the current frame's tokens,
        rope_k [2,T,D] of one memory frame's tokens (T = N for SAM2) -> [B,N,D]."""
        x = x + self._self_attention(self.norm1(x), rope)
        x = x + self._cross_attention(self.norm2(x), mem_keys_spatial, mem_keys_ptr, mem_values, rope, rope_k)
        return x + self.linear2(F.relu(self.linear1(self.norm3(x))))

    def _self_attention(self, h: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
        sa = self.self_attn
        if is_tracing():
            q = sa.rotated(sa.q_proj, h, rope, self.scale)
            k = sa.rotated(sa.k_proj, h, rope)
            return sa.out_proj(_plain_attention(q, k, sa.v_proj(h), EXPORT_QUERY_CHUNK))
        q, k = sa.rotated(sa.q_proj, h, rope), sa.rotated(sa.k_proj, h, rope)
        return sa.out_proj(_fused_attention(q, k, sa.v_proj(h), self.scale))

    def _cross_attention(
        self, h: torch.Tensor, keys_spatial: torch.Tensor, keys_ptr: torch.Tensor, values: torch.Tensor,
        rope: torch.Tensor, rope_k: torch.Tensor,
    ) -> torch.Tensor:
        ca = self.cross_attn_image
        narrow = is_tracing()  # the exported form; eager PyTorch keeps the fused kernel (module docstring)
        q = ca.rotated(ca.q_proj, h, rope, self.scale if narrow else 1.0)
        # Every memory frame takes the same per-position table: [B, F, T, C] against [T, D].
        k_spatial = ca.rotated(ca.k_proj, keys_spatial.unflatten(1, (-1, rope_k.shape[1])), rope_k).flatten(1, 2)
        k = torch.cat((k_spatial, ca.k_proj(keys_ptr)), dim=1)
        if narrow:
            # out_proj o v_proj composed into one 64 -> 256 map (constant-folded at export); softmax
            # rows sum to 1, so the v_proj bias passes through the weighted sum unchanged.
            weight = ca.out_proj.weight @ ca.v_proj.weight
            bias = ca.out_proj.weight @ ca.v_proj.bias + ca.out_proj.bias
            return F.linear(_plain_attention(q, k, values, EXPORT_QUERY_CHUNK), weight, bias)
        return ca.out_proj(_fused_attention(q, k, ca.v_proj(values), self.scale))


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
        rope = interleaved_rope_tables(d_model, height, width, rope_theta)
        self.register_buffer("rope_table", rope, persistent=False)  # [2 (cos, +-sin per pair), N, D]
        self.own_key_table = memory_grid is not None or memory_prefix_tokens > 0
        if self.own_key_table:
            grid_h, grid_w = memory_grid or self.feat_size
            keep = torch.stack((torch.ones(memory_prefix_tokens, d_model), torch.zeros(memory_prefix_tokens, d_model)))
            rotated = interleaved_rope_tables(d_model, grid_h, grid_w, rope_theta)
            self.register_buffer("key_rope_table", torch.cat((keep, rotated), dim=1), persistent=False)  # [2, T, D]
        # The image encoder's position encoding of the current frame: [1, N, D], a constant.
        pos = sine_position_encoding_2d(height, width, d_model).flatten(2).transpose(1, 2).contiguous()
        self.register_buffer("curr_pos_default", pos, persistent=False)

    def _rope_tables(self, x: torch.Tensor) -> torch.Tensor:
        """[2 (cos, +-sin), N, D] in x's dtype.

        The no-op slice to x's token count ties the tables to an input: the legacy ONNX exporter
        then stores them once instead of folding a fresh copy into each of their 64 uses (a
        160 MB file instead of 32 MB).
        """
        return self.rope_table[:, : x.shape[1]].to(x.dtype)

    def _key_rope_tables(self, x: torch.Tensor, rope: torch.Tensor) -> torch.Tensor:
        """[2, T, D] for one memory frame's keys: the query tables unless the memory has its own
        layout (EdgeTAM)."""
        if not self.own_key_table:
            return rope
        return self.key_rope_table.to(x.dtype)

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
            curr: [B or 1, N, D] current-frame tokens (N = H*W = 4096 row-major, D = 256). With
                batch 1 the frame is shared by all B objects: what does not depend on the object
                (layer 0's self-attention and cross-attention queries) is computed once.
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
        rope = self._rope_tables(x)
        rope_k = self._key_rope_tables(x, rope)
        for layer in self.layers:
            x = layer(x, keys_spatial, keys_ptr, values, rope, rope_k)
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
