"""SAM2 mask decoder: image embedding + prompt embeddings -> 4 mask logits, IoU, tokens, object score.

Names follow the official ``sam_mask_decoder.*`` keys (prefix stripped; ``strict=True`` loads).
:meth:`MaskDecoder.forward` always returns all four mask tokens; choosing between the
single-mask token and the three multimask tokens is :func:`select_masks`, which can run in
the exported graph or on the host.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from sam2edge.errors import InputError
from sam2edge.model.common import MLP, LayerNorm2d, is_tracing
from sam2edge.model.transformer import TwoWayTransformer


class MaskDecoder(nn.Module):
    """Two-way transformer over [obj_score, iou, 4 mask tokens, prompt tokens] and the image.

    Uses the high-resolution features (stride 4 and 8) during upscaling, predicts IoU with a
    sigmoid head and an object-presence logit with an MLP head, as every SAM2 config does.
    """

    def __init__(
        self,
        transformer_dim: int = 256,
        num_multimask_outputs: int = 3,
        iou_head_depth: int = 3,
        iou_head_hidden_dim: int = 256,
        transformer_depth: int = 2,
        num_heads: int = 8,
        mlp_dim: int = 2048,
    ) -> None:
        super().__init__()
        dim = transformer_dim
        self.num_mask_tokens = num_multimask_outputs + 1
        self.transformer = TwoWayTransformer(transformer_depth, dim, num_heads, mlp_dim, downsample_rate=2)

        # Declaration order = the official state-dict order (seeded randomisation relies on it).
        self.iou_token = nn.Embedding(1, dim)
        self.mask_tokens = nn.Embedding(self.num_mask_tokens, dim)
        self.obj_score_token = nn.Embedding(1, dim)

        # 64^2 -> 256^2 in two transposed convs; index 2 and 4 are GELUs (no parameters).
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(dim, dim // 4, kernel_size=2, stride=2),
            LayerNorm2d(dim // 4),
            nn.GELU(),
            nn.ConvTranspose2d(dim // 4, dim // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.conv_s0 = nn.Conv2d(dim, dim // 8, kernel_size=1)
        self.conv_s1 = nn.Conv2d(dim, dim // 4, kernel_size=1)

        self.output_hypernetworks_mlps = nn.ModuleList(MLP(dim, dim, dim // 8, 3) for _ in range(self.num_mask_tokens))
        self.iou_prediction_head = MLP(
            dim, iou_head_hidden_dim, self.num_mask_tokens, iou_head_depth, sigmoid_output=True
        )
        self.pred_obj_score_head = MLP(dim, dim, 1, 3)

    def project_high_res(self, feat0: torch.Tensor, feat1: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Neck levels 0/1 (B, 256, 256, 256), (B, 256, 128, 128) -> (B, 32, 256, 256), (B, 64, 128, 128).

        Done once per image at encode time, not per prompt.
        """
        return self.conv_s0(feat0), self.conv_s1(feat1)

    def forward(
        self,
        image_embed: torch.Tensor,
        image_pe: torch.Tensor,
        sparse: torch.Tensor,
        dense: torch.Tensor,
        high_res_0: torch.Tensor,
        high_res_1: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decode all four masks for N prompts.

        image_embed (B, 256, 64, 64) with B = 1 (shared by all prompts, broadcast) or B = N;
        image_pe (1, 256, 64, 64); sparse (N, T, 256); dense (N, 256, 64, 64);
        high_res_0 (B, 32, 256, 256); high_res_1 (B, 64, 128, 128).
        Returns masks (N, 4, 256, 256) logits, iou (N, 4), mask tokens (N, 4, 256),
        object score logits (N, 1).
        """
        _check_batches(image_embed, sparse, high_res_0, high_res_1)
        n = sparse.shape[0]
        fixed = torch.cat((self.obj_score_token.weight, self.iou_token.weight, self.mask_tokens.weight), dim=0)
        tokens = torch.cat((fixed.unsqueeze(0).expand(n, -1, -1), sparse), dim=1)

        src = image_embed + dense  # broadcasts B=1 over the N prompts
        hs, src = self.transformer(src, image_pe, tokens)
        object_token = hs[:, 0]
        iou_token = hs[:, 1]
        mask_tokens = hs[:, 2 : 2 + self.num_mask_tokens]

        upscaled = self._upscale(src, dense.shape[-2:], high_res_0, high_res_1)
        hyper = torch.stack(
            [mlp(mask_tokens[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )  # (N, 4, 32)
        masks = (hyper @ upscaled.flatten(2)).unflatten(-1, upscaled.shape[-2:])
        iou = self.iou_prediction_head(iou_token)
        object_score_logits = self.pred_obj_score_head(object_token)
        return masks, iou, mask_tokens, object_score_logits

    def _upscale(
        self, src: torch.Tensor, hw: torch.Size, high_res_0: torch.Tensor, high_res_1: torch.Tensor
    ) -> torch.Tensor:
        """Image tokens (N, HW, C) -> (N, C/8, 4H, 4W), adding the projected high-res features."""
        deconv1, norm1, act1, deconv2, act2 = self.output_upscaling
        if is_tracing():
            return act2(deconv2(self._upscale_first_traced(src, hw, high_res_1)) + high_res_0)
        x = src.transpose(1, 2).unflatten(-1, hw)
        x = act1(norm1(deconv1(x) + high_res_1))
        return act2(deconv2(x) + high_res_0)

    def _upscale_first_traced(self, src: torch.Tensor, hw: torch.Size, high_res_1: torch.Tensor) -> torch.Tensor:
        """First upscaling stage for exported graphs, on the channels-last tokens: (N, HW, C) -> (N, C/4, 2H, 2W).

        A stride-2, 2x2 transposed conv maps each input pixel to its own 2x2 output block, so it is
        one Gemm (C -> 2*2*C/4) on the tokens, whose rows then interleave into the 2H x 2W grid
        with a transpose of whole C/4-channel vectors. The LayerNorm then runs on channels-last
        without the NCHW round trip. In ONNX Runtime (2 threads) this replaces the token Transpose,
        ConvTranspose (5 ms, its output scatter included) and one NCHW permute of the eager form.
        """
        deconv1, norm1, act1 = self.output_upscaling[:3]
        n, (h, w), c1 = src.shape[0], hw, deconv1.out_channels
        weight = deconv1.weight.permute(0, 2, 3, 1).flatten(1)  # (C, (dy, dx, C/4))
        y = src @ weight + deconv1.bias.repeat(4)  # (N, HW, 4*C/4), columns (dy, dx, c)
        y = y.reshape(n, h, w, 2, 2, c1).transpose(2, 3).reshape(n, 2 * h, 2 * w, c1)
        y = y + high_res_1.permute(0, 2, 3, 1)
        y = act1(F.layer_norm(y, (c1,), norm1.weight, norm1.bias, norm1.eps))
        return y.permute(0, 3, 1, 2)


def _check_batches(image_embed: torch.Tensor, sparse: torch.Tensor, *high_res: torch.Tensor) -> None:
    """Image-side batch must be 1 or N (skipped while tracing/exporting: shapes are symbolic there)."""
    if is_tracing():
        return
    n = sparse.shape[0]
    for name, t in (("image_embed", image_embed), ("high_res_0", high_res[0]), ("high_res_1", high_res[1])):
        if t.shape[0] not in (1, n):
            raise InputError(f"{name} batch must be 1 or N={n} (the prompt batch), got {t.shape[0]}")


def stability_scores(mask_logits: torch.Tensor, delta: float = 0.05) -> torch.Tensor:
    """(..., H, W) logits -> (...): area(logits > delta) / area(logits > -delta), 1 where both are empty."""
    flat = mask_logits.flatten(-2)
    inner = (flat > delta).sum(-1).to(torch.float32)
    outer = (flat > -delta).sum(-1).to(torch.float32)
    return torch.where(outer > 0, inner / outer, 1.0)  # scalar: no batch-shaped constant when traced


def select_masks(
    masks: torch.Tensor,
    iou: torch.Tensor,
    tokens: torch.Tensor,
    multimask: bool,
    dynamic_stability: bool = True,
    delta: float = 0.05,
    thresh: float = 0.98,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pick the decoder outputs the official SAM2 mask decoder returns.

    masks (N, 4, H, W), iou (N, 4), tokens (N, 4, C) from :meth:`MaskDecoder.forward`.
    - multimask: masks/iou/tokens 1..3 -> (N, 3, H, W), (N, 3), (N, 3, C).
    - single mask: token 0 -> (N, 1, H, W), (N, 1), (N, 1, C). With ``dynamic_stability``, a
      prompt whose token-0 mask has stability < ``thresh`` takes instead the mask and IoU of
      the best of tokens 1..3 by predicted IoU (first on ties). The returned token stays token 0
      in every single-mask case, fallback or not, as in the official decoder
      (``use_multimask_token_for_obj_ptr`` only swaps tokens for multimask output).
    """
    if multimask:
        return masks[:, 1:], iou[:, 1:], tokens[:, 1:]
    single_mask, single_iou, single_token = masks[:, :1], iou[:, :1], tokens[:, :1]
    if not dynamic_stability:
        return single_mask, single_iou, single_token

    multi_iou = iou[:, 1:]
    best = multi_iou.argmax(dim=-1, keepdim=True)  # (N, 1)
    best_iou = multi_iou.gather(1, best)
    height, width = masks.shape[-2:]
    best_mask = masks[:, 1:].gather(1, best[:, :, None, None].expand(-1, 1, height, width))
    stable = stability_scores(single_mask, delta) >= thresh  # (N, 1)
    mask_out = torch.where(stable[:, :, None, None], single_mask, best_mask)
    iou_out = torch.where(stable, single_iou, best_iou)
    return mask_out, iou_out, single_token
