"""Memory attention and memory encoder parity against the official sam2 package.

Every weight is randomised (official_model). Both networks have the same structure in every
variant, so the inputs are random tensors at realistic scale: unit-variance features, the
official sine position encodings plus the model's own temporal encodings for memory
positions, and mask-encoder inputs mapped the way SAM2 maps them (sigmoid x20 - 10, or
binarised).

Memory attention is checked twice:
- on the real 64x64 grid (4096 tokens per frame) with our batch-first forward and the
  built-in current-frame position buffer, for a few (frames, pointer tokens) cases;
- on a 16x16 grid for the whole grid of F in {1, 3, 7} x K in {0, 4, 16} (the official
  RoPEAttention re-derives its table for any square grid; ours is built for the size), via
  the official-convention adapter. Same code paths, 256x cheaper attention.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from sam2edge.config import get_config, variant_names
from tests.oracle import max_abs, official_model, requires_oracle

torch = pytest.importorskip("torch")

from sam2edge.model.memory_attention import MemoryAttention  # noqa: E402
from sam2edge.model.memory_encoder import MemoryEncoder  # noqa: E402

TOL = 1e-4
BATCH = 2
GRID_CASES = [(f, k) for f in (1, 3, 7) for k in (0, 4, 16)]

pytestmark = [requires_oracle, pytest.mark.oracle]


def _variant_params() -> list:
    heavy = ("base_plus", "large")
    return [pytest.param(n, marks=[pytest.mark.slow] if get_config(n).size in heavy else []) for n in variant_names("sam2")]


@pytest.fixture(scope="module", params=_variant_params())
def name(request: pytest.FixtureRequest) -> str:
    """Module-scoped so the tests run grouped by variant (one official model build each)."""
    return request.param


def _load(module: torch.nn.Module, name: str, prefix: str) -> torch.nn.Module:
    state = official_model(name).state_dict()
    module.load_state_dict({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}, strict=True)
    return module.eval()


@contextlib.contextmanager
def _official_rope_restored(model) -> Iterator[None]:
    """The official RoPEAttention caches a re-derived table when the grid changes; put it back."""
    from sam2.modeling.sam.transformer import RoPEAttention

    saved = [(m, m.freqs_cis) for m in model.memory_attention.modules() if isinstance(m, RoPEAttention)]
    try:
        yield
    finally:
        for m, table in saved:
            m.freqs_cis = table


def _memory_inputs(name: str, side: int, frames: int, ptr_tokens: int, seed: int) -> dict[str, torch.Tensor]:
    """Official-convention (sequence-first) inputs for a side x side grid and batch BATCH."""
    model = official_model(name)
    gen = torch.Generator().manual_seed(seed)
    n = side * side
    grid = torch.zeros(BATCH, 1, side, side)
    with torch.no_grad():
        curr_pos = model.image_encoder.neck.position_encoding(grid).flatten(2).permute(2, 0, 1)  # [N,B,256]
        sine64 = model.memory_encoder.position_encoding(grid).flatten(2).permute(2, 0, 1)  # [N,B,64]
        spatial, spatial_pos = [], []
        for i in range(frames):
            # Memory is stored in bfloat16 by the official tracker; mimic its rounding.
            spatial.append(torch.randn(n, BATCH, 64, generator=gen).bfloat16().float())
            tpos = model.maskmem_tpos_enc[(i + 1) % model.num_maskmem]  # [1,1,64]
            spatial_pos.append(sine64 + tpos)
        ptrs = torch.randn(ptr_tokens, BATCH, 64, generator=gen)
        if isinstance(model.obj_ptr_tpos_proj, torch.nn.Linear):
            from sam2.modeling.sam2_utils import get_1d_sine_pe

            rel = torch.arange(ptr_tokens // 4, dtype=torch.float32) - 2.0  # signed frame offsets
            pe = model.obj_ptr_tpos_proj(get_1d_sine_pe(rel / 15.0, dim=256))  # [P,64]
            ptr_pos = pe.repeat_interleave(4, dim=0)[:, None, :].expand(-1, BATCH, -1)
        else:  # sam2: pointers carry no temporal encoding there; random offsets still test the wiring
            ptr_pos = 0.5 * torch.randn(ptr_tokens, BATCH, 64, generator=gen)
    return {
        "curr": torch.randn(n, BATCH, 256, generator=gen),
        "curr_pos": curr_pos.contiguous(),
        "memory": torch.cat(spatial + [ptrs]),
        "memory_pos": torch.cat(spatial_pos + [ptr_pos]),
        "num_obj_ptr_tokens": ptr_tokens,
    }


def _official_attention(name: str, x: dict[str, torch.Tensor]) -> torch.Tensor:
    model = official_model(name)
    with torch.no_grad(), _official_rope_restored(model):
        return model.memory_attention(
            curr=[x["curr"]],
            curr_pos=[x["curr_pos"]],
            memory=x["memory"],
            memory_pos=x["memory_pos"],
            num_obj_ptr_tokens=x["num_obj_ptr_tokens"],
        )


def _full_scale_params() -> list:
    """Each 64x64 case costs about F+1 full attention passes per side, so only two run by default
    (F>1 with pointers; F=1 without); the grid test covers every (F, K) on every variant."""
    fast = {("sam2.1_hiera_tiny", 3, 4), ("sam2_hiera_tiny", 1, 0)}
    cases = {"sam2.1_hiera_tiny": [(3, 4), (7, 16)], "sam2_hiera_tiny": [(1, 0)]}
    params = []
    for n in variant_names("sam2"):
        for f, k in cases.get(n, [(1, 16)]):
            marks = [] if (n, f, k) in fast else [pytest.mark.slow]
            params.append(pytest.param(n, f, k, marks=marks, id=f"{n}-F{f}-K{k}"))
    return params


@pytest.mark.parametrize(("variant", "frames", "ptr_tokens"), _full_scale_params())
def test_memory_attention_full_scale(variant: str, frames: int, ptr_tokens: int) -> None:
    """64x64 grid, batch-first forward with curr_pos=None (the built-in sine buffer)."""
    torch.set_num_threads(2)
    x = _memory_inputs(variant, 64, frames, ptr_tokens, seed=frames * 100 + ptr_tokens)
    ref = _official_attention(variant, x)  # [N,B,256]
    ours = _load(MemoryAttention(), variant, "memory_attention.")
    split = frames * 4096
    mem, pos = x["memory"].transpose(0, 1), x["memory_pos"].transpose(0, 1)
    with torch.no_grad():
        out = ours(x["curr"].transpose(0, 1), None, mem[:, :split], pos[:, :split], mem[:, split:], pos[:, split:])
    diff = max_abs(out.transpose(0, 1), ref)
    print(f"[memory_attention 64x64] {variant} F={frames} K={ptr_tokens} B={BATCH}: max|diff|={diff:.2e}")
    assert out.shape == (BATCH, 4096, 256)
    assert diff <= TOL


def test_memory_attention_grid(name: str) -> None:
    """F in {1,3,7} x K in {0,4,16} on a 16x16 grid, through the official-convention adapter."""
    torch.set_num_threads(2)
    ours = _load(MemoryAttention(feat_size=(16, 16)), name, "memory_attention.")
    worst = 0.0
    for frames, ptr_tokens in GRID_CASES:
        x = _memory_inputs(name, 16, frames, ptr_tokens, seed=frames * 100 + ptr_tokens)
        ref = _official_attention(name, x)
        with torch.no_grad():
            out = ours.forward_seq_first([x["curr"]], x["memory"], [x["curr_pos"]], x["memory_pos"], ptr_tokens)
        diff = max_abs(out, ref)
        print(f"[memory_attention 16x16] {name} F={frames} K={ptr_tokens}: max|diff|={diff:.2e}")
        assert out.shape == ref.shape
        worst = max(worst, diff)
    print(f"[memory_attention 16x16] {name} worst over {len(GRID_CASES)} cases: {worst:.2e}")
    assert worst <= TOL


def test_pointer_tokens_are_not_rotated(name: str) -> None:
    """Rotating the pointer keys too (a plausible bug) must change the output measurably."""
    torch.set_num_threads(2)
    ours = _load(MemoryAttention(feat_size=(16, 16)), name, "memory_attention.")
    x = _memory_inputs(name, 16, 1, 256, seed=5)  # 256 pointer tokens: exactly one grid's worth
    ref = _official_attention(name, x)
    with torch.no_grad():
        right = ours.forward_seq_first([x["curr"]], x["memory"], [x["curr_pos"]], x["memory_pos"], 256)
        wrong = ours.forward_seq_first([x["curr"]], x["memory"], [x["curr_pos"]], x["memory_pos"], 0)
    print(f"[memory_attention] {name} pointers rotated by mistake: max|diff|={max_abs(wrong, ref):.2e}")
    assert max_abs(right, ref) <= TOL
    assert max_abs(wrong, ref) > 1e-3


def _mask_inputs(seed: int) -> dict[str, torch.Tensor]:
    """pix_feat [B,256,64,64]; smooth random logits at 1024^2 mapped two ways (soft and binarised)."""
    from torch.nn import functional as F

    gen = torch.Generator().manual_seed(seed)
    logits = 8.0 * torch.randn(BATCH, 1, 64, 64, generator=gen)
    logits = F.interpolate(logits, size=(1024, 1024), mode="bilinear", align_corners=False)
    return {
        "pix_feat": torch.randn(BATCH, 256, 64, 64, generator=gen),
        "soft": torch.sigmoid(logits) * 20.0 - 10.0,
        "binary": (logits > 0).float() * 20.0 - 10.0,
    }


def test_memory_encoder(name: str) -> None:
    torch.set_num_threads(2)
    model = official_model(name)
    ours = _load(MemoryEncoder(), name, "memory_encoder.")
    x = _mask_inputs(seed=11)
    for kind in ("soft", "binary"):
        with torch.no_grad():
            ref = model.memory_encoder(x["pix_feat"], x[kind], skip_mask_sigmoid=True)
            feats, pos = ours(x["pix_feat"], x[kind])
        d_feat = max_abs(feats, ref["vision_features"])
        d_pos = max_abs(pos, ref["vision_pos_enc"][0])
        print(f"[memory_encoder] {name} {kind} mask: features max|diff|={d_feat:.2e}, pos max|diff|={d_pos:.2e}")
        assert feats.shape == (BATCH, 64, 64, 64) and pos.shape == (BATCH, 64, 64, 64)
        assert d_feat <= TOL and d_pos <= TOL
