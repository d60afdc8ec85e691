"""The artifact wrappers compute what the official SAM2Base computes around its networks.

The memory-path I/O is our design (memory frames + temporal indices, pointers + normalised
offsets, in-graph gating and no-object embedding), so each wrapper is checked against the
official composition it replaces: ``_prepare_memory_conditioned_features``,
``_encode_new_memory`` and ``_forward_sam_heads``. Every weight is randomised.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.oracle import max_abs, official_model, requires_oracle

torch = pytest.importorskip("torch")

from sam2edge.model import build_model  # noqa: E402
from sam2edge.model.wrappers import build_wrapper  # noqa: E402

pytestmark = [requires_oracle, pytest.mark.oracle]
TOL = 1e-4
B = 2


def _pair(name: str, edit=None):
    off = official_model(name)
    state = {k: v.clone() for k, v in off.state_dict().items()}
    if edit is not None:
        edit(state)
        off = official_model.__wrapped__(name)  # a private copy we may modify
        off.load_state_dict(state)
    ours = build_model(name)
    ours.load_state_dict(state, strict=True)
    return off, ours.eval()


def _seq_first(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(2).permute(2, 0, 1)  # [B,C,H,W] -> [HW,B,C]


@pytest.mark.parametrize("name", ["sam2.1_hiera_tiny", "sam2_hiera_tiny"])
def test_memory_attention_matches_official_memory_conditioning(name):
    """frame 3 of 10: cond frame 0 + non-cond frames 1, 2 in memory; pointers of frames 0, 2, 1."""
    off, ours = _pair(name)
    g = torch.Generator().manual_seed(1)
    vis = torch.randn(1, 256, 64, 64, generator=g)
    pos = off.image_encoder.neck.position_encoding(vis).to(vis.dtype)
    mem_pos = off.memory_encoder.position_encoding(torch.zeros(B, 64, 64, 64)).to(vis.dtype)
    frames = {t: {"maskmem_features": torch.randn(B, 64, 64, 64, generator=g), "maskmem_pos_enc": [mem_pos],
                  "obj_ptr": torch.randn(B, 256, generator=g)} for t in (0, 1, 2)}
    output_dict = {"cond_frame_outputs": {0: frames[0]}, "non_cond_frame_outputs": {1: frames[1], 2: frames[2]}}
    with torch.no_grad():
        ref = off._prepare_memory_conditioned_features(
            frame_idx=3, is_init_cond_frame=False, current_vision_feats=[_seq_first(vis.expand(B, -1, -1, -1))],
            current_vision_pos_embeds=[_seq_first(pos.expand(B, -1, -1, -1))], feat_sizes=[(64, 64)],
            output_dict=output_dict, num_frames=10,
        )
        got = build_wrapper("memory_attention", ours)(
            vis,
            torch.stack([frames[t]["maskmem_features"] for t in (0, 1, 2)], dim=1),
            torch.tensor([6, 1, 0], dtype=torch.int32),  # cond frame; 2 back; 1 back
            torch.stack([frames[t]["obj_ptr"] for t in (0, 2, 1)], dim=1),
            torch.from_numpy(np.array([3, 1, 2], np.float32) / np.float32(9)),  # (3 - t) / (min(10, 16) - 1)
        )
    diff = max_abs(ref, got)
    print(f"{name} memory_attention wrapper vs official conditioning: max abs {diff:.2e}")
    assert got.shape == (B, 256, 64, 64)
    assert diff <= TOL


def _blobs(g: torch.Generator, n: int, side: int, level: float) -> torch.Tensor:
    coarse = torch.where(torch.randn(n, 1, 16, 16, generator=g) > 0, level, -level)
    return coarse.repeat_interleave(side // 16, 2).repeat_interleave(side // 16, 3)


@pytest.mark.parametrize("binarize", [False, True])
def test_memory_encoder_matches_official_encode_new_memory(binarize):
    name = "sam2.1_hiera_tiny"
    off, ours = _pair(name)
    g = torch.Generator().manual_seed(2)
    vis = torch.randn(1, 256, 64, 64, generator=g)
    low = _blobs(g, B, 256, 5.0) + (0 if binarize else torch.randn(B, 1, 256, 256, generator=g))
    score = torch.tensor([[2.0], [-1.0]])  # second object absent: no_obj_embed_spatial is added
    low = torch.where(score[:, :, None, None] > 0, low, torch.full_like(low, -1024.0))  # host gating
    high = torch.nn.functional.interpolate(low, size=(1024, 1024), mode="bilinear", align_corners=False)
    off.binarize_mask_from_pts_for_mem_enc = binarize
    try:
        with torch.no_grad():
            ref, _ = off._encode_new_memory([_seq_first(vis.expand(B, -1, -1, -1))], [(64, 64)], high, score, binarize)
    finally:
        off.binarize_mask_from_pts_for_mem_enc = False
    with torch.no_grad():
        got = build_wrapper("memory_encoder", ours)(vis, low, torch.full((B,), float(binarize)), score)
    diff = max_abs(ref, got)
    print(f"memory_encoder wrapper (binarize={binarize}) vs official _encode_new_memory: max abs {diff:.2e}")
    assert diff <= TOL


def test_memory_encoder_mask_input_frame_at_1024():
    """A mask-input frame: the 1024x1024 mask*20-10 goes in as it is (no resampling)."""
    off, ours = _pair("sam2.1_hiera_tiny")
    g = torch.Generator().manual_seed(3)
    vis = torch.randn(1, 256, 64, 64, generator=g)
    high = _blobs(g, 1, 1024, 10.0)
    score = torch.tensor([[10.0]])
    with torch.no_grad():
        ref, _ = off._encode_new_memory([_seq_first(vis)], [(64, 64)], high, score, False)
        got = build_wrapper("memory_encoder", ours)(vis, high, torch.zeros(1), score)
    diff = max_abs(ref, got)
    print(f"memory_encoder wrapper, 1024 mask input: max abs {diff:.2e}")
    assert diff <= TOL


def _push_scores_negative(state: dict) -> None:
    key = sorted(k for k in state if k.startswith("sam_mask_decoder.pred_obj_score_head") and k.endswith("bias"))[-1]
    state[key] = state[key] - 100.0


@pytest.mark.parametrize("absent", [False, True])
def test_decoder_obj_ptr_matches_official_sam_heads(absent):
    off, ours = _pair("sam2.1_hiera_tiny", _push_scores_negative if absent else None)
    g = torch.Generator().manual_seed(4)
    embed = torch.randn(1, 256, 64, 64, generator=g)
    hr0, hr1 = torch.randn(1, 32, 256, 256, generator=g), torch.randn(1, 64, 128, 128, generator=g)
    coords = torch.rand(1, 2, 2, generator=g) * 1024
    labels = torch.tensor([[1, 0]], dtype=torch.int32)
    with torch.no_grad():
        _, _, ious, _, _, ref_ptr, ref_score = off._forward_sam_heads(
            embed, {"point_coords": coords, "point_labels": labels}, None, [hr0, hr1], multimask_output=True
        )
        masks, iou, score, _, ptr = build_wrapper("prompt_decoder", ours)(
            embed, hr0, hr1, coords, labels, torch.zeros(1, 1, 256, 256), torch.zeros(1)
        )
    best = int(iou[0, 1:].argmax()) + 1
    d_ptr, d_iou = max_abs(ref_ptr[0], ptr[0, best]), max_abs(ious[0], iou[0, 1:])
    print(f"decoder obj_ptr (absent={absent}, score {float(score):.1f}): ptr {d_ptr:.2e}, iou {d_iou:.2e}")
    assert (float(score) <= 0) == absent and max_abs(ref_score, score) <= 1e-3
    assert d_ptr <= TOL and d_iou <= TOL
    if absent:
        assert max_abs(ptr[0, best], ours.no_obj_ptr[0].detach()) == 0.0


def test_decoder_takes_one_embedding_per_prompt_like_the_official_object_batch():
    """Video: every tracked object has its own memory-conditioned embedding. The official runs its heads
    on a batch of objects; our prompt_decoder takes all of them in one call (image_embed [N,...], one row
    per prompt), with the frame's high-res features shared (batch 1)."""
    off, ours = _pair("sam2.1_hiera_tiny")
    g = torch.Generator().manual_seed(5)
    n = 3
    embed = torch.randn(n, 256, 64, 64, generator=g)
    hr0, hr1 = torch.randn(1, 32, 256, 256, generator=g), torch.randn(1, 64, 128, 128, generator=g)
    coords = torch.rand(n, 2, 2, generator=g) * 1024
    labels = torch.tensor([[1, 0], [1, 1], [2, 3]], dtype=torch.int32)
    wrapper = build_wrapper("prompt_decoder", ours)
    with torch.no_grad():
        ref = off._forward_sam_heads(
            embed, {"point_coords": coords, "point_labels": labels}, None,
            [hr0.expand(n, -1, -1, -1), hr1.expand(n, -1, -1, -1)], multimask_output=True,
        )
        masks, iou, score, _, ptr = wrapper(embed, hr0, hr1, coords, labels, torch.zeros(n, 1, 256, 256), torch.zeros(n))
        one_by_one = [wrapper(embed[i:i + 1], hr0, hr1, coords[i:i + 1], labels[i:i + 1], torch.zeros(1, 1, 256, 256),
                              torch.zeros(1)) for i in range(n)]
    ref_multi, ref_iou, ref_ptr, ref_score = ref[0], ref[2], ref[5], ref[6]
    best = iou[:, 1:].argmax(-1) + 1
    rows = torch.arange(n)
    gated = torch.where(score[:, :, None, None] > 0, masks[:, 1:], -1024.0)  # the official gates absent objects
    diffs = {"masks": max_abs(ref_multi, gated), "iou": max_abs(ref_iou, iou[:, 1:]),
             "obj_ptr": max_abs(ref_ptr, ptr[rows, best]), "score": max_abs(ref_score, score)}
    print("decoder, 3 objects in one call vs official object batch:", {k: f"{v:.2e}" for k, v in diffs.items()})
    assert diffs["masks"] <= 1e-3 and max(diffs["iou"], diffs["obj_ptr"]) <= TOL and diffs["score"] <= 1e-3
    for i, single in enumerate(one_by_one):  # batching does not mix objects
        assert max_abs(single[0][0], masks[i]) <= 1e-4 and max_abs(single[4][0], ptr[i]) <= TOL
