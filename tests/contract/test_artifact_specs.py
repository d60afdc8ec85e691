"""The four artifact specs: consistent dims, documented tensors, checks that reject bad feeds."""

from __future__ import annotations

import numpy as np
import pytest

from sam2edge.contract.artifacts import ARTIFACTS, MEMORY_ATTENTION, PROMPT_DECODER, get_artifact, tolerance
from sam2edge.contract.spec import Dim
from sam2edge.errors import InputError


def test_four_artifacts_with_expected_names():
    assert list(ARTIFACTS) == ["image_encoder", "prompt_decoder", "memory_attention", "memory_encoder"]
    assert ARTIFACTS["image_encoder"].output_names == [
        "image_embed", "high_res_feats_0", "high_res_feats_1", "vision_features"]
    assert PROMPT_DECODER.output_names == ["masks", "iou_predictions", "object_score_logits", "mask_tokens", "obj_ptr"]
    with pytest.raises(KeyError, match="known"):
        get_artifact("nope")


@pytest.mark.parametrize("name", list(ARTIFACTS))
def test_dims_and_docs(name):
    spec = ARTIFACTS[name]
    for dim in spec.dims().values():
        assert isinstance(dim, Dim) and 1 <= dim.min <= dim.opt <= dim.max, dim
    for t in (*spec.inputs, *spec.outputs):
        assert t.doc, f"{name}.{t.name} has no doc"
        assert t.dtype in ("float32", "int32")
    names = spec.input_names + spec.output_names
    assert len(set(spec.input_names)) == len(spec.input_names) and len(set(spec.output_names)) == len(spec.output_names)
    assert all(tolerance(spec, o) in (1e-4, 1e-3) for o in spec.output_names), names
    # every dynamic dim of an output is bound by some input, so runtimes can size outputs
    in_dims = {d.name for t in spec.inputs for d in t.shape if isinstance(d, Dim)}
    out_dims = {d.name for t in spec.outputs for d in t.shape if isinstance(d, Dim)}
    assert out_dims <= in_dims


@pytest.mark.parametrize("name", list(ARTIFACTS))
def test_dummy_inputs_pass_own_check(name):
    spec = ARTIFACTS[name]
    for which in ("min", "opt", "max"):
        bound = spec.check_inputs(spec.dummy_inputs(which))
        want = {n: d.at(which) for n, d in spec.dims().items() if n in bound}
        for a, b in spec.extra.get("one_or_equal", ()):  # e.g. 64 prompts at max share one embedding
            if want[a] not in (1, want[b]):
                want[a] = 1
        assert bound == want


def test_tolerance_is_absolute_unless_values_are_large():
    spec = ARTIFACTS["image_encoder"]
    assert tolerance(spec, "image_embed") == tolerance(spec, "image_embed", 30.0) == 1e-4
    assert tolerance(spec, "image_embed", 100.0) == pytest.approx(3e-4)
    assert tolerance(PROMPT_DECODER, "masks", 100.0) == 1e-3


def test_check_rejects_bad_feeds():
    good = PROMPT_DECODER.dummy_inputs("opt")
    cases = {
        "wrong dtype": {**good, "point_labels": good["point_labels"].astype(np.int64)},
        "wrong static dim": {**good, "mask_input": np.zeros((1, 1, 128, 128), np.float32)},
        "batch 2 image": {**good, "image_embed": np.zeros((2, 256, 64, 64), np.float32)},
        "inconsistent N": {**good, "has_mask_input": np.zeros(3, np.float32)},
        "wrong rank": {**good, "point_coords": np.zeros((1, 2), np.float32)},
    }
    for what, feeds in cases.items():
        with pytest.raises(InputError):
            PROMPT_DECODER.check_inputs(feeds)
        print("rejected:", what)
    # The prompt decoder takes one embedding shared by all prompts or one per prompt, nothing else.
    five = {**PROMPT_DECODER.dummy_inputs("opt", overrides={"num_prompts": 5}), "has_mask_input": np.zeros(5, np.float32)}
    for embeds in (1, 5):
        PROMPT_DECODER.check_inputs({**five, "image_embed": np.zeros((embeds, 256, 64, 64), np.float32)})
    with pytest.raises(InputError, match="num_objects must be 1 or equal to num_prompts=5, got 3"):
        PROMPT_DECODER.check_inputs({**five, "image_embed": np.zeros((3, 256, 64, 64), np.float32)})
    missing = dict(good)
    del missing["has_mask_input"]
    with pytest.raises(InputError, match="missing"):
        PROMPT_DECODER.check_inputs(missing)
    feeds = MEMORY_ATTENTION.dummy_inputs("opt")
    feeds["memory_tpos"] = np.zeros(3, np.int32)  # F disagrees with memory's frame axis (7)
    with pytest.raises(InputError, match="num_memory_frames"):
        MEMORY_ATTENTION.check_inputs(feeds)
