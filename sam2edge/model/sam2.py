"""SAM2Model: the SAM2 / SAM2.1 / EdgeTAM networks assembled under the official state-dict names.

This module only wires the networks together and holds the handful of top-level
parameters (memory temporal encodings, no-memory / no-object embeddings, object-pointer
projections). It keeps no video state: the tracker (runtime/) owns the memory bank and
calls the small, stateless methods here.

An official checkpoint's ``model`` dict loads with ``load_state_dict(strict=True)``.
Constants derived from the configuration (position encodings, RoPE tables, dense PE)
are non-persistent buffers inside the networks.
"""

from __future__ import annotations

import copy
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

from sam2edge.config import ModelConfig, get_config
from sam2edge.model.common import MLP, is_tracing
from sam2edge.model.image_encoder import ImageEncoder
from sam2edge.model.mask_decoder import MaskDecoder
from sam2edge.model.memory_attention import MemoryAttention
from sam2edge.model.memory_encoder import MemoryEncoder
from sam2edge.model.perceiver import SpatialPerceiver
from sam2edge.model.prompt_encoder import PromptEncoder
from sam2edge.model.repvit import RepViTTrunk, reparameterize


class ImageFeatures(NamedTuple):
    """What the image encoder artifact produces for a batch of B images."""

    image_embed: torch.Tensor  # [B,256,64,64] 64² features + no_mem_embed (decoder input)
    high_res_feats_0: torch.Tensor  # [B,32,256,256] conv_s0 of the 256² level
    high_res_feats_1: torch.Tensor  # [B,64,128,128] conv_s1 of the 128² level
    vision_features: torch.Tensor  # [B,256,64,64] raw 64² features (memory path)


class DecoderOutput(NamedTuple):
    """All four mask tokens for N prompts; selection happens outside the network."""

    masks: torch.Tensor  # [N,4,256,256] low-res logits (token 0 = single-mask output)
    iou: torch.Tensor  # [N,4] predicted IoU (sigmoid)
    tokens: torch.Tensor  # [N,4,256] mask-token outputs
    object_score_logits: torch.Tensor  # [N,1]
    obj_ptr: torch.Tensor  # [N,4,256] obj_ptr_proj of every token (not yet gated)


class SAM2Model(nn.Module):
    """The networks of one SAM2 variant, state-dict compatible with the official SAM2Base."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        d, mem = cfg.d_model, cfg.mem_dim
        side = cfg.embedding_size
        self.image_encoder = ImageEncoder(cfg)
        self.mask_downsample = nn.Conv2d(1, 1, kernel_size=4, stride=4)
        perceiver = cfg.perceiver
        self.memory_attention = MemoryAttention(
            d_model=d, num_layers=cfg.memory_attention_layers, kv_dim=mem, feat_size=(side, side),
            memory_grid=(perceiver.grid_2d, perceiver.grid_2d) if perceiver else None,
            memory_prefix_tokens=perceiver.num_latents if perceiver else 0,
        )
        self.memory_encoder = MemoryEncoder(feat_size=(side, side))
        self.maskmem_tpos_enc = nn.Parameter(torch.zeros(cfg.num_maskmem, 1, 1, mem))
        self.no_mem_embed = nn.Parameter(torch.zeros(1, 1, d))
        self.no_mem_pos_enc = nn.Parameter(torch.zeros(1, 1, d))
        self.no_obj_ptr = nn.Parameter(torch.zeros(1, d))
        if cfg.no_obj_embed_spatial:
            self.no_obj_embed_spatial = nn.Parameter(torch.zeros(1, mem))
        else:
            self.no_obj_embed_spatial = None
        self.sam_prompt_encoder = PromptEncoder(
            embed_dim=d, image_embedding_size=(side, side), input_image_size=(cfg.image_size, cfg.image_size)
        )
        self.sam_mask_decoder = MaskDecoder()
        self.obj_ptr_proj = MLP(d, d, d, 3)
        self.obj_ptr_tpos_proj = nn.Linear(d, mem) if cfg.proj_tpos_enc_in_obj_ptrs else nn.Identity()
        # EdgeTAM: each memory frame is compressed to latents before it is stored (last in the official order).
        self.spatial_perceiver = SpatialPerceiver(perceiver, (side, side)) if perceiver else None

    # -- image path --------------------------------------------------------------------
    def encode_image(self, image: torch.Tensor) -> ImageFeatures:
        """image [B,3,S,S] normalised -> ImageFeatures (what set_image computes)."""
        if is_tracing():
            hr0, hr1, f2 = self._encode_image_folded(image)
        else:
            f0, f1, f2 = self.image_encoder(image)
            hr0, hr1 = self.sam_mask_decoder.project_high_res(f0, f1)
        image_embed = f2 + self.no_mem_embed.view(1, -1, 1, 1)
        return ImageFeatures(image_embed, hr0, hr1, f2)

    def _encode_image_folded(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """image -> (high_res_feats_0, high_res_feats_1, 64² neck level) for exported graphs, with the
        neck laterals composed with conv_s0 / conv_s1.

        The two high-resolution neck levels are bare 1x1 convs (no top-down sum in any official
        config) read only by conv_s0 / conv_s1, so each pair is one 1x1 conv: 96->32 channels at
        256² instead of 96->256->32 (hiera_t), and likewise at 128². Exported weights are the
        products (constants). About 45 ms per 1024² image in ONNX Runtime on 2 threads; values
        agree up to float reassociation.
        """
        enc, dec = self.image_encoder, self.sam_mask_decoder
        skip = tuple(lv for lv in enc.neck.bare_levels() if lv < 2)
        xs = enc.trunk(image)
        feats = enc.neck(xs, skip=skip)
        hr = []
        for level, head in ((0, dec.conv_s0), (1, dec.conv_s1)):
            if level not in skip:
                hr.append(head(feats[level]))
                continue
            lat = enc.neck.lateral(level)
            w_head = head.weight.flatten(1)  # (C_out, d_model)
            weight = (w_head @ lat.weight.flatten(1))[:, :, None, None]
            bias = w_head @ lat.bias + head.bias
            hr.append(F.conv2d(xs[level], weight, bias))
        return hr[0], hr[1], feats[2]

    def decode_prompts(
        self,
        image_embed: torch.Tensor,
        high_res_feats_0: torch.Tensor,
        high_res_feats_1: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor | None = None,
        has_mask: torch.Tensor | None = None,
    ) -> DecoderOutput:
        """Prompt encoder + mask decoder for N prompts on one image (or N images).

        point_coords [N,P,2] in input (1024) pixels, point_labels [N,P]; the padding point
        is appended by the prompt encoder. mask_input [N,1,256,256] logits, optional.
        """
        sparse, dense = self.sam_prompt_encoder(point_coords, point_labels, mask_input, has_mask)
        masks, iou, tokens, obj_score = self.sam_mask_decoder(
            image_embed, self.sam_prompt_encoder.dense_pe, sparse, dense, high_res_feats_0, high_res_feats_1
        )
        return DecoderOutput(masks, iou, tokens, obj_score, self.obj_ptr_proj(tokens))

    # -- memory-path helpers (stateless) ---------------------------------------------
    def gate_obj_ptr(self, obj_ptr: torch.Tensor, object_score_logits: torch.Tensor) -> torch.Tensor:
        """obj_ptr [N,256] of the chosen token (scores [N,1]), or [N,T,256] of every token (scores [N,1,1])
        -> pointer with hard object-presence gating."""
        present = (object_score_logits > 0).to(obj_ptr.dtype)
        return present * obj_ptr + (1 - present) * self.no_obj_ptr

    def export_form(self) -> SAM2Model:
        """The model exported graphs should hold: ``self``, or for EdgeTAM a copy whose RepViT trunk is
        re-parameterised (BatchNorm folded, token-mixer branches merged into one depthwise conv).

        The copy computes the same function (about 1e-6 relative) with plain convolutions only;
        its state-dict keys differ from the checkpoint's, so ``self`` stays the loadable model.
        """
        if not isinstance(self.image_encoder.trunk, RepViTTrunk):
            return self
        model = copy.deepcopy(self)
        reparameterize(model.image_encoder.trunk)
        return model.eval()


def build_model(name_or_cfg: str | ModelConfig) -> SAM2Model:
    """An uninitialised SAM2Model for a variant name, alias or config (load weights next)."""
    cfg = name_or_cfg if isinstance(name_or_cfg, ModelConfig) else get_config(name_or_cfg)
    return SAM2Model(cfg).eval()
