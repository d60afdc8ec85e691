"""Random weights under which automatic mask generation yields many distinct masks.

With plain random weights (``sam2edge.model.testing.randomize_parameters``) the decoder's masks
barely depend on the point: the point token is one of eight similar tokens, and the
image-side update it causes is small next to the image content, so every grid point gives
nearly the same mask and NMS leaves one or two. ``localising_weights`` (applied after
randomising) makes each mask a region around its point. Every tensor stays random; some are
scaled, and a few are tied to another random tensor:

* the image-side attention to the tokens (layer 1, image->token) compares positional
  encodings: its key projection is tied to its query projection (x3), the token contents
  entering its keys are scaled down (layer-1 norm3 x0.05, value projection x20 so the values
  are unchanged), and the learned output tokens and the padding embedding are scaled up (x11)
  to compete with the point; each image location then takes the value of "its" token, and
  locations near the point take the point's;
* the tokens keep distinct contents: layer-0 self-attention attends to itself (its key
  projection tied to its query projection, x10) and the token-side residual branches are
  damped (x0.1), so the point's value differs from the others';
* the image side is quieted so the point's region shows: layer-0 norm4 x0.05, the neck
  convolutions x0.2 (embedding levels) and x0.01 (high-resolution levels), which keeps the
  image's influence without letting it dominate;
* masks get sharp edges: the upscaling transposed convolutions use one tap for all four
  positions of their 2x2 kernel (no sub-pixel checkerboard), the hypernetwork outputs are
  scaled x2000 (logits far from 0, so stability scores reach 0.9), the IoU head x3 (predicted
  IoUs spread over about 0.05..0.8) and the prompt encoder's Gaussian matrix x0.5 (broader
  regions).

``iou_bias`` shifts the IoU head's output logits (benchmarks use it so that about as many
masks pass the default ``pred_iou_thresh=0.8`` as with a real checkpoint).
"""

from __future__ import annotations

from typing import Any


def localising_weights(model: Any, iou_bias: float = 0.0) -> Any:
    """Apply the scheme above in place to an official ``SAM2Base`` (or our model: same names); returns it."""
    import torch

    dec, enc = model.sam_mask_decoder, model.image_encoder
    layers = dec.transformer.layers
    with torch.no_grad():
        for i, conv in enumerate(enc.neck.convs):
            _scale(conv.conv, 0.2 if i < 2 else 0.01)
        _scale(layers[0].norm4, 0.05)
        _scale(layers[1].norm3, 0.05)
        _tie(layers[0].self_attn, 10.0)
        _tie(layers[1].cross_attn_image_to_token, 3.0)
        layers[1].cross_attn_image_to_token.v_proj.weight.mul_(20.0)
        for module in (layers[0].cross_attn_token_to_image.out_proj, layers[0].mlp.layers[1], layers[1].self_attn.out_proj,
                       layers[1].cross_attn_token_to_image.out_proj, layers[1].mlp.layers[1]):
            _scale(module, 0.1)
        for emb in (dec.iou_token, dec.mask_tokens, dec.obj_score_token, model.sam_prompt_encoder.not_a_point_embed):
            emb.weight.mul_(11.0)
        for conv in (dec.output_upscaling[0], dec.output_upscaling[3]):
            conv.weight.copy_(conv.weight[:, :, :1, :1].expand_as(conv.weight))
        for mlp in dec.output_hypernetworks_mlps:
            _scale(mlp.layers[-1], 2000.0)
        dec.iou_prediction_head.layers[-1].weight.mul_(3.0)
        dec.iou_prediction_head.layers[-1].bias.add_(iou_bias)
        model.sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix.mul_(0.5)
    return model


def _scale(module: Any, factor: float) -> None:
    module.weight.mul_(factor)
    module.bias.mul_(factor)


def _tie(attention: Any, factor: float) -> None:
    attention.k_proj.weight.copy_(attention.q_proj.weight * factor)
    attention.q_proj.weight.mul_(factor)
