"""EdgeTAM parity with the official code (PyPI edgetam-dimos, in its own venv), fp32.

Same random checkpoint on both sides (every tensor randomised; BatchNorm statistics calibrated).
Targets: image encoder features and the memory path (memory encoder + spatial perceiver +
memory attention) within 1e-4 max abs; image predictor masks IoU >= 0.999.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.edgetam.cases import ATTENTION_CASES, PATH_FROM_POINTS, PATH_TPOS_ROWS
from tests.edgetam.oracle import requires_edgetam_oracle

torch = pytest.importorskip("torch")
pytestmark = [requires_edgetam_oracle, pytest.mark.oracle]

TOL = 1e-4


def _max_abs(a, b) -> float:
    a = a.detach().numpy() if hasattr(a, "detach") else np.asarray(a)
    return float(np.abs(a.astype(np.float64) - np.asarray(b, np.float64)).max())


def _wrapper(model, name: str):
    from sam2edge.model.wrappers import build_wrapper

    return build_wrapper(name, model)


def _mask_for_memory(cfg, high_res_masks, binarize: bool):
    """The official _encode_new_memory's mask input: [N,1,1024,1024] logits -> sigmoid (or > 0) x20 - 10."""
    m = (high_res_masks > 0).to(high_res_masks.dtype) if binarize else torch.sigmoid(high_res_masks)
    return m * cfg.sigmoid_scale_for_mem_enc + cfg.sigmoid_bias_for_mem_enc


def test_image_encoder(edgetam_model, edgetam_cases, official):
    x = torch.from_numpy(edgetam_cases.inputs("encode")["image"])
    with torch.no_grad():
        trunk = edgetam_model.image_encoder.trunk(x)
        feats = edgetam_model.encode_image(x)._asdict()
    worst = {f"trunk_{i}": _max_abs(t, official[f"encode/trunk_{i}"]) for i, t in enumerate(trunk)}
    worst |= {k: _max_abs(v, official[f"encode/{k}"]) for k, v in feats.items()}
    scale = max(float(np.abs(official[f"encode/{k}"]).max()) for k in feats)
    print(f"[edgetam image encoder] max|diff| {worst} (largest |value| {scale:.1f})")
    assert max(worst.values()) <= TOL, worst


def test_memory_encoder_and_perceiver(edgetam_model, edgetam_cases, official):
    """Each object alone (the official perceiver only takes batch 1, facebookresearch/EdgeTAM#15), and
    ours batched over both objects in one call of the memory-encoder artifact's computation."""
    wrapper = _wrapper(edgetam_model, "memory_encoder")
    ids = ("mem_soft", "mem_points")
    x = [edgetam_cases.inputs(i) for i in ids]
    with torch.no_grad():
        raw = [edgetam_model.memory_encoder(torch.from_numpy(c["vision_features"]),
                                            _mask_for_memory(edgetam_model.cfg, torch.from_numpy(c["high_res_masks"]), b))[0]
               for c, b in zip(x, (False, True))]
        batched = wrapper(torch.from_numpy(x[0]["vision_features"]),  # one frame's features, two objects' masks
                          torch.from_numpy(np.concatenate([x[0]["high_res_masks"], x[1]["high_res_masks"]])),
                          torch.tensor([0.0, 1.0]), torch.from_numpy(np.concatenate([c["object_score_logits"] for c in x])))
        second = wrapper(torch.from_numpy(x[1]["vision_features"]), torch.from_numpy(x[1]["high_res_masks"]),
                         torch.tensor([1.0]), torch.from_numpy(x[1]["object_score_logits"]))
    latent_pos = edgetam_model.spatial_perceiver.latent_pos[0]
    worst = {
        "memory encoder (sigmoid)": _max_abs(raw[0], official["mem_soft/maskmem_raw"]),
        "memory encoder (binarised)": _max_abs(raw[1], official["mem_points/maskmem_raw"]),
        "latents (sigmoid, batched)": _max_abs(batched[:1], official["mem_soft/maskmem_features"]),
        "latents (binarised)": _max_abs(second, official["mem_points/maskmem_features"]),
        "latent positions": max(_max_abs(latent_pos, official[f"{i}/maskmem_pos"][0]) for i in ids),
    }
    print(f"[edgetam memory encoder + perceiver] max|diff| {worst}")
    assert batched.shape == (2, 512, 64)
    assert max(worst.values()) <= TOL, worst


@pytest.mark.parametrize("frames,ptr_tokens", ATTENTION_CASES)
def test_memory_attention(edgetam_model, edgetam_cases, official, frames, ptr_tokens):
    """Our memory-attention artifact computation (positions from its constants) vs the official layer stack
    (positions from the official modules), 64x64 current frame."""
    c = edgetam_cases.inputs(f"attn_F{frames}_K{ptr_tokens}")
    curr = torch.from_numpy(c["curr"])[:, 0].T.reshape(1, 256, 64, 64)
    memory = torch.from_numpy(c["memory"])[:, 0]
    latents = memory[: frames * 512].reshape(1, frames, 512, 64)
    ptrs = memory[frames * 512:].reshape(1, ptr_tokens // 4, 256)
    with torch.no_grad():
        out = _wrapper(edgetam_model, "memory_attention")(
            curr, latents, torch.from_numpy(c["tpos_rows"]).int(), ptrs, torch.zeros(ptr_tokens // 4))
    ref = official[f"attn_F{frames}_K{ptr_tokens}/out"][:, 0].T.reshape(1, 256, 64, 64)
    d = _max_abs(out, ref)
    print(f"[edgetam memory attention] F={frames} K={ptr_tokens}: max|diff| {d:.2e}")
    assert d <= TOL


def test_memory_path(edgetam_model, edgetam_cases, official):
    """Memory frames encoded and compressed, then memory attention on a new frame: end to end."""
    c = edgetam_cases.inputs("path")
    enc, att = _wrapper(edgetam_model, "memory_encoder"), _wrapper(edgetam_model, "memory_attention")
    with torch.no_grad():
        latents = torch.cat([
            enc(torch.from_numpy(c["memory_vision_features"][i:i + 1]), torch.from_numpy(c["memory_masks"][i:i + 1]),
                torch.tensor([float(p)]), torch.from_numpy(c["memory_scores"][i:i + 1]))
            for i, p in enumerate(PATH_FROM_POINTS)
        ])  # [F,512,64]
        out = att(torch.from_numpy(c["curr"]), latents.unsqueeze(0), torch.tensor(PATH_TPOS_ROWS, dtype=torch.int32),
                  torch.from_numpy(c["obj_ptrs"]).unsqueeze(0), torch.zeros(len(c["obj_ptrs"])))
    d_lat = _max_abs(latents, official["path/latents"][:, 0].reshape(latents.shape))
    d_out = _max_abs(out, official["path/out"])
    print(f"[edgetam memory path] latents max|diff| {d_lat:.2e}, conditioned features max|diff| {d_out:.2e}")
    assert d_lat <= TOL and d_out <= TOL


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def test_image_predictor(edgetam_checkpoint, edgetam_cases, official):
    """Our image API (PyTorch backend, exact preprocessing) vs the official SAM2ImagePredictor on EdgeTAM."""
    from sam2edge import AutoModel
    from tests.edgetam.cases import PREDICT_IMAGE
    from tests.oracle import test_images

    ours = AutoModel.from_pretrained(str(edgetam_checkpoint), preprocessing="exact")
    image = test_images()[PREDICT_IMAGE]
    embedding = ours.embed_images(image, input_color_format="rgb")[0]
    worst_iou, worst_scores, worst_logits = 1.0, 0.0, 0.0
    for i, case in enumerate(edgetam_cases.predict):
        r = ours.segment_images(
            embeddings=embedding, point_coordinates=case.get("point_coords"), point_labels=case.get("point_labels"),
            boxes=case.get("box"), mask_input=case.get("mask_input"), multi_mask_output=case["multimask"],
        )[0]
        masks = official[f"predict/c{i}/masks"].reshape(r.masks.shape)
        ious = [_iou(a, b) for a, b in zip(r.masks.reshape(-1, *r.masks.shape[-2:]), masks.reshape(-1, *masks.shape[-2:]))]
        worst_iou = min(worst_iou, *ious)
        worst_scores = max(worst_scores, _max_abs(r.scores, official[f"predict/c{i}/scores"].reshape(r.scores.shape)))
        worst_logits = max(worst_logits, _max_abs(r.logits, official[f"predict/c{i}/logits"].reshape(r.logits.shape)))
    print(f"[edgetam image predictor] {len(edgetam_cases.predict)} prompt cases: worst mask IoU {worst_iou:.6f}, "
          f"scores max|diff| {worst_scores:.2e}, low-res logits max|diff| {worst_logits:.2e}")
    assert worst_iou >= 0.999
    assert worst_scores <= TOL and worst_logits <= 1e-3
