"""EdgeTAM without the oracle: registry, checkpoint detection, re-parameterisation, batching, specs."""

from __future__ import annotations

import copy
import sys

import numpy as np
import pytest

from sam2edge.config import get_config, variant_names
from sam2edge.errors import CheckpointError

torch = pytest.importorskip("torch")


def test_registry():
    cfg = get_config("EdgeTAM")
    assert cfg.name == "edgetam" and cfg.family == "edgetam" and get_config("configs/edgetam.yaml") is cfg
    assert variant_names("edgetam") == ["edgetam"] and "edgetam" not in variant_names("sam2")
    assert variant_names() == variant_names("sam2") + ["edgetam"]
    assert cfg.backbone_channel_list == (384, 192, 96, 48)  # the official neck's channel list
    assert cfg.memory_tokens_per_frame == 512 and get_config("sam2.1_hiera_tiny").memory_tokens_per_frame == 4096
    with pytest.raises(ValueError, match="family"):
        variant_names("hiera")


def test_checkpoint_detection(edgetam_checkpoint, edgetam_model):
    from sam2edge.model import checkpoint

    state, cfg = checkpoint.load_checkpoint(edgetam_checkpoint)
    assert cfg.name == "edgetam" and len(state) == 982
    assert "image_encoder.trunk.body.stages_2.blocks.13.channel_mixer.conv2.bn.running_var" in state
    assert "timm" not in sys.modules  # our trunk: neither timm nor torchvision at run time
    broken = {k: v for k, v in state.items() if k != "spatial_perceiver.layers.1.self_ff.3.weight"}
    with pytest.raises(CheckpointError) as info:
        checkpoint.detect_variant(broken)
    msg = str(info.value)
    assert "EdgeTAM" in msg and "Closest is edgetam" in msg and "self_ff.3.weight" in msg, msg


def test_random_checkpoint_has_trained_scale(edgetam_model):
    """Calibrated BatchNorm statistics keep activations O(1)-O(100) through the 20 residual blocks
    (random statistics reach 1e5, see sam2edge.model.testing)."""
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        levels = edgetam_model.image_encoder.trunk(x)
    peaks = [float(t.abs().max()) for t in levels]
    print(f"[edgetam] trunk level peaks on noise: {[round(p, 1) for p in peaks]}")
    assert all(np.isfinite(peaks)) and max(peaks) < 1e3 and min(float(t.std()) for t in levels) > 0.1


def test_reparameterize_keeps_the_function(edgetam_model):
    from sam2edge.model.repvit import ConvNorm, RepVggDw

    before = dict(edgetam_model.state_dict())
    fused = edgetam_model.export_form()
    assert edgetam_model.state_dict().keys() == before.keys()  # the loaded model is untouched
    trunk = fused.image_encoder.trunk
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, ConvNorm, RepVggDw)) for m in trunk.modules())
    convs = [m for m in trunk.modules() if isinstance(m, torch.nn.Conv2d)]
    assert all(c.bias is not None for c in convs)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = edgetam_model.image_encoder.trunk(x)
        got = trunk(x)
        ref64 = copy.deepcopy(edgetam_model.image_encoder.trunk).double()(x.double())
    for level, (a, b, c) in enumerate(zip(ref, got, ref64)):
        scale = float(c.abs().max())
        d, e32 = float((a - b).abs().max()), float((a.double() - c).abs().max())
        e_fused = float((b.double() - c).abs().max())
        print(f"[edgetam reparameterize] level {level}: max|fused - original| {d:.2e} ({d / scale:.1e} of max {scale:.1f}); "
              f"vs float64: original {e32:.2e}, fused {e_fused:.2e}")
        assert d <= 1e-5 * scale  # float rounding only
        assert e_fused <= 2 * e32 + 1e-6  # and as close to the exact function as the original


def test_perceiver_batches_objects_independently(edgetam_model):
    """Objects are compressed independently (the official perceiver cannot batch them: EdgeTAM#15)."""
    perceiver = edgetam_model.spatial_perceiver
    x = torch.randn(3, 64, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        batched = perceiver(x)
        alone = torch.cat([perceiver(x[i:i + 1]) for i in range(3)])
    assert batched.shape == (3, 512, 64)
    assert float((batched - alone).abs().max()) <= 1e-5


def test_specs_for():
    from sam2edge.contract.artifacts import ARTIFACTS
    from sam2edge.contract.edgetam_artifacts import EDGETAM_ARTIFACTS, specs_for

    edgetam = specs_for(get_config("edgetam"))
    assert specs_for(get_config("sam2_hiera_large")) is ARTIFACTS and edgetam is EDGETAM_ARTIFACTS
    assert list(edgetam) == list(ARTIFACTS)
    assert edgetam["memory_encoder"].outputs[0].shape_at("opt")[1:] == (512, 64)
    assert edgetam["memory_attention"].inputs[1].shape_at("max", {"num_objects": 2, "num_memory_frames": 7}) == (2, 7, 512, 64)
    for name in ("image_encoder", "prompt_decoder"):  # the image path's interface is SAM2's
        assert edgetam[name].inputs == ARTIFACTS[name].inputs and edgetam[name].outputs == ARTIFACTS[name].outputs


def test_download_needs_a_hash(tmp_path):
    from sam2edge.download import download_checkpoint
    from sam2edge.errors import DownloadError

    with pytest.raises(DownloadError, match="no sha256 is published for edgetam"):
        download_checkpoint("edgetam", cache_dir=tmp_path)


def test_specs_follow_the_export_variant_and_estimate_counts_latents():
    """Whatever picks specs from a manifest's variant (ONNX Runtime / TensorRT runners, engine build) gets
    EdgeTAM's; the memory estimate counts 512 keys per memory frame instead of 4096."""
    from sam2edge.backends.registry import RunnerSources
    from sam2edge.contract.artifacts import ARTIFACTS
    from sam2edge.contract.edgetam_artifacts import EDGETAM_ARTIFACTS, specs_for_variant
    from sam2edge.runtime import estimate

    assert specs_for_variant("edgetam") is EDGETAM_ARTIFACTS and specs_for_variant("edge-tam") is EDGETAM_ARTIFACTS
    assert specs_for_variant(None) is ARTIFACTS and specs_for_variant("sam2.1_hiera_tiny") is ARTIFACTS
    assert RunnerSources(variant="edgetam").variant == "edgetam"
    sam2 = estimate.video_activation_bytes(tokens_per_frame=4096)
    assert estimate.video_activation_bytes(tokens_per_frame=512) < sam2 / 7
    assert estimate.activation_bytes("edgetam", 2, video=True) < estimate.activation_bytes("sam2.1_hiera_tiny", 2, video=True) / 5
    assert estimate.torch_weights_bytes("edgetam") < estimate.torch_weights_bytes("sam2.1_hiera_tiny")


def test_memory_attention_key_table_forms_agree():
    """EdgeTAM's key RoPE table (unrotated prefix rows cos=1/sin=0, then a grid) in the interleaved layout:
    the narrow (export) and fused (eager) forms agree, and the prefix keys really are left unrotated."""
    from sam2edge.model import memory_attention as ma
    from sam2edge.model.rope import interleaved_rope_tables
    from sam2edge.model.testing import randomize_parameters

    net = randomize_parameters(ma.MemoryAttention(num_layers=2, feat_size=(16, 16), memory_grid=(4, 4),
                                                  memory_prefix_tokens=16), seed=3).eval()
    table = net.key_rope_table
    assert table.shape == (2, 32, 256)
    assert torch.equal(table[0, :16], torch.ones(16, 256)) and torch.equal(table[1, :16], torch.zeros(16, 256))
    assert torch.equal(table[:, 16:], interleaved_rope_tables(256, 4, 4))
    gen = torch.Generator().manual_seed(4)
    args = (torch.randn(1, 256, 256, generator=gen), None, torch.randn(2, 3 * 32, 64, generator=gen),
            torch.randn(1, 3 * 32, 64, generator=gen), torch.randn(2, 8, 64, generator=gen), torch.randn(1, 8, 64, generator=gen))
    with torch.inference_mode():
        fused = net(*args)
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(ma, "is_tracing", lambda: True)
            export = net(*args)
    scale = float(fused.abs().max())
    assert export.shape == fused.shape == (2, 256, 256)
    assert not torch.equal(export, fused)  # tracing really switched the form
    assert float((export - fused).abs().max()) < 2e-5 * scale
