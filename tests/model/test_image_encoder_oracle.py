"""Image encoder (Hiera trunk + FPN neck) against the official sam2 package, all 8 variants."""

from __future__ import annotations

import copy
import functools

import pytest

from sam2edge.config import get_config, variant_names
from tests import oracle
from tests.oracle import max_abs, official_config_file, official_model, preprocess_exact, requires_oracle

torch = pytest.importorskip("torch")

from sam2edge.model.hiera import Hiera, max_pool_hw  # noqa: E402
from sam2edge.model.image_encoder import ImageEncoder  # noqa: E402
from sam2edge.model.testing import randomize_parameters  # noqa: E402

PREFIX = "image_encoder."
TOL = 1e-4
SLOW_SIZES = ("base_plus", "large")


def _variant_params() -> list:
    return [
        pytest.param(name, marks=[pytest.mark.slow] if get_config(name).size in SLOW_SIZES else [], id=name)
        for name in variant_names("sam2")
    ]


def _encoder_state(model) -> dict:
    return {k[len(PREFIX) :]: v for k, v in model.state_dict().items() if k.startswith(PREFIX)}


@functools.lru_cache(maxsize=1)
def _batch():
    """Two preprocessed images [2, 3, 1024, 1024]: a photograph and uniform noise."""
    imgs = oracle.test_images()
    return torch.cat([preprocess_exact(imgs["astronaut"]), preprocess_exact(imgs["noise"])])


def _official_encoder_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """State-dict shapes of the official image encoder alone (built from its hydra config, default init)."""
    import sam2  # noqa: F401  (registers the hydra config module)
    from hydra import compose
    from hydra.utils import instantiate

    cfg = compose(config_name=official_config_file(name))
    encoder = instantiate(cfg.model.image_encoder)
    return {k: tuple(v.shape) for k, v in encoder.state_dict().items()}


@requires_oracle
@pytest.mark.oracle
@pytest.mark.parametrize("name", variant_names("sam2"))
def test_state_dict_keys_and_shapes_match_official(name: str) -> None:
    expected = _official_encoder_shapes(name)
    with torch.device("meta"):
        ours = ImageEncoder(get_config(name))
    got = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert sorted(set(got) - set(expected)) == [] and sorted(set(expected) - set(got)) == []
    wrong = {k: (got[k], expected[k]) for k in expected if got[k] != expected[k]}
    assert wrong == {}
    print(f"{name}: {len(got)} keys match")


@requires_oracle
@pytest.mark.oracle
@pytest.mark.parametrize("name", _variant_params())
def test_image_encoder_matches_official(name: str) -> None:
    torch.set_num_threads(min(2, torch.get_num_threads()))
    official = official_model(name)
    ours = ImageEncoder(get_config(name)).eval()
    ours.load_state_dict(_encoder_state(official), strict=True)
    x = _batch()
    with torch.inference_mode():
        ref = official.image_encoder(x)
        got = ours(x)
    assert len(got) == len(ref["backbone_fpn"]) == 3
    worst = 0.0
    for level, (a, b) in enumerate(zip(got, ref["backbone_fpn"])):
        assert a.shape == b.shape, (level, a.shape, b.shape)
        diff = max_abs(a, b)
        scale = float(b.abs().max())
        print(f"{name} backbone_fpn[{level}] {tuple(a.shape)}: max abs {diff:.3g} (rel {diff / scale:.3g}, |ref| {scale:.3g})")
        worst = max(worst, diff)
    for level, (a, b) in enumerate(zip(ours.position_encodings(), ref["vision_pos_enc"])):
        assert a.shape[1:] == b.shape[1:], (level, a.shape, b.shape)
        diff = max_abs(a.expand_as(b), b)
        print(f"{name} vision_pos_enc[{level}] {tuple(a.shape)}: max abs {diff:.3g}")
        worst = max(worst, diff)
    assert max_abs(ours.vision_pos, ref["vision_pos_enc"][-1][:1]) <= TOL
    assert worst <= TOL


@requires_oracle
@pytest.mark.oracle
def test_position_embedding_follows_load_state_dict() -> None:
    """The cached position embedding is recomputed when new weights are loaded (directly or via a parent)."""
    name = "sam2.1_hiera_tiny"
    official_trunk = copy.deepcopy(official_model(name).image_encoder.trunk)
    encoder = ImageEncoder(get_config(name)).eval()
    before = encoder.trunk.pos_embed_grid.clone()

    # Loading through the parent module (as SAM2Model does) must refresh the trunk's cache.
    fresh = randomize_parameters(ImageEncoder(get_config(name)), seed=123).state_dict()
    encoder.load_state_dict(fresh, strict=True)
    official_trunk.load_state_dict({k[len("trunk.") :]: v for k, v in fresh.items() if k.startswith("trunk.")})
    with torch.no_grad():
        expected = official_trunk._get_pos_embed(encoder.trunk.grid_hw).permute(0, 3, 1, 2)
    assert max_abs(before, expected) > 1e-2  # the new weights really give a different embedding
    assert max_abs(encoder.trunk.pos_embed_grid, expected) == 0.0

    # A trunk built for another size loads the same weights and still matches the official forward.
    small = Hiera(get_config(name).trunk, image_size=256).eval()
    randomize_parameters(small, seed=7)
    official_trunk.load_state_dict(small.state_dict())
    x = torch.randn(1, 3, 256, 256, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        diffs = [max_abs(a, b) for a, b in zip(small(x), official_trunk(x))]
    print(f"hiera_t at 256² after reload: per-stage max abs {diffs}")
    assert len(diffs) == 4 and max(diffs) <= TOL


def test_refresh_after_in_place_edit() -> None:
    """In-place parameter edits need an explicit refresh; the refreshed cache matches the live formula."""
    trunk = Hiera(get_config("sam2.1_hiera_tiny").trunk, image_size=256)
    with torch.no_grad():
        trunk.pos_embed.normal_()
        trunk.pos_embed_window.normal_()
        assert float((trunk.pos_embed_grid - trunk.position_embedding()).abs().max()) > 1e-2
        trunk.refresh_position_embedding()
        assert torch.equal(trunk.pos_embed_grid, trunk.position_embedding())


@pytest.mark.parametrize("shape", [(2, 8, 8, 5), (1, 7, 9, 3)])
def test_max_pool_hw_equals_max_pool2d(shape: tuple[int, ...]) -> None:
    """Channels-last pooling used for Q-pooling and shortcuts == nn.MaxPool2d (floor mode), odd sizes included."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    expected = torch.nn.functional.max_pool2d(x.permute(0, 3, 1, 2), 2, 2).permute(0, 2, 3, 1)
    assert torch.equal(max_pool_hw(x, 2), expected)
