"""Memory attention's two forms compute the same thing, and RoPE's projected form is exact.

Forms (see sam2edge/model/memory_attention.py):
- fused (eager PyTorch, CPU and CUDA; the official op order): v_proj + PyTorch's fused SDPA kernel;
- narrow (exported graphs, while tracing): plain attention over the 64-channel memory in
  EXPORT_QUERY_CHUNK query chunks, the 1/16 softmax scale folded into the query weights, then
  out_proj o v_proj composed.
Each is also run with the current frame shared (batch 1) or repeated per object. A 32x32 grid
(1024 queries) so the chunked form really runs several chunks, every parameter random (a zero
v_proj bias would hide a wrong composition), two memory frames plus pointer tokens.
The oracle tests (test_memory_oracle.py) compare the eager form with the official package, and
export verification compares the exported graphs with it.
"""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from sam2edge.model import memory_attention as ma  # noqa: E402
from sam2edge.model.rope import apply_rope, axial_rope_tables, interleaved_rope_tables, rotate_projected, swap_pairs  # noqa: E402
from sam2edge.model.testing import randomize_parameters  # noqa: E402

SIDE, OBJECTS, FRAMES, PTR_TOKENS = 32, 3, 2, 8


@pytest.fixture(scope="module")
def net() -> ma.MemoryAttention:
    # Two layers: the second runs with the frame already per object, like layers 1-3 of the real one.
    model = randomize_parameters(ma.MemoryAttention(num_layers=2, feat_size=(SIDE, SIDE)), seed=7).eval()
    ca = model.layers[0].cross_attn_image
    for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
        assert float(getattr(ca, name).bias.detach().abs().max()) > 0.01, f"{name}.bias must be random, not zero"
    assert SIDE * SIDE > 2 * ma.EXPORT_QUERY_CHUNK - 1, "grid too small to chunk"
    return model


@pytest.fixture(scope="module")
def inputs() -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(5)
    n = SIDE * SIDE
    return (
        torch.randn(1, n, 256, generator=gen),  # curr (shared frame)
        torch.randn(1, n, 256, generator=gen),  # curr_pos
        torch.randn(OBJECTS, FRAMES * n, 64, generator=gen),  # memory
        torch.randn(1, FRAMES * n, 64, generator=gen),  # memory positions
        torch.randn(OBJECTS, PTR_TOKENS, 64, generator=gen),  # pointer tokens
        torch.randn(1, PTR_TOKENS, 64, generator=gen),  # pointer positions
    )


def _run(net: ma.MemoryAttention, inputs: tuple[torch.Tensor, ...], shared: bool) -> torch.Tensor:
    curr, *rest = inputs
    with torch.inference_mode():
        return net(curr if shared else curr.expand(OBJECTS, -1, -1).contiguous(), *rest)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


@pytest.fixture(scope="module")
def eager(net, inputs) -> dict[bool, torch.Tensor]:
    """The eager (fused) form with the frame shared (True) or repeated per object (False)."""
    return {shared: _run(net, inputs, shared) for shared in (True, False)}


@pytest.fixture(scope="module")
def export(net, inputs) -> dict[bool, torch.Tensor]:
    """The exported (narrow) form, as the graph is traced, with the frame shared or repeated."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ma, "is_tracing", lambda: True)
        return {shared: _run(net, inputs, shared) for shared in (True, False)}


@pytest.mark.parametrize("shared", [True, False], ids=["shared-frame", "frame-per-object"])
def test_export_form_matches_eager(eager, export, shared: bool) -> None:
    ref = eager[False]  # the official computation: frame repeated per object, fused kernel throughout
    got = export[shared]
    rel = _rel(got, ref)
    print(f"[memory attention export, {'shared' if shared else 'per-object'} frame] max rel diff vs eager {rel:.2e}")
    assert got.shape == ref.shape == (OBJECTS, SIDE * SIDE, 256)
    # Reassociation only (P @ (M Wv') vs (P @ M) Wv', chunked softmax, scale in the weights): ~1e-6.
    assert rel < 2e-5


def test_shared_frame_equals_repeated_frame(eager) -> None:
    """Layer 0's object-independent work computed once gives what each object would compute."""
    shared, repeated = eager[True], eager[False]
    print(f"[memory attention] shared vs repeated frame: max abs diff {float((shared - repeated).abs().max()):.2e}")
    assert torch.allclose(shared, repeated, rtol=0, atol=1e-5)


def test_export_form_is_not_the_eager_form(eager, export) -> None:
    """Tracing really switches the computation (else the comparisons above prove nothing)."""
    assert not torch.equal(export[False], eager[False])


def test_eager_form_uses_the_fused_kernel(net, inputs, monkeypatch) -> None:
    """Eager PyTorch, CPU included, never takes the plain chunked attention: on the CPU the fused
    kernel was the faster one at 2 threads (figures in the module docstring)."""
    def refuse(*args, **kwargs):
        raise AssertionError("eager memory attention ran the plain (export) attention")

    monkeypatch.setattr(ma, "_plain_attention", refuse)
    assert _run(net, inputs, shared=True).shape == (OBJECTS, SIDE * SIDE, 256)


def test_rotate_projected_is_apply_rope_bit_for_bit() -> None:
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(2, 3, 64, 256, generator=gen) * 4
    cos, sin = axial_rope_tables(256, 8, 8)
    cos2, sin2 = interleaved_rope_tables(256, 8, 8)
    y_swapped = swap_pairs(y.movedim(-1, 0)).movedim(0, -1)
    assert torch.equal(rotate_projected(y, y_swapped, cos2, sin2), apply_rope(y, cos, sin))


def test_rotated_projection_matches_linear_then_rope() -> None:
    proj = randomize_parameters(torch.nn.Linear(64, 256), seed=2)
    x = torch.randn(2, 64, 64, generator=torch.Generator().manual_seed(1))
    rope = interleaved_rope_tables(256, 8, 8)
    cos, sin = axial_rope_tables(256, 8, 8)
    with torch.inference_mode():
        got = ma._Projections.rotated(proj, x, rope, scale=1 / 16)
        ref = apply_rope(proj(x), cos, sin) / 16
    assert _rel(got, ref) < 1e-6
