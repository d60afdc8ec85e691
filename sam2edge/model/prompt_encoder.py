"""SAM2 prompt encoder: clicks, box corners and a low-res mask -> sparse and dense embeddings.

Parameter names match the official ``sam_prompt_encoder.*`` state-dict keys (prefix stripped),
so official checkpoints load with ``strict=True``.

Export notes:
- Boxes are always given as two points labelled 2 (top-left) and 3 (bottom-right), and one
  padding point (0, 0) with label -1 is always appended, as the official image and video
  predictors do. The token count is therefore ``P + 1`` for ``P`` input points.
- Labels are turned into embeddings with comparisons, multiplications and one ``where``; the
  coordinates are shifted and normalised out of place. The graph has no ScatterND and no
  data-dependent branch.
- The dense positional encoding of the 64x64 grid is a constant of the Gaussian matrix. It is
  kept as a non-persistent buffer (not in checkpoints) and recomputed by a
  ``load_state_dict`` post hook, so it follows whatever matrix is loaded; call
  :meth:`PromptEncoder.refresh_dense_pe` after writing the matrix by any other route.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from sam2edge.errors import InputError
from sam2edge.model.common import LayerNorm2d

NUM_POINT_LABELS = 4  # 0 negative click, 1 positive click, 2 box top-left, 3 box bottom-right


class RandomFourierPositions(nn.Module):
    """Fourier features of 2-D positions with a fixed random (stored) frequency matrix.

    A position ``p`` in [0, 1]^2 maps to ``[sin(a), cos(a)]`` with ``a = 2*pi * (2p - 1) @ G``,
    ``G`` of shape (2, C/2).
    """

    def __init__(self, num_feats: int) -> None:
        super().__init__()
        # Persistent buffer: it is part of official checkpoints.
        self.register_buffer("positional_encoding_gaussian_matrix", torch.randn(2, num_feats))

    def encode(self, unit_coords: torch.Tensor) -> torch.Tensor:
        """unit_coords (..., 2) as (x, y) in [0, 1] -> (..., 2 * num_feats)."""
        gauss = self.positional_encoding_gaussian_matrix
        return _fourier_features(unit_coords.to(gauss.dtype), gauss)

    def grid(self, height: int, width: int) -> torch.Tensor:
        """Encoding of the cell centres of a height x width grid -> (1, C, H, W), computed in fp32."""
        gauss = self.positional_encoding_gaussian_matrix.float()
        ys = (torch.arange(height, dtype=torch.float32, device=gauss.device) + 0.5) / height
        xs = (torch.arange(width, dtype=torch.float32, device=gauss.device) + 0.5) / width
        coords = torch.stack((xs[None, :].expand(height, width), ys[:, None].expand(height, width)), dim=-1)
        return _fourier_features(coords, gauss).permute(2, 0, 1).unsqueeze(0).contiguous()


def _fourier_features(unit_coords: torch.Tensor, gauss: torch.Tensor) -> torch.Tensor:
    """(..., 2) positions in [0, 1], (2, F) matrix -> (..., 2F) = [sin | cos] of 2*pi*(2p-1) @ G."""
    angles = (2.0 * unit_coords - 1.0) @ gauss
    angles = 2.0 * math.pi * angles
    return torch.cat((angles.sin(), angles.cos()), dim=-1)


class PromptEncoder(nn.Module):
    """Embeds point/box prompts (sparse) and an optional low-res mask prompt (dense)."""

    def __init__(
        self,
        embed_dim: int = 256,
        image_embedding_size: tuple[int, int] = (64, 64),
        input_image_size: tuple[int, int] = (1024, 1024),
        mask_in_chans: int = 16,
    ) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.image_embedding_size = tuple(image_embedding_size)
        self.input_image_size = tuple(input_image_size)
        self.mask_input_size = (4 * self.image_embedding_size[0], 4 * self.image_embedding_size[1])

        self.pe_layer = RandomFourierPositions(embed_dim // 2)
        self.point_embeddings = nn.ModuleList(nn.Embedding(1, embed_dim) for _ in range(NUM_POINT_LABELS))
        self.not_a_point_embed = nn.Embedding(1, embed_dim)
        # 256^2 logits -> 64^2 embedding; indices 2 and 5 are parameter-free GELUs.
        self.mask_downscaling = nn.Sequential(
            nn.Conv2d(1, mask_in_chans // 4, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans // 4),
            nn.GELU(),
            nn.Conv2d(mask_in_chans // 4, mask_in_chans, kernel_size=2, stride=2),
            LayerNorm2d(mask_in_chans),
            nn.GELU(),
            nn.Conv2d(mask_in_chans, embed_dim, kernel_size=1),
        )
        # Declared after mask_downscaling so the state-dict order matches the official model's.
        self.no_mask_embed = nn.Embedding(1, embed_dim)

        self.register_buffer("dense_pe", self.pe_layer.grid(*self.image_embedding_size), persistent=False)
        self.register_load_state_dict_post_hook(_refresh_after_load)

    @torch.no_grad()
    def refresh_dense_pe(self) -> None:
        """Recompute ``dense_pe`` from the current Gaussian matrix (dtype/device follow it)."""
        self.dense_pe = self.pe_layer.grid(*self.image_embedding_size).to(
            self.pe_layer.positional_encoding_gaussian_matrix.dtype
        )

    def get_dense_pe(self) -> torch.Tensor:
        """Positional encoding of the image-embedding grid -> (1, C, 64, 64)."""
        return self.dense_pe

    def embed_points(self, point_coords: torch.Tensor, point_labels: torch.Tensor) -> torch.Tensor:
        """point_coords (N, P, 2) in input pixels, point_labels (N, P) -> (N, P+1, C) with the pad point."""
        n = point_coords.shape[0]
        coords = point_coords.to(torch.float32) + 0.5  # pixel centres
        pad_coords = coords.new_zeros(n, 1, 2)  # the pad point is appended after the shift
        coords = torch.cat((coords, pad_coords), dim=1)
        labels = torch.cat((point_labels, point_labels.new_full((n, 1), -1)), dim=1)

        height, width = self.input_image_size
        scale = coords.new_tensor([float(width), float(height)])
        pe = self.pe_layer.encode(coords / scale)

        # Per-label offsets as a sum of (label == k) * embedding_k: at most one term is non-zero, so
        # the sum is exact; pad points (-1) are then replaced by not_a_point_embed (no position).
        offset = torch.zeros_like(pe)
        for k, emb in enumerate(self.point_embeddings):
            offset = offset + (labels == k).unsqueeze(-1).to(pe.dtype) * emb.weight
        is_pad = (labels == -1).unsqueeze(-1)
        return torch.where(is_pad, self.not_a_point_embed.weight.expand_as(pe), pe + offset)

    def embed_mask(self, batch: int, mask_input: torch.Tensor | None, has_mask: torch.Tensor | None) -> torch.Tensor:
        """Dense embedding -> (N, C, 64, 64).

        mask_input (N, 1, 256, 256) logits or None; has_mask (N,) float in {0, 1} or None. With
        has_mask (export path) the result blends the mask embedding and ``no_mask_embed``.
        """
        h, w = self.image_embedding_size
        no_mask = self.no_mask_embed.weight.reshape(1, -1, 1, 1)
        if mask_input is None:
            if has_mask is not None:
                raise InputError("has_mask was given without mask_input; pass both (export path) or neither")
            return no_mask.expand(batch, -1, h, w)
        expected = (1, *self.mask_input_size)
        if tuple(mask_input.shape[1:]) != expected:
            raise InputError(
                f"mask_input must be (N, {expected[0]}, {expected[1]}, {expected[2]}) logits, got "
                f"{tuple(mask_input.shape)}; resize low-res masks to {self.mask_input_size} first"
            )
        embedded = self.mask_downscaling(mask_input)
        if has_mask is None:
            return embedded
        weight = has_mask.to(embedded.dtype).reshape(-1, 1, 1, 1)
        return weight * embedded + (1.0 - weight) * no_mask

    def forward(
        self,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor | None = None,
        has_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed prompts.

        point_coords (N, P, 2) float (x, y) in 1024-pixel input space; point_labels (N, P) int or
        float: -1 pad, 0 negative, 1 positive, 2 box top-left, 3 box bottom-right.
        mask_input (N, 1, 256, 256) | None; has_mask (N,) | None.
        Returns sparse (N, P+1, C) and dense (N, C, 64, 64).
        """
        if point_coords.dim() != 3 or point_coords.shape[-1] != 2:
            raise InputError(f"point_coords must be (N, P, 2), got {tuple(point_coords.shape)}")
        if point_labels.shape != point_coords.shape[:2]:
            raise InputError(
                f"point_labels must be (N, P) = {tuple(point_coords.shape[:2])}, got {tuple(point_labels.shape)}"
            )
        sparse = self.embed_points(point_coords, point_labels)
        dense = self.embed_mask(point_coords.shape[0], mask_input, has_mask)
        return sparse, dense


def _refresh_after_load(module: nn.Module, incompatible_keys: object) -> None:
    """load_state_dict post hook: the dense PE depends on the just-loaded Gaussian matrix."""
    assert isinstance(module, PromptEncoder)
    module.refresh_dense_pe()
