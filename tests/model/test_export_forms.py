"""Export-only forms of our modules compute what the eager forms compute.

Several modules take a different, ONNX Runtime-friendlier form while they are being traced
(``is_tracing()``): Hiera attention with the softmax scale folded into the query weights and
no SDPA, the neck laterals composed with conv_s0 / conv_s1, a channels-last first upscaling
stage in the mask decoder, and LayerNorm2d in either channels-last or explicit NCHW form by
width. Export verification compares the ONNX files with eager PyTorch; these tests pin each
form on its own, in eager PyTorch, with every parameter random (biases included), by
switching the forms on through the modules' ``is_tracing`` hooks.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from sam2edge.config import get_config  # noqa: E402
from sam2edge.model import build_model, common, hiera, image_encoder, mask_decoder, sam2  # noqa: E402
from sam2edge.model.testing import randomize_parameters  # noqa: E402

_TRACED_MODULES = (common, hiera, image_encoder, mask_decoder, sam2)


@pytest.fixture()
def traced_forms(monkeypatch: pytest.MonkeyPatch):
    """A switch that makes every module take its export form (while the fixture is in effect)."""

    def switch(on: bool) -> None:
        for mod in _TRACED_MODULES:
            if hasattr(mod, "is_tracing"):
                monkeypatch.setattr(mod, "is_tracing", (lambda: True) if on else (lambda: False))

    return switch


@pytest.fixture(scope="module")
def tiny():
    model = randomize_parameters(build_model(get_config("sam2.1_hiera_tiny")), seed=11).eval()
    dec = model.sam_mask_decoder
    for name, bias in (("conv_s0", dec.conv_s0.bias), ("upscaling.0", dec.output_upscaling[0].bias),
                       ("neck lateral 0", model.image_encoder.neck.lateral(0).bias)):
        assert float(bias.detach().abs().max()) > 0.01, f"{name} bias must be random, not zero"
    return model


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def test_encoder_export_form_matches_eager(tiny, traced_forms) -> None:
    image = torch.randn(1, 3, 1024, 1024, generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():
        traced_forms(False)
        ref = tiny.encode_image(image)
        traced_forms(True)
        got = tiny.encode_image(image)
    for name in ref._fields:
        r, g = getattr(ref, name), getattr(got, name)
        assert g.shape == r.shape, name
        # Reassociation only (scale into weights, composed 1x1 convs): float32 rounding, ~1e-6.
        assert _rel(g, r) < 2e-5, (name, _rel(g, r))
    # The composed convs must really be used: different weights there would change the output.
    assert tiny.image_encoder.neck.bare_levels()[:2] == (0, 1)


def test_neck_skip_only_bare_levels(tiny) -> None:
    neck = tiny.image_encoder.neck
    xs = [torch.zeros(1, c, 4, 4) for c in reversed(neck.backbone_channel_list)]
    with pytest.raises(ValueError, match="bare levels"):
        neck(xs, skip=(2,))  # level 2 takes a top-down sum: it cannot be skipped


@pytest.mark.parametrize(("n", "b_image"), [(1, 1), (3, 1), (2, 2)])
def test_first_upscaling_stage_export_form(tiny, n: int, b_image: int) -> None:
    dec = tiny.sam_mask_decoder
    gen = torch.Generator().manual_seed(n + 10 * b_image)
    src = torch.randn(n, 64 * 64, 256, generator=gen) * 3
    hr1 = torch.randn(b_image, 64, 128, 128, generator=gen)
    deconv1, norm1, act1 = dec.output_upscaling[:3]
    with torch.inference_mode():
        ref = act1(norm1(deconv1(src.transpose(1, 2).unflatten(-1, (64, 64))) + hr1))
        got = dec._upscale_first_traced(src, torch.Size((64, 64)), hr1)
    assert got.shape == ref.shape == (n, 64, 128, 128)
    assert _rel(got, ref) < 1e-5, _rel(got, ref)


@pytest.mark.parametrize("channels", [4, 16, 64])
def test_layernorm2d_export_forms(channels: int, traced_forms) -> None:
    ln = randomize_parameters(common.LayerNorm2d(channels), seed=channels)
    x = torch.randn(2, channels, 8, 8, generator=torch.Generator().manual_seed(channels)) * 5 + 1
    with torch.inference_mode():
        traced_forms(False)
        ref = ln(x)
        traced_forms(True)
        got = ln(x)
    assert (channels <= common.EXPLICIT_LN2D_MAX_CHANNELS) == bool(torch.equal(got, ref))
    assert _rel(got, ref) < 1e-5
