"""Two-way transformer of the SAM2 mask decoder: prompt tokens and image tokens attend to each other.

Names follow the official ``sam_mask_decoder.transformer.*`` keys. Attention uses static head
splits (only the channel axis is reshaped) and ``scaled_dot_product_attention`` with an explicit
constant scale, which both ONNX exporters lower to MatMul/Softmax without shape arithmetic.
Image-side tensors may carry batch 1 against N prompt batches: every binary op broadcasts, so
one image embedding serves N prompts without copies.

The two cross-attentions between the few prompt tokens (T, about 8) and the 4096 image
tokens are evaluated through the image side's 256 channels instead of projecting every image
token to the 128-wide attention space (``Attention.tokens_to_image`` / ``image_to_tokens``).
The projections are linear, so they can be moved onto the token side:

* token->image: ``q_h k_h^T = (q_h Wk_h) x^T + q_h bk_h``; the second term is constant along
  each softmax row and drops out. ``P_h v_h = (P_h x) Wv_h^T + bv_h`` since P's rows sum to 1.
* image->token: ``q_h k_h^T = x (Wq_h^T k_h^T) + bq_h k_h^T``, and the output projection folds
  into the values: ``sum_h P_h (v_h Wo_h^T) + bo``, and ``bo`` into head 0's values (its rows of
  P sum to 1).

Each image-side product then costs HW*C*H*T instead of HW*C*H*D multiply-adds, half the
work for one click (T=8, D=16) in every one of the five cross-attentions. The result is the
same function up to float rounding (about 1e-6 relative). In eager mode the form is chosen per
call (T < D); a traced/exported graph always uses the folded form, since T is symbolic there
and interactive prompts (up to 9 points, or a box) stay below D.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from sam2edge.model.common import MLP, is_tracing


class Attention(nn.Module):
    """Multi-head attention whose q/k/v projections may shrink the width by ``downsample_rate``."""

    def __init__(self, embedding_dim: int, num_heads: int, downsample_rate: int = 1) -> None:
        super().__init__()
        internal_dim = embedding_dim // downsample_rate
        if internal_dim % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide the internal width {internal_dim}")
        self.num_heads = num_heads
        self.head_dim = internal_dim // num_heads
        self.scale = self.head_dim**-0.5
        self.q_proj = nn.Linear(embedding_dim, internal_dim)
        self.k_proj = nn.Linear(embedding_dim, internal_dim)
        self.v_proj = nn.Linear(embedding_dim, internal_dim)
        self.out_proj = nn.Linear(internal_dim, embedding_dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, H*D) -> (B, H, L, D)."""
        return x.unflatten(2, (self.num_heads, self.head_dim)).transpose(1, 2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """q (B, Lq, C), k/v (B, Lk, C) -> (B, Lq, C)."""
        out = F.scaled_dot_product_attention(
            self._heads(self.q_proj(q)), self._heads(self.k_proj(k)), self._heads(self.v_proj(v)), scale=self.scale
        )
        return self.out_proj(out.transpose(1, 2).flatten(2))

    def _fold(self, tokens: int) -> bool:
        return is_tracing() or tokens < self.head_dim

    def tokens_to_image(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Same as ``forward`` for few token queries q (B, T, C) over image keys/values (1|B, HW, C)."""
        h, d, t = self.num_heads, self.head_dim, q.shape[1]
        if not self._fold(t):
            return self(q, k, v)
        qh = self._heads(self.q_proj(q) * self.scale)  # (B, H, T, D)
        qk = (qh @ self.k_proj.weight.unflatten(0, (h, d))).flatten(1, 2)  # (B, H*T, C): q_h Wk_h
        p = (qk @ k.transpose(1, 2)).unflatten(1, (h, t)).softmax(-1).flatten(1, 2)  # (B, H*T, HW)
        px = (p @ v).unflatten(1, (h, t))  # (B, H, T, C)
        out = px @ self.v_proj.weight.unflatten(0, (h, d)).transpose(1, 2)  # (B, H, T, D): (P_h x) Wv_h^T
        return self.out_proj(out.transpose(1, 2).flatten(2) + self.v_proj.bias)

    def image_to_tokens(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Same as ``forward`` for image queries q (1|B, HW, C) over few token keys/values (B, T, C)."""
        h, d, t = self.num_heads, self.head_dim, k.shape[1]
        if not self._fold(t):
            return self(q, k, v)
        kh = self._heads(self.k_proj(k) * self.scale)  # (B, H, T, D)
        a = (kh @ self.q_proj.weight.unflatten(0, (h, d))).flatten(1, 2)  # (B, H*T, C): k_h Wq_h
        c = (kh @ self.q_proj.bias.view(h, d, 1)).flatten(1).unsqueeze(1)  # (B, 1, H*T): bq_h . k_h
        p = (q @ a.transpose(1, 2) + c).unflatten(2, (h, t)).softmax(-1).flatten(2)  # (B, HW, H*T)
        wo = self.out_proj.weight.t().unflatten(0, (h, d))  # (H, D, C)
        # The output bias rides on head 0's values: P_0's rows sum to 1, so P_0 (V_0 + bo) = P_0 V_0 + bo.
        # That saves a pass over the (B, HW, C) result.
        bias = F.pad(self.out_proj.bias.view(1, 1, -1), (0, 0, 0, 0, 0, h - 1))  # (H, 1, C), zero but head 0
        vo = (self._heads(self.v_proj(v)) @ wo + bias).flatten(1, 2)  # (B, H*T, C): v_h Wo_h^T (+ bo)
        return p @ vo


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, token->image attention, token MLP, image->token attention (post-norm)."""

    def __init__(
        self, embedding_dim: int, num_heads: int, mlp_dim: int, downsample_rate: int, skip_first_layer_pe: bool
    ) -> None:
        super().__init__()
        self.self_attn = Attention(embedding_dim, num_heads)
        self.norm1 = nn.LayerNorm(embedding_dim)
        self.cross_attn_token_to_image = Attention(embedding_dim, num_heads, downsample_rate)
        self.norm2 = nn.LayerNorm(embedding_dim)
        self.mlp = MLP(embedding_dim, mlp_dim, embedding_dim, num_layers=2, activation=nn.ReLU)
        self.norm3 = nn.LayerNorm(embedding_dim)
        self.norm4 = nn.LayerNorm(embedding_dim)
        self.cross_attn_image_to_token = Attention(embedding_dim, num_heads, downsample_rate)
        self.skip_first_layer_pe = skip_first_layer_pe

    def forward(
        self, queries: torch.Tensor, keys: torch.Tensor, query_pe: torch.Tensor, key_pe: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """queries (N, T, C), keys (N, HW, C), query_pe (N, T, C), key_pe (1|N, HW, C)."""
        if self.skip_first_layer_pe:
            # First layer: the prompt tokens *are* their positional encoding; no residual.
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + query_pe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)

        q = queries + query_pe
        k = keys + key_pe
        queries = self.norm2(queries + self.cross_attn_token_to_image.tokens_to_image(q, k, keys))
        queries = self.norm3(queries + self.mlp(queries))

        q = queries + query_pe
        keys = self.norm4(keys + self.cross_attn_image_to_token.image_to_tokens(k, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    """``depth`` two-way blocks, then a final token->image attention and LayerNorm."""

    def __init__(
        self,
        depth: int = 2,
        embedding_dim: int = 256,
        num_heads: int = 8,
        mlp_dim: int = 2048,
        downsample_rate: int = 2,
    ) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TwoWayAttentionBlock(embedding_dim, num_heads, mlp_dim, downsample_rate, skip_first_layer_pe=(i == 0))
            for i in range(depth)
        )
        self.final_attn_token_to_image = Attention(embedding_dim, num_heads, downsample_rate)
        self.norm_final_attn = nn.LayerNorm(embedding_dim)

    def forward(
        self, image_embedding: torch.Tensor, image_pe: torch.Tensor, point_embedding: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """image_embedding (N, C, H, W), image_pe (1|N, C, H, W), point_embedding (N, T, C).

        Returns the processed tokens (N, T, C) and image tokens (N, HW, C).
        """
        keys = image_embedding.flatten(2).transpose(1, 2)
        key_pe = image_pe.flatten(2).transpose(1, 2)
        queries = point_embedding
        for layer in self.layers:
            queries, keys = layer(queries, keys, point_embedding, key_pe)
        q = queries + point_embedding
        k = keys + key_pe
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image.tokens_to_image(q, k, keys))
        return queries, keys
