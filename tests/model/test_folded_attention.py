"""The decoder's folded cross-attention (projections moved onto the token side) equals plain attention.

The oracle tests cover it through the whole decoder with up to 3 points (folded path). Here each
form is checked on its own, every parameter random (biases included: the folding drops q.bk and
moves bv/bq/bo, so a zero bias would hide a mistake), for token counts on both sides of the
switch (T < head_dim folds eagerly, T >= head_dim runs the plain form), with the image side
shared (batch 1) or per prompt, and under tracing, where the folded form is always taken.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from sam2edge.model.testing import randomize_parameters  # noqa: E402
from sam2edge.model.transformer import Attention  # noqa: E402


def _attention() -> Attention:
    attn = randomize_parameters(Attention(256, 8, downsample_rate=2), seed=4).eval()
    assert attn.head_dim == 16
    for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
        assert float(getattr(attn, name).bias.detach().abs().max()) > 0.01, f"{name}.bias must be random, not zero"
    return attn


def _inputs(n: int, b_image: int, tokens: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(n * 100 + b_image * 10 + tokens)
    tok = torch.randn(n, tokens, 256, generator=gen)
    img_k = torch.randn(b_image, 1024, 256, generator=gen) * 2
    img_v = torch.randn(b_image, 1024, 256, generator=gen)
    return tok, img_k, img_v


@pytest.mark.parametrize("tokens", [1, 7, 8, 15, 16, 24])
@pytest.mark.parametrize(("n", "b_image"), [(1, 1), (3, 1), (3, 3)])
def test_folded_cross_attention_matches_plain(tokens: int, n: int, b_image: int) -> None:
    attn = _attention()
    tok, img_k, img_v = _inputs(n, b_image, tokens)
    with torch.no_grad():
        ref_t2i = attn(tok, img_k, img_v)
        ref_i2t = attn(img_k, tok, tok)
        got_t2i = attn.tokens_to_image(tok, img_k, img_v)
        got_i2t = attn.image_to_tokens(img_k, tok, tok)
    assert got_t2i.shape == ref_t2i.shape == (n, tokens, 256)
    assert got_i2t.shape == ref_i2t.shape == (n, 1024, 256)
    # ~1e-6 relative: float sums in another order. A dropped bias term would be off by ~0.1.
    assert torch.allclose(got_t2i, ref_t2i, atol=2e-5, rtol=1e-5), float((got_t2i - ref_t2i).abs().max())
    assert torch.allclose(got_i2t, ref_i2t, atol=2e-5, rtol=1e-5), float((got_i2t - ref_i2t).abs().max())
    if tokens >= attn.head_dim:  # eager: the plain form runs, bit for bit
        assert torch.equal(got_t2i, ref_t2i) and torch.equal(got_i2t, ref_i2t)
    else:
        assert not torch.equal(got_i2t, ref_i2t), "T < head_dim must take the folded form"


def test_traced_graph_uses_the_folded_form_for_any_token_count() -> None:
    """A trace at T=24 (above the eager switch) still folds, and stays exact when run at T=5."""
    attn = _attention()

    class Both(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attn = attn

        def forward(self, tok: torch.Tensor, img_k: torch.Tensor, img_v: torch.Tensor) -> tuple[torch.Tensor, ...]:
            return self.attn.tokens_to_image(tok, img_k, img_v), self.attn.image_to_tokens(img_k, tok, tok)

    with torch.no_grad():
        traced = torch.jit.trace(Both(), _inputs(2, 1, 24), check_trace=False)
        ops = {n.kind() for n in traced.inlined_graph.nodes()}
        assert "aten::scaled_dot_product_attention" not in ops, "the traced graph must hold the folded form"
        for tokens in (24, 5):
            tok, img_k, img_v = _inputs(2, 1, tokens)
            t2i, i2t = traced(tok, img_k, img_v)
            assert torch.allclose(t2i, attn(tok, img_k, img_v), atol=2e-5, rtol=1e-5)
            assert torch.allclose(i2t, attn(img_k, tok, tok), atol=2e-5, rtol=1e-5)
