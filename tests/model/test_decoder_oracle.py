"""Prompt encoder + mask decoder parity against the official sam2 package (every weight randomised).

For the tiny variants the image features come from the official ``forward_image`` on a real
photograph (plus ``no_mem_embed``, as SAM2ImagePredictor.set_image does); for the other
variants random features are used (the decoder does not depend on the trunk).
"""

from __future__ import annotations

import functools

import pytest

from sam2edge.config import get_config, variant_names
from tests.oracle import max_abs, official_model, preprocess_exact, requires_oracle
from tests.oracle import test_images as _test_images  # aliased so pytest does not collect it

torch = pytest.importorskip("torch")

from sam2edge.errors import InputError  # noqa: E402
from sam2edge.model.mask_decoder import MaskDecoder, select_masks, stability_scores  # noqa: E402
from sam2edge.model.prompt_encoder import PromptEncoder  # noqa: E402

TOL = 1e-4
# Outputs far above 1 (mask logits of the 30x-scaled stride-4 features reach ~300) are bounded
# relative to their magnitude, as export verification does: the decoder folds its cross-attention
# projections (model/transformer.py), which reorders float sums (~1e-6 relative, not bit-exact).
TOL_RELATIVE = 3e-6


def _variant_params() -> list:
    slow = pytest.mark.slow
    heavy = ("base_plus", "large")
    return [pytest.param(n, marks=[slow] if get_config(n).size in heavy else []) for n in variant_names("sam2")]


@pytest.fixture(scope="module", params=_variant_params())
def name(request: pytest.FixtureRequest) -> str:
    """Module-scoped so pytest groups the tests by variant (one official model build each)."""
    return request.param


def _ours(name: str) -> tuple[PromptEncoder, MaskDecoder]:
    state = official_model(name).state_dict()
    pe, dec = PromptEncoder(), MaskDecoder()
    for prefix, module in (("sam_prompt_encoder.", pe), ("sam_mask_decoder.", dec)):
        sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        module.load_state_dict(sub, strict=True)
    return pe.eval(), dec.eval()


@functools.lru_cache(maxsize=1)
def _features(name: str) -> dict[str, torch.Tensor]:
    """raw0/raw1: neck levels 0/1 before conv_s0/conv_s1; s0/s1 projected; embed: 64^2 + no_mem_embed."""
    model = official_model(name)
    if get_config(name).size != "tiny":
        gen = torch.Generator().manual_seed(7)
        raw0, raw1 = torch.randn(1, 256, 256, 256, generator=gen), torch.randn(1, 256, 128, 128, generator=gen)
        dec = model.sam_mask_decoder
        with torch.no_grad():
            s0, s1 = dec.conv_s0(raw0), dec.conv_s1(raw1)
        return {"raw0": raw0, "raw1": raw1, "s0": s0, "s1": s1, "embed": torch.randn(1, 256, 64, 64, generator=gen)}
    captured: dict[str, torch.Tensor] = {}
    hooks = [
        getattr(model.sam_mask_decoder, conv).register_forward_hook(
            lambda mod, inp, out, key=key: captured.__setitem__(key, inp[0].detach().clone())
        )
        for conv, key in (("conv_s0", "raw0"), ("conv_s1", "raw1"))
    ]
    try:
        with torch.no_grad():
            out = model.forward_image(preprocess_exact(_test_images()["astronaut"]))
    finally:
        for h in hooks:
            h.remove()
    fpn = out["backbone_fpn"]
    embed = fpn[2] + model.no_mem_embed.reshape(1, -1, 1, 1)  # set_image: directly_add_no_mem_embed
    return {"raw0": captured["raw0"], "raw1": captured["raw1"], "s0": fpn[0], "s1": fpn[1], "embed": embed}


def _scenarios() -> dict[str, tuple]:
    """name -> (coords (N, P, 2), labels (N, P), mask_input or None). Boxes are points 2/3 first."""
    gen = torch.Generator().manual_seed(3)
    box = [[180.0, 120.0], [820.0, 910.0]]
    masks3 = torch.randn(3, 1, 256, 256, generator=gen) * 8.0
    return {
        "one_positive": (torch.tensor([[[512.0, 300.0]]]), torch.tensor([[1]], dtype=torch.int32), None),
        "pos_neg": (torch.tensor([[[512.0, 300.0], [250.0, 760.0]]]), torch.tensor([[1, 0]]), None),
        "box": (torch.tensor([box]), torch.tensor([[2, 3]], dtype=torch.int32), None),
        "box_points": (
            torch.tensor([box + [[500.0, 480.0], [900.0, 60.0]]]),
            torch.tensor([[2, 3, 1, 0]], dtype=torch.int32),
            None,
        ),
        "mask_input": (torch.tensor([[[400.0, 640.0]]]), torch.tensor([[1]]), masks3[:1]),
        "batched3": (
            torch.tensor(
                [
                    [[100.0, 90.0], [0.0, 0.0], [0.0, 0.0]],
                    box + [[700.0, 300.0]],
                    [[1023.0, 5.0], [40.0, 1000.0], [512.0, 512.0]],
                ]
            ),
            torch.tensor([[1.0, -1.0, -1.0], [2.0, 3.0, 0.0], [1.0, 0.0, 1.0]]),  # float labels (export path)
            None,
        ),
        "batched3_masks": (
            torch.tensor(
                [[[300.0, 300.0], [600.0, 700.0]], [[10.0, 10.0], [0.0, 0.0]], [[800.0, 200.0], [200.0, 800.0]]]
            ),
            torch.tensor([[1, 0], [1, -1], [0, 1]], dtype=torch.int32),
            masks3,
        ),
    }


class Worst:
    """Worst abs diff per output over all scenarios of one variant."""

    def __init__(self) -> None:
        self.diffs: dict[str, float] = {}
        self.scale: dict[str, float] = {}

    def check(self, key: str, ours: torch.Tensor, ref: torch.Tensor) -> None:
        assert ours.shape == ref.shape, f"{key}: shape {tuple(ours.shape)} != official {tuple(ref.shape)}"
        self.diffs[key] = max(self.diffs.get(key, 0.0), max_abs(ours, ref))
        self.scale[key] = max(self.scale.get(key, 0.0), float(ref.abs().max()))

    def report(self, title: str) -> None:
        print(f"\n[{title}] worst abs diff per output (max |official| in brackets)")
        for key, diff in self.diffs.items():
            print(f"  {key:28s} {diff:.3e}  [{self.scale[key]:.3g}]")
        bad = {k: d for k, d in self.diffs.items() if not d <= max(TOL, TOL_RELATIVE * self.scale[k])}
        assert not bad, f"over tolerance max({TOL}, {TOL_RELATIVE} x max|official|): {bad}"


@requires_oracle
@pytest.mark.oracle
def test_prompt_encoder_and_decoder_match_official(name: str) -> None:
    torch.set_num_threads(2)
    model = official_model(name)
    ope, odec = model.sam_prompt_encoder, model.sam_mask_decoder
    pe, dec = _ours(name)
    feats = _features(name)
    worst = Worst()
    with torch.no_grad():
        worst.check("dense_pe", pe.get_dense_pe(), ope.get_dense_pe())
        s0, s1 = dec.project_high_res(feats["raw0"], feats["raw1"])
        worst.check("high_res_0", s0, feats["s0"])
        worst.check("high_res_1", s1, feats["s1"])
        image_pe = pe.get_dense_pe()
        for coords, labels, mask in _scenarios().values():
            n = coords.shape[0]
            ref_sparse, ref_dense = ope(points=(coords, labels), boxes=None, masks=mask)
            sparse, dense = pe(coords, labels, mask)
            worst.check("sparse", sparse, ref_sparse)
            worst.check("dense", dense, ref_dense)

            hr = [feats["s0"], feats["s1"]]
            ref_raw = odec.predict_masks(feats["embed"], ope.get_dense_pe(), ref_sparse, ref_dense, n > 1, hr)
            raw = dec(feats["embed"], image_pe, sparse, dense, s0, s1)
            for key, a, b in zip(("raw_masks", "raw_iou", "raw_tokens", "object_score_logits"), raw, ref_raw):
                worst.check(key, a, b)
            for multimask in (True, False):
                ref = odec(feats["embed"], ope.get_dense_pe(), ref_sparse, ref_dense, multimask, n > 1, hr)
                sel = select_masks(raw[0], raw[1], raw[2], multimask)
                tag = "multi" if multimask else "single"
                for key, a, b in zip(("masks", "iou", "obj_ptr_tokens"), sel, ref[:3]):
                    worst.check(f"{tag}_{key}", a, b)
    worst.report(name)


@requires_oracle
@pytest.mark.oracle
def test_stability_fallback_both_directions(name: str) -> None:
    """Per-prompt image features (B = N): strong stride-4 features make token 0 stable, weak ones do not."""
    torch.set_num_threads(2)
    model = official_model(name)
    ope, odec = model.sam_prompt_encoder, model.sam_mask_decoder
    pe, dec = _ours(name)
    gen = torch.Generator().manual_seed(11)
    n = 4
    embed = torch.randn(n, 256, 64, 64, generator=gen)
    hr0 = torch.randn(n, 32, 256, 256, generator=gen) * torch.tensor([30.0, 1.0, 30.0, 1.0]).reshape(n, 1, 1, 1)
    hr1 = torch.randn(n, 64, 128, 128, generator=gen)
    coords = torch.rand(n, 2, 2, generator=gen) * 1024
    labels = torch.tensor([[1, 0], [1, 1], [2, 3], [1, -1]], dtype=torch.int32)
    worst = Worst()
    with torch.no_grad():
        ref_sparse, ref_dense = ope(points=(coords, labels), boxes=None, masks=None)
        ref_all = odec.predict_masks(embed, ope.get_dense_pe(), ref_sparse, ref_dense, False, [hr0, hr1])
        stable = stability_scores(ref_all[0][:, :1]).squeeze(1) >= 0.98
        print(f"\n[{name}] token-0 stability: {stability_scores(ref_all[0][:, 0]).tolist()}")
        assert stable.any() and not stable.all(), f"inputs must mix stable and unstable prompts, got {stable.tolist()}"

        sparse, dense = pe(coords, labels)
        raw = dec(embed, pe.get_dense_pe(), sparse, dense, hr0, hr1)
        ref = odec(embed, ope.get_dense_pe(), ref_sparse, ref_dense, False, False, [hr0, hr1])
        ours = select_masks(raw[0], raw[1], raw[2], multimask=False)
        for key, a, b in zip(("fallback_masks", "fallback_iou", "fallback_tokens"), ours, ref[:3]):
            worst.check(key, a, b)
        # The fallen-back prompts really took a multimask output, the others token 0.
        best = raw[1][:, 1:].argmax(-1) + 1
        for i in range(n):
            expected = raw[0][i, 0] if stable[i] else raw[0][i, best[i]]
            assert torch.equal(ours[0][i, 0], expected)
    worst.report(f"{name} fallback")


@requires_oracle
@pytest.mark.oracle
def test_select_masks_matches_official_on_constructed_logits() -> None:
    """Hand-made logits: stable, unstable, empty (stability 1) and tied IoUs, against the official selector."""
    odec = official_model("sam2.1_hiera_tiny").sam_mask_decoder
    gen = torch.Generator().manual_seed(5)
    masks = torch.randn(5, 4, 256, 256, generator=gen) * 10.0
    masks[0, 0] = 5.0  # all far above delta -> stability 1 (stable)
    masks[1, 0] = torch.linspace(-1.0, 1.0, 256 * 256).reshape(256, 256)  # wide band near 0 -> unstable
    masks[2, 0] = -3.0  # empty: area_u == 0 -> stability 1 (stable)
    masks[3, 0] = torch.where(torch.rand(256, 256, generator=gen) < 0.03, 0.0, 4.0)  # 3% in band -> unstable
    iou = torch.rand(5, 4, generator=gen)
    iou[4, 1:] = 0.5  # tie: the first of tokens 1..3 wins
    masks[4, 0] = 0.0  # all in band -> stability 0 -> falls back
    tokens = torch.randn(5, 4, 256, generator=gen)
    ref_masks, ref_iou = odec._dynamic_multimask_via_stability(masks, iou)
    ours = select_masks(masks, iou, tokens, multimask=False)
    assert torch.equal(ours[0], ref_masks) and torch.equal(ours[1], ref_iou)
    assert torch.equal(ours[2], tokens[:, :1])
    expected_stable = [True, False, True, False, False]
    assert (stability_scores(masks[:, 0]) >= 0.98).tolist() == expected_stable
    assert torch.equal(ours[0][4, 0], masks[4, 1])
    plain = select_masks(masks, iou, tokens, multimask=False, dynamic_stability=False)
    assert torch.equal(plain[0], masks[:, :1]) and torch.equal(plain[1], iou[:, :1])
    multi = select_masks(masks, iou, tokens, multimask=True)
    assert torch.equal(multi[0], masks[:, 1:]) and torch.equal(multi[2], tokens[:, 1:])


@requires_oracle
@pytest.mark.oracle
def test_has_mask_blend_matches_official_per_prompt() -> None:
    """Export path: has_mask=1 rows equal the official mask embedding, has_mask=0 rows no_mask_embed."""
    ope = official_model("sam2.1_hiera_tiny").sam_prompt_encoder
    pe, _ = _ours("sam2.1_hiera_tiny")
    gen = torch.Generator().manual_seed(9)
    coords, labels = torch.rand(3, 2, 2, generator=gen) * 1024, torch.tensor([[1, 0], [2, 3], [1, -1]])
    masks = torch.randn(3, 1, 256, 256, generator=gen) * 6.0
    has_mask = torch.tensor([1.0, 0.0, 1.0])
    with torch.no_grad():
        sparse, dense = pe(coords, labels.float(), masks, has_mask)
        ref_sparse, ref_with = ope(points=(coords, labels), boxes=None, masks=masks)
        _, ref_without = ope(points=(coords, labels), boxes=None, masks=None)
        diffs = {
            "sparse": max_abs(sparse, ref_sparse),
            "dense_with_mask": max_abs(dense[[0, 2]], ref_with[[0, 2]]),
            "dense_no_mask": max_abs(dense[1], ref_without[1]),
        }
    print(f"\n[has_mask blend] {diffs}")
    assert max(diffs.values()) <= TOL


@requires_oracle
@pytest.mark.oracle
def test_dense_pe_follows_loaded_gaussian_matrix() -> None:
    """dense_pe is not in the state dict and is recomputed when a matrix is loaded, also via a parent."""
    ope = official_model("sam2.1_hiera_tiny").sam_prompt_encoder
    state = ope.state_dict()
    fresh = PromptEncoder()
    assert "dense_pe" not in fresh.state_dict()
    assert max_abs(fresh.get_dense_pe(), ope.get_dense_pe()) > 1e-2  # different random matrix before loading
    parent = torch.nn.ModuleDict({"sam_prompt_encoder": PromptEncoder()})
    parent.load_state_dict({f"sam_prompt_encoder.{k}": v for k, v in state.items()}, strict=True)
    fresh.load_state_dict(state, strict=True)
    for module in (fresh, parent["sam_prompt_encoder"]):
        assert module.get_dense_pe().shape == (1, 256, 64, 64)
        assert max_abs(module.get_dense_pe(), ope.get_dense_pe()) <= TOL


def test_input_errors() -> None:
    pe, dec = PromptEncoder(), MaskDecoder()
    coords, labels = torch.zeros(2, 1, 2), torch.ones(2, 1)
    with pytest.raises(InputError, match="has_mask"):
        pe(coords, labels, None, torch.ones(2))
    with pytest.raises(InputError, match="mask_input"):
        pe(coords, labels, torch.zeros(2, 1, 128, 128))
    with pytest.raises(InputError, match="point_labels"):
        pe(coords, torch.ones(2, 3))
    sparse = torch.zeros(3, 2, 256)
    with pytest.raises(InputError, match="image_embed"):
        dec(
            torch.zeros(2, 256, 64, 64),
            pe.get_dense_pe(),
            sparse,
            torch.zeros(3, 256, 64, 64),
            torch.zeros(1, 32, 256, 256),
            torch.zeros(1, 64, 128, 128),
        )
