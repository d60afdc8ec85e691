"""Checkpoint loading, variant detection and the random-checkpoint writer.

Expected key/shape tables come from our model (built on the meta device). Where
``sam2edge.model.build_model`` cannot be imported yet, the official model stands in for it,
so the detection logic is tested either way.
"""

from __future__ import annotations

import functools
import os
import pickle
import warnings
import zipfile
from pathlib import Path

import pytest

from sam2edge.config import REGISTRY, ModelConfig, get_config, variant_names
from sam2edge.errors import CheckpointError
from sam2edge.model import checkpoint
from tests.oracle import have_oracle, official_config_file, requires_oracle

torch = pytest.importorskip("torch")
torch.set_num_threads(2)

TINY = "sam2.1_hiera_tiny"


def _have_build_model() -> bool:
    try:
        from sam2edge.model import build_model  # noqa: F401
    except Exception:
        return False
    return True


HAVE_OURS = _have_build_model()


@functools.lru_cache(maxsize=8)
def official_shapes(name: str) -> dict[str, tuple[int, ...]]:
    """Key -> shape of the official model's state dict (default init on CPU; cached)."""
    model = _official_build(get_config(name), "cpu")
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _official_build(cfg: ModelConfig, device: str) -> torch.nn.Module:
    """Stand-in for our build_model: the official SAM2Base (it cannot be built on meta)."""
    from sam2.build_sam import build_sam2

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_sam2(official_config_file(cfg.name), ckpt_path=None, device="cpu", mode="eval")


@pytest.fixture(scope="module", autouse=True)
def model_source():
    """Use our build_model when it exists, else the official model (or skip without it)."""
    if not HAVE_OURS and not have_oracle():
        pytest.skip("neither sam2edge.model.build_model nor the official sam2 package is available")
    checkpoint._expected_items.cache_clear()
    with pytest.MonkeyPatch.context() as mp:
        if not HAVE_OURS:
            print("\n[test_checkpoint] sam2edge.model.build_model not importable: using the official model")
            mp.setattr(checkpoint, "_build", _official_build)
        yield "ours" if HAVE_OURS else "official"
    checkpoint._expected_items.cache_clear()


def meta_state_dict(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Tensors with the right shapes and no storage: detection only reads shapes."""
    return {k: torch.empty(s, device="meta") for k, s in shapes.items()}


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    return checkpoint.write_random_checkpoint(tmp_path_factory.mktemp("ckpt") / f"{TINY}.pt", TINY, seed=1)


# --------------------------------------------------------------------------- expected tables / detection
@requires_oracle
@pytest.mark.skipif(not HAVE_OURS, reason="sam2edge.model.build_model not importable yet")
@pytest.mark.parametrize("name", variant_names("sam2"))
def test_expected_shapes_equal_official(name):
    ours = checkpoint.expected_state_dict_shapes(get_config(name))
    official = official_shapes(name)
    diff = checkpoint.compare_state_dict(meta_state_dict(ours), official)
    print(f"{name}: {len(ours)} keys, {diff.describe()}")
    assert diff.ok, diff.describe()


@requires_oracle
@pytest.mark.skipif(not HAVE_OURS, reason="sam2edge.model.build_model not importable yet")
def test_expected_key_order_equals_official():
    # randomize_parameters draws in state-dict order: the same seed gives ours and the
    # official model the same weights only if the orders agree.
    ours = list(checkpoint.expected_state_dict_shapes(get_config(TINY)))
    official = list(official_shapes(TINY))
    first = next((i for i, (a, b) in enumerate(zip(ours, official)) if a != b), None)
    assert first is None, f"order differs at index {first}: ours {ours[first]!r}, official {official[first]!r}"


@requires_oracle
@pytest.mark.parametrize("name", variant_names("sam2"))
def test_detect_every_variant(name):
    state = meta_state_dict(official_shapes(name))
    cfg = checkpoint.detect_variant(state)
    assert cfg is REGISTRY[name]


@requires_oracle
def test_sam21_without_its_three_extra_keys_is_sam2():
    state = meta_state_dict(official_shapes(TINY))
    for key in checkpoint.SAM21_ONLY_KEYS:
        del state[key]
    assert checkpoint.detect_variant(state).name == "sam2_hiera_tiny"


def _expect_error(state: dict, *fragments: str) -> str:
    with pytest.raises(CheckpointError) as info:
        checkpoint.detect_variant(state)
    msg = str(info.value)
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in error message: {msg}"
    return msg


@requires_oracle
@pytest.mark.parametrize(
    "key",
    [
        "image_encoder.trunk.blocks.5.attn.qkv.weight",
        "no_obj_embed_spatial",
        "obj_ptr_tpos_proj.bias",
        checkpoint.PATCH_EMBED_KEY,
        "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
    ],
)
def test_one_key_removed_is_refused(key):
    state = meta_state_dict(official_shapes(TINY))
    del state[key]
    _expect_error(state, "matches no SAM2 variant", f"Closest is {TINY}", "1 missing key(s)", key)


@requires_oracle
@pytest.mark.parametrize("name", [TINY, "sam2_hiera_tiny"])
def test_one_shape_changed_is_refused(name):
    shapes = dict(official_shapes(name))
    key = "sam_mask_decoder.iou_prediction_head.layers.2.weight"
    shapes[key] = (shapes[key][0] + 1, *shapes[key][1:])
    msg = _expect_error(meta_state_dict(shapes), f"Closest is {name}", "1 shape mismatch(es)", key)
    assert "missing" not in msg and "unexpected" not in msg


@requires_oracle
def test_extra_key_is_refused():
    state = meta_state_dict(official_shapes("sam2_hiera_small"))
    state["image_encoder.trunk.extra_token"] = torch.empty(1, 96, device="meta")
    _expect_error(state, "Closest is sam2_hiera_small", "1 unexpected key(s)", "extra_token")


@requires_oracle
def test_foreign_state_dict_names_closest_variant():
    state = {"encoder.weight": torch.zeros(4, 4), "decoder.bias": torch.zeros(4)}
    msg = _expect_error(state, "(2 tensors; no 4-D", "Closest is", "unexpected key(s): encoder.weight")
    assert "missing key(s)" in msg


@requires_oracle
def test_trunk_of_wrong_depth_is_refused():
    # A tiny trunk truncated to 11 blocks: width matches tiny but no variant has 11 blocks.
    state = {k: v for k, v in meta_state_dict(official_shapes(TINY)).items() if ".blocks.11." not in k}
    _expect_error(state, "11 trunk blocks", f"Closest is {TINY}", "image_encoder.trunk.blocks.11.")


def test_non_tensor_entries_are_refused():
    with pytest.raises(CheckpointError, match="'a' is a list"):
        checkpoint.detect_variant({"a": [1, 2]})
    with pytest.raises(CheckpointError, match="is a list, expected a dict of tensors"):
        checkpoint.detect_variant([torch.zeros(1)])


# --------------------------------------------------------------------------- random checkpoints
@requires_oracle
def test_random_checkpoint_round_trip(tiny_ckpt, tmp_path):
    state, cfg = checkpoint.load_checkpoint(tiny_ckpt)
    assert cfg.name == TINY
    reference = checkpoint._build(cfg, "cpu")
    from sam2edge.model.testing import randomize_parameters

    expected = randomize_parameters(reference, seed=1).state_dict()
    assert list(state) == list(expected)
    worst = max(float((state[k] - expected[k]).abs().max()) for k in expected)
    print(f"round trip: {len(state)} tensors, worst abs diff {worst}")
    assert worst == 0.0
    assert all(v.device.type == "cpu" and v.dtype == torch.float32 for v in state.values())
    # Every tensor is random: no all-zero or all-one tensor survives.
    constant = [k for k, v in state.items() if v.numel() > 1 and bool((v == v.flatten()[0]).all())]
    assert not constant, constant[:5]
    # The official model accepts it strictly.
    official = _official_build(cfg, "cpu")
    official.load_state_dict(state, strict=True)
    # No temporary file left next to the checkpoint.
    assert [p.name for p in tiny_ckpt.parent.iterdir()] == [tiny_ckpt.name]


@requires_oracle
def test_random_checkpoint_seed_and_version(tiny_ckpt, tmp_path):
    path = checkpoint.write_random_checkpoint(tmp_path / "sub" / "b.pt", get_config("sam2_hiera_tiny"), seed=2)
    state, cfg = checkpoint.load_checkpoint(path)
    assert cfg.name == "sam2_hiera_tiny" and "no_obj_embed_spatial" not in state
    key = checkpoint.PATCH_EMBED_KEY
    other, _ = checkpoint.load_checkpoint(tiny_ckpt)
    assert not torch.equal(state[key], other[key]), "different seeds gave the same weights"


# --------------------------------------------------------------------------- bad files
def _load_error(path: Path, *fragments: str) -> str:
    with pytest.raises(CheckpointError) as info:
        checkpoint.load_checkpoint(path)
    msg = str(info.value)
    assert str(path) in msg, f"path missing from message: {msg}"
    for fragment in fragments:
        assert fragment in msg, f"{fragment!r} not in error message: {msg}"
    print(f"  {path.name}: {msg[:160]}")
    return msg


def test_missing_file(tmp_path):
    _load_error(tmp_path / "nope.pt", "does not exist")


def test_directory(tmp_path):
    _load_error(tmp_path, "is a directory")


def test_empty_file(tmp_path):
    (tmp_path / "empty.pt").touch()
    _load_error(tmp_path / "empty.pt", "empty file (0 bytes)")


def test_text_file(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("these are not weights\n")
    _load_error(path, "not a readable PyTorch checkpoint", "a text file", "'these are not weights")


def test_html_page(tmp_path):
    path = tmp_path / "page.pt"
    path.write_text("<!DOCTYPE html><html><body>Access denied</body></html>")
    _load_error(path, "an HTML page")


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.pt"
    path.write_bytes(bytes([0x13, 0x37]) + os.urandom(4094))
    _load_error(path, "not a readable PyTorch checkpoint", "starts with bytes 13 37")


def test_zip_that_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "archive.pt"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("readme.txt", "hello")
        z.writestr("weights.bin", b"\0" * 100)
    _load_error(path, "a zip archive that is not a PyTorch checkpoint", "2 entries")


@requires_oracle
def test_truncated_checkpoint(tiny_ckpt, tmp_path):
    data = tiny_ckpt.read_bytes()
    path = tmp_path / "half.pt"
    path.write_bytes(data[: len(data) // 2])
    _load_error(path, "truncated", str(len(data) // 2))


def test_truncated_legacy_pickle(tmp_path):
    path = tmp_path / "legacy.pt"
    torch.save({"model": {"w": torch.ones(1000)}}, path, _use_new_zipfile_serialization=False)
    path.write_bytes(path.read_bytes()[:300])
    _load_error(path, "a pickle file that could not be read")


class _Arbitrary:
    pass


def test_pickle_with_arbitrary_objects_is_refused(tmp_path):
    path = tmp_path / "unsafe.pt"
    torch.save({"model": _Arbitrary()}, path)
    _load_error(path, "weights_only=True", "UnpicklingError")


def test_plain_pickle_is_refused(tmp_path):
    path = tmp_path / "plain.pkl"
    path.write_bytes(pickle.dumps({"model": {}}, protocol=4)[:10])
    _load_error(path, "could not be read")


def test_dict_without_model(tmp_path):
    path = tmp_path / "opt.pt"
    torch.save({"optimizer": {}, "epoch": 3}, path)
    _load_error(path, "no 'model' entry", "['optimizer', 'epoch']", "{'model': state_dict}")


def test_bare_state_dict_gets_a_hint(tmp_path):
    path = tmp_path / "bare.pt"
    torch.save({checkpoint.PATCH_EMBED_KEY: torch.zeros(96, 3, 7, 7)}, path)
    _load_error(path, "no 'model' entry", "looks like a bare state dict")


def test_not_a_dict(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    _load_error(path, "holds a list", "expected a dict with a 'model' state dict")


def test_model_entry_not_a_dict(tmp_path):
    path = tmp_path / "tensor.pt"
    torch.save({"model": torch.zeros(3)}, path)
    _load_error(path, "the state dict is a Tensor")


@requires_oracle
def test_almost_right_checkpoint_file(tmp_path):
    shapes = official_shapes("sam2_hiera_tiny")
    state = {k: torch.zeros(s) for k, s in shapes.items()}
    del state["memory_encoder.out_proj.bias"]
    path = tmp_path / "almost.pt"
    torch.save({"model": state}, path)
    _load_error(path, "Closest is sam2_hiera_tiny", "1 missing key(s): memory_encoder.out_proj.bias")
