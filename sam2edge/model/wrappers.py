"""One nn.Module per artifact around a SAM2Model: the exact computation each graph holds.

Each wrapper's ``forward`` takes the spec's inputs in order and returns its outputs in
order (see ``sam2edge.contract.artifacts``). The PyTorch backend runs these same modules, so
both backends share one interface. Nothing here branches on tensor values.

Requires torch.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from sam2edge.contract.artifacts import ARTIFACTS, IMAGE_SIZE, Artifact
from sam2edge.model.common import is_tracing, sine_position_encoding_1d


class ImageEncoderWrapper(nn.Module):
    """image [B,3,1024,1024] -> (image_embed, high_res_feats_0, high_res_feats_1, vision_features)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats = self.model.encode_image(image)
        return feats.image_embed, feats.high_res_feats_0, feats.high_res_feats_1, feats.vision_features


class PromptDecoderWrapper(nn.Module):
    """Prompt encoder + mask decoder + gated object pointers for N prompts on one image.

    Returns masks [N,4,256,256], iou_predictions [N,4], object_score_logits [N,1],
    mask_tokens [N,4,256], obj_ptr [N,4,256] (present ? proj(token) : no_obj_ptr).
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(
        self,
        image_embed: torch.Tensor,
        high_res_feats_0: torch.Tensor,
        high_res_feats_1: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        # One embedding for all prompts (B = 1) or one per prompt (B = N). Run eagerly, the decoder
        # broadcasts B = 1 itself (and checks B is 1 or N). In the exported graph, row i % B for prompt i:
        # an index, not a broadcast of two symbolic batch sizes, keeps B and N independent; B is counted
        # as a tensor because the exporter cannot take a remainder by a symbolic int.
        if is_tracing():
            num_embeds = torch.ones_like(image_embed[:, 0, 0, 0], dtype=torch.int64).sum()
            rows = torch.arange(point_coords.shape[0], device=image_embed.device) % num_embeds
            image_embed = image_embed.index_select(0, rows)
        out = self.model.decode_prompts(
            image_embed, high_res_feats_0, high_res_feats_1, point_coords, point_labels, mask_input, has_mask_input
        )
        # Hard presence gating of every token's pointer (the tracker keeps the selected row).
        obj_ptr = self.model.gate_obj_ptr(out.obj_ptr, out.object_score_logits.unsqueeze(-1))  # [N,4,256]
        return out.masks, out.iou, out.object_score_logits, out.tokens, obj_ptr


class MemoryAttentionWrapper(nn.Module):
    """Condition the current frame on each object's memory bank -> image_embed [B,256,64,64].

    vision_features [1,256,64,64]; memory [B,F,64,64,64] (EdgeTAM: [B,F,512,64] perceiver
    latents); memory_tpos [F] int (rows of maskmem_tpos_enc); obj_ptrs [B,K,256];
    obj_ptr_offsets [K] normalised time offsets.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        cfg = model.cfg
        self.mem_dim = cfg.mem_dim
        self.d_model = cfg.d_model
        self.use_ptr_tpos = bool(cfg.add_tpos_enc_to_obj_ptrs)
        perceiver = getattr(model, "spatial_perceiver", None)
        self.latent_memory = perceiver is not None
        # Position of a memory frame's tokens, [T, C]: the memory encoder's sine encoding of the grid,
        # or (EdgeTAM) the perceiver's constant latent positions (zeros for global latents, sine 16x16).
        pos = perceiver.latent_pos[0] if perceiver is not None else model.memory_encoder.pos_enc.flatten(2).transpose(1, 2)[0]
        self.register_buffer("mem_pos", pos.clone(), persistent=False)

    def forward(
        self,
        vision_features: torch.Tensor,
        memory: torch.Tensor,
        memory_tpos: torch.Tensor,
        obj_ptrs: torch.Tensor,
        obj_ptr_offsets: torch.Tensor,
    ) -> torch.Tensor:
        if self.latent_memory:  # [B,F,T,C] latents
            b, f, tokens, c = memory.shape
            spatial = memory.reshape(b, f * tokens, c)
        else:  # [B,F,C,H,W] grids
            b, f, c, mh, mw = memory.shape
            tokens = mh * mw
            spatial = memory.flatten(3).transpose(2, 3).reshape(b, f * tokens, c)  # [B,F*T,64]
        h, w = vision_features.shape[-2:]
        k = obj_ptrs.shape[1]
        split = self.d_model // self.mem_dim  # tokens per pointer (4)
        # Batch 1: the frame is shared, so its object-independent work runs once (see MemoryAttention).
        curr = vision_features.flatten(2).transpose(1, 2)  # [1,N,256]
        tpos = self.model.maskmem_tpos_enc.reshape(-1, c)[memory_tpos.long()]  # [F,64]
        spatial_pos = (self.mem_pos.unsqueeze(0) + tpos.unsqueeze(1)).reshape(1, f * tokens, c)
        ptr_tokens = obj_ptrs.reshape(b, k * split, self.mem_dim)  # pointer i -> tokens 4i..4i+3
        ptr_pos = self._ptr_pos(obj_ptr_offsets)  # [K,64]
        ptr_pos = ptr_pos.unsqueeze(1).expand(k, split, self.mem_dim).reshape(1, k * split, self.mem_dim)
        out = self.model.memory_attention(curr, None, spatial, spatial_pos, ptr_tokens, ptr_pos)  # [B,N,256]
        return out.transpose(1, 2).reshape(b, self.d_model, h, w)

    def _ptr_pos(self, offsets: torch.Tensor) -> torch.Tensor:
        if self.use_ptr_tpos:
            return self.model.obj_ptr_tpos_proj(sine_position_encoding_1d(offsets, self.d_model))
        # SAM2.0: pointers carry no temporal position; keep the input in the graph as zeros.
        return (offsets.unsqueeze(-1) * 0.0).expand(-1, self.mem_dim)


class MemoryEncoderWrapper(nn.Module):
    """(vision_features [1,256,64,64], mask_logits [B,1,S,S], is_mask_from_points [B],
    object_score_logits [B,1]) -> maskmem_features [B,64,64,64].

    EdgeTAM: the spatial perceiver compresses each object's memory frame in the same graph,
    -> maskmem_features [B,512,64]: the official model compresses every frame on its own
    right after encoding it, so storing the latents in the bank is exact.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        cfg = model.cfg
        self.scale = float(cfg.sigmoid_scale_for_mem_enc)
        self.bias = float(cfg.sigmoid_bias_for_mem_enc)
        self.add_no_obj = model.no_obj_embed_spatial is not None
        self.compress = getattr(model, "spatial_perceiver", None) is not None

    def forward(
        self,
        vision_features: torch.Tensor,
        mask_logits: torch.Tensor,
        is_mask_from_points: torch.Tensor,
        object_score_logits: torch.Tensor,
    ) -> torch.Tensor:
        high_res = F.interpolate(mask_logits, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
        binarize = is_mask_from_points.to(high_res.dtype).reshape(-1, 1, 1, 1)
        prob = binarize * (high_res > 0).to(high_res.dtype) + (1.0 - binarize) * torch.sigmoid(high_res)
        mask = prob * self.scale + self.bias
        features, _ = self.model.memory_encoder(vision_features, mask)
        if self.add_no_obj:
            absent = (object_score_logits <= 0).to(features.dtype).reshape(-1, 1, 1, 1)
            features = features + absent * self.model.no_obj_embed_spatial.reshape(1, -1, 1, 1)
        if self.compress:
            features = self.model.spatial_perceiver(features)
        return features


WRAPPERS: dict[str, type[nn.Module]] = {
    Artifact.IMAGE_ENCODER: ImageEncoderWrapper,
    Artifact.PROMPT_DECODER: PromptDecoderWrapper,
    Artifact.MEMORY_ATTENTION: MemoryAttentionWrapper,
    Artifact.MEMORY_ENCODER: MemoryEncoderWrapper,
}
assert set(WRAPPERS) == set(ARTIFACTS)


def build_wrapper(name: str, model: nn.Module) -> nn.Module:
    """The eval-mode wrapper module of artifact ``name`` around ``model``."""
    if name not in WRAPPERS:
        raise KeyError(f"unknown artifact {name!r}; known: {sorted(WRAPPERS)}")
    return WRAPPERS[name](model).eval()
